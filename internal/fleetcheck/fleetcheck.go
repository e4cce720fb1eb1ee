// Package fleetcheck runs a fleet of herd caches over a shared store under
// faults, records every call in a [history.History] and checks it: the
// stores' fleet tests (Redis, NATS) use it to show that a
// two-level store stays within its staleness bounds, that every instance
// reads its own writes and that no instance reads backwards, while
// connections are killed, servers freeze or restart and instances are
// partitioned away.
//
// # What a run does
//
// [Run] puts a herd.Cache over each instance's store and starts, per
// instance, a reader through the cache, a reader of the store itself and a
// writer that sets and deletes through the cache and through the store in
// turn; and, per plain client ([Plain]: a writer outside herd, such as
// redis-cli), a writer. Every value written is unique ("i<instance>-<n>",
// "p<writer>-<n>"), so that the checker knows which write a read saw. The
// run then goes through its faults in order: a healthy phase, then for each
// fault its injection, a phase under the fault, its healing, a wait until
// every instance it touched is whole again, and another healthy phase.
// The calls are paced (a reader every 200µs or so, a writer every 2ms), so
// that the near tiers serve hits between the writes.
//
// Instances in the history: 0 to n-1 are the stores, n to n+p-1 the plain
// writers, and n+p the server when a fault loses every key ([Fault].Wipes):
// such a fault is recorded as a delete of every key, spanning the fault.
//
// # Guarantees and errors
//
// A healthy phase lasts a number of calls, [Config].PhaseCalls. A fault
// that has a Heal is held for [Config].Hold, as calls may then be slow, and
// until the instances it touches have failed [Config].FaultFailures calls,
// which shows that the fault bit.
// Every call is bounded by [Config].CallTimeout. An instance is whole again
// once, twice in a row, a plain write of a probe key reached it within
// [Config].ProbeWithin of its read of the value before, which, under the
// near tier's TTL, only a working change stream can do: the fault is
// recorded as lasting until then. Run returns an error, with what it
// recorded so far, if its context ends first, if a fault's Inject or Heal
// fails, or if the history cannot be checked; violations are not errors
// but the report's.
//
// # Bounds for two-level stores
//
// A near copy of a two-level store (store/tiered) is served at most its
// NearTTL (plus a tick of the near tier's clock) after the start of the
// far read that fetched it, and that read began before any write that
// replaced the copy completed: whatever happens to the change stream, no
// read is staler than NearTTL and a tick. With a working stream, the
// change drops the copy within the stream's delivery time. [Bounds] turns
// these into a check: reads that no fault excuses are allowed the
// delivery bound, which must be well under NearTTL so that a read the
// stream failed to fix is told apart from a slow delivery; an instance
// whose stream is cut or stalled (or that is cut from the server) may
// serve its copies until NearTTL, so its reads are allowed [Bounds.Fault]
// while the fault lasts, and [Bounds].Repair after it.
//
// Reads of one instance never go back to an older value: [Bounds] allows
// no grace (history.Config.MonotonicGrace is zero), and a read going back
// is a violation.
//
// # Stalls
//
// A process that stands still (a long garbage collection, a machine
// starved of CPU, as under -race on a loaded machine) delivers no change
// meanwhile, and the first read after it may return a value replaced just
// before it: a stall adds its length to any staleness. A run watches its
// own process: a goroutine that wakes every few milliseconds records each
// time it woke more than [StallGap] late as a fault of every instance,
// whose bound is the check's Bound plus the stall's length. The stalls are
// reported with the faults.
//
// # Costs and lifecycle
//
// A run makes thousands of calls a second on loopback and keeps
// every one in memory until the [Result] is dropped. Run closes the caches
// it built, which closes the instances' stores (a herd.Cache closes its
// store); it never closes the plain clients. It leaves no goroutine behind.
package fleetcheck

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/herdcache/herd"
	"github.com/herdcache/herd/internal/history"
	"github.com/herdcache/herd/store"
	"github.com/herdcache/herd/store/tiered"
)

// A Plain is a client of the shared backend that writes outside herd, in
// the store's own format, as another program would.
type Plain struct {
	// Set makes key read as value through every instance's store.
	Set func(ctx context.Context, key, value string) error
	// Delete makes key read as absent (a delete, or bytes that herd
	// cannot decode).
	Delete func(ctx context.Context, key string) error
}

// PlainBytes is the Plain that writes what a herd writer of the default
// codec (store.JSON) would write, through put, and deletes through del.
func PlainBytes(put func(ctx context.Context, key string, data []byte) error, del func(ctx context.Context, key string) error) Plain {
	return Plain{
		Set: func(ctx context.Context, key, value string) error {
			data, err := store.Encode[string](store.JSON[string]{}, store.Entry[string]{Value: value})
			if err != nil {
				return err
			}
			return put(ctx, key, data)
		},
		Delete: del,
	}
}

// A Fault is one step of the nemesis.
type Fault struct {
	What     string // for reports: "server frozen", ...
	Instance int    // the instance it touches, or history.Everyone
	// Bound is the staleness allowed to the instance's reads of values
	// replaced while the fault lasts (see history.Fault).
	Bound time.Duration
	// Inject starts the fault. Heal ends it; nil for a fault that is over
	// when Inject returns (a connection killed, which the client redials).
	Inject, Heal func() error
	// Wipes says that the fault loses every key (a server restarted
	// without persistence).
	Wipes bool
}

// A Config describes a run. Stores, at least one Plain and ProbeWithin are
// required; the rest has defaults.
type Config struct {
	// Stores are the instances' stores, each over a client of its own.
	Stores []store.Store[string]
	// Plain are the writers outside herd. The first one also writes the
	// probes that tell when an instance is whole again.
	Plain []Plain
	// Faults are the nemesis' steps, in order.
	Faults []Fault
	// Keys is the number of keys the calls spread over. Default: 10.
	Keys int
	// PhaseCalls is the number of calls of each phase. Default: 2,000.
	PhaseCalls int
	// Hold is how long a fault that has a Heal is held at least.
	// Default: 300ms.
	Hold time.Duration
	// FaultFailures is the number of failed calls of the instances that a
	// fault touches before it is healed. Default: 10.
	FaultFailures int
	// CallTimeout bounds every call, and is the caches' StoreTimeout.
	// Default: 250ms.
	CallTimeout time.Duration
	// ProbeWithin is how soon after a plain write of the probe key began
	// an instance must have read that value and then the value of the
	// next write to count as whole again. It must be shorter than the time
	// the instance may serve a copy without news from the backend (a
	// two-level store's NearTTL), and longer than two deliveries of the
	// change stream.
	ProbeWithin time.Duration
	// Check is what the checker allows.
	Check history.Config
	// Seed seeds the choice of keys and writes. Default: 1.
	Seed uint64
}

// A Result is what a run recorded and what the check found.
type Result struct {
	History *history.History
	Report  *history.Report // nil if the run did not finish
	// Faults are the faults as recorded, with the time each instance
	// took to be whole again after its healing.
	Faults []FaultResult
	// Stalls are the times the run's own process stood still (see
	// "Stalls" in the package documentation).
	Stalls []history.Fault
}

// A FaultResult is one fault of a run.
type FaultResult struct {
	history.Fault
	// Failures is the number of calls of the instances it touched that
	// failed while it lasted.
	Failures int64
	// Recovery is the time from the healing (or the injection, for a fault
	// without Heal) to the moment every instance it touched was whole
	// again.
	Recovery time.Duration
}

func (f FaultResult) String() string {
	return fmt.Sprintf("%v: %d failed calls, whole again %v after healing",
		f.Fault, f.Failures, f.Recovery.Round(time.Millisecond))
}

// Bounds are the bounds of a run over two-level stores: see the package
// documentation.
type Bounds struct {
	NearTTL  time.Duration // the stores' NearTTL
	Tick     time.Duration // the resolution of their near tier's clock
	Delivery time.Duration // the change stream's delivery bound
	Repair   time.Duration // how long an instance may take to repair its near tier once its stream is back
}

// Loopback are the bounds of a run over servers on loopback, with stores
// of NearTTL one second and the default resolution. Changes are delivered
// within a millisecond or two there, and within tens under -race on a
// loaded machine (up to 60ms seen over NATS, with the server under -race in
// the test's process): 200ms is three times the worst seen and a fifth of
// the NearTTL. A near tier of ten keys is repaired in a round trip or two
// (Redis), or by a replay of ten keys' changes (NATS).
var Loopback = Bounds{
	NearTTL:  time.Second,
	Tick:     tiered.DefaultNearResolution,
	Delivery: 200 * time.Millisecond,
	Repair:   200 * time.Millisecond,
}

// Fault is the staleness allowed to the reads of an instance whose stream
// is cut or stalled, or that is cut from the server: NearTTL, a tick and
// the delivery bound.
func (b Bounds) Fault() time.Duration { return b.NearTTL + b.Tick + b.Delivery }

// Check is the checker's configuration: the delivery bound for reads that
// no fault excuses, Repair after each fault, and no read going back.
func (b Bounds) Check() history.Config {
	return history.Config{Bound: b.Delivery, Recovery: b.Repair}
}

// ProbeWithin is the Config.ProbeWithin that fits: half the NearTTL.
func (b Bounds) ProbeWithin() time.Duration { return b.NearTTL / 2 }

// StallGap is how late the run's watcher of its own process must wake for
// the delay to count as a stall.
const StallGap = 20 * time.Millisecond

// errNoSource is the loader's answer: a read through a cache that reaches
// the loader found the store empty, or failing, and cannot tell which.
var errNoSource = errors.New("fleetcheck: no source: the store had nothing to serve")

const probeKey = "probe"

// A run is the state of one Run.
type run struct {
	cfg    Config
	h      *history.History
	caches []*herd.Cache[string]
	fails  []atomic.Int64 // failed calls per instance
	probes atomic.Int64
}

// Run runs the fleet under cfg's faults, then checks the history.
func Run(ctx context.Context, cfg Config) (*Result, error) {
	cfg.defaults()
	r := &run{cfg: cfg, h: history.New(), fails: make([]atomic.Int64, len(cfg.Stores))}
	res := &Result{History: r.h}
	logger := slog.New(slog.DiscardHandler)
	for _, s := range cfg.Stores {
		r.caches = append(r.caches, herd.New[string](s, herd.TTL(time.Hour),
			herd.StoreTimeout(cfg.CallTimeout), herd.WithLogger(logger)))
	}
	defer func() {
		for _, c := range r.caches {
			_ = c.Close(context.Background())
		}
	}()

	stop := make(chan struct{})
	var wg sync.WaitGroup
	r.start(&wg, stop)
	wg.Go(func() { res.Stalls = r.watchStalls(stop) })
	err := r.nemesis(ctx, res)
	close(stop)
	wg.Wait()
	for _, f := range res.Stalls {
		r.h.Fault(f)
	}
	if err != nil {
		return res, err
	}
	res.Report, err = r.h.Check(cfg.Check)
	return res, err
}

func (cfg *Config) defaults() {
	if len(cfg.Stores) == 0 || len(cfg.Plain) == 0 || cfg.ProbeWithin <= 0 {
		panic("fleetcheck: a Config needs Stores, a Plain writer and ProbeWithin")
	}
	if cfg.Keys <= 0 {
		cfg.Keys = 10
	}
	if cfg.PhaseCalls <= 0 {
		cfg.PhaseCalls = 2000
	}
	if cfg.Hold <= 0 {
		cfg.Hold = 300 * time.Millisecond
	}
	if cfg.FaultFailures <= 0 {
		cfg.FaultFailures = 10
	}
	if cfg.CallTimeout <= 0 {
		cfg.CallTimeout = 250 * time.Millisecond
	}
	if cfg.Seed == 0 {
		cfg.Seed = 1
	}
}

// start starts the readers and writers, which run until stop is closed.
func (r *run) start(wg *sync.WaitGroup, stop <-chan struct{}) {
	n := len(r.cfg.Stores)
	loop := func(id int, pace time.Duration, call func(rng *rand.Rand, key string)) {
		wg.Go(func() {
			rng := rand.New(rand.NewPCG(r.cfg.Seed, uint64(id)))
			for {
				select {
				case <-stop:
					return
				default:
				}
				call(rng, "k"+strconv.Itoa(rng.IntN(r.cfg.Keys)))
				time.Sleep(pace/2 + rand.N(pace))
			}
		})
	}
	for i := range n {
		loop(3*i, 200*time.Microsecond, func(_ *rand.Rand, key string) { r.readCache(i, key) })
		loop(3*i+1, 200*time.Microsecond, func(_ *rand.Rand, key string) { r.readStore(i, key) })
		var written int
		loop(3*i+2, 2*time.Millisecond, func(rng *rand.Rand, key string) {
			written++
			r.write(i, key, "i"+strconv.Itoa(i)+"-"+strconv.Itoa(written), rng.IntN(10))
		})
	}
	for p, plain := range r.cfg.Plain {
		var written int
		loop(3*n+p, 2*time.Millisecond, func(rng *rand.Rand, key string) {
			written++
			r.writePlain(n+p, plain, key, "p"+strconv.Itoa(p)+"-"+strconv.Itoa(written), rng.IntN(10) < 2)
		})
	}
}

// watchStalls records, until stop is closed, the times the process stood
// still: the watcher woke more than StallGap after it should have.
func (r *run) watchStalls(stop <-chan struct{}) []history.Fault {
	const period = 5 * time.Millisecond
	var stalls []history.Fault
	t := time.NewTicker(period)
	defer t.Stop()
	last := r.h.Now()
	for {
		select {
		case <-stop:
			return stalls
		case <-t.C:
		}
		now := r.h.Now()
		if late := now - last - period; late > StallGap {
			stalls = append(stalls, history.Fault{
				Instance: history.Everyone, What: "process stalled", Start: last, End: now,
				Bound: r.cfg.Check.Bound + late,
			})
		}
		last = now
	}
}

// call runs f within the call timeout and counts its failure for instance.
func (r *run) call(instance int, f func(ctx context.Context) error) error {
	ctx, cancel := context.WithTimeout(context.Background(), r.cfg.CallTimeout)
	defer cancel()
	err := f(ctx)
	if err != nil && instance >= 0 && instance < len(r.fails) {
		r.fails[instance].Add(1)
	}
	return err
}

// readCache reads key through instance's cache. A value is a read of it;
// the loader's call (the store had nothing, or failed) a read that
// returned nothing known.
func (r *run) readCache(instance int, key string) {
	start := r.h.Now()
	var v string
	err := r.call(instance, func(ctx context.Context) error {
		var err error
		v, err = r.caches[instance].Get(ctx, key, func(context.Context, string) (string, error) {
			return "", errNoSource
		})
		return err
	})
	r.h.Read(instance, key, start, v, err == nil, err)
}

// readStore reads key from instance's store: a miss is a read of "absent".
func (r *run) readStore(instance int, key string) {
	start := r.h.Now()
	var (
		e  store.Entry[string]
		ok bool
	)
	err := r.call(instance, func(ctx context.Context) error {
		var err error
		e, ok, err = r.cfg.Stores[instance].Get(ctx, key)
		return err
	})
	r.h.Read(instance, key, start, e.Value, ok, err)
}

// write writes value to key through instance, or deletes key, as dice (0
// to 9) says: mostly sets, through the cache and the store in turn.
func (r *run) write(instance int, key, value string, dice int) {
	c, s := r.caches[instance], r.cfg.Stores[instance]
	start := r.h.Now()
	switch dice {
	case 0:
		r.h.Delete(instance, key, start, r.call(instance, func(ctx context.Context) error { return c.Delete(ctx, key) }))
	case 1:
		r.h.Delete(instance, key, start, r.call(instance, func(ctx context.Context) error { return s.Delete(ctx, key) }))
	case 2, 3, 4, 5:
		r.h.Write(instance, key, start, value, r.call(instance, func(ctx context.Context) error { return c.Set(ctx, key, value) }))
	default:
		r.h.Write(instance, key, start, value, r.call(instance, func(ctx context.Context) error {
			return s.Set(ctx, key, store.Entry[string]{Value: value})
		}))
	}
}

func (r *run) writePlain(instance int, p Plain, key, value string, del bool) {
	start := r.h.Now()
	if del {
		r.h.Delete(instance, key, start, r.call(instance, func(ctx context.Context) error { return p.Delete(ctx, key) }))
		return
	}
	r.h.Write(instance, key, start, value, r.call(instance, func(ctx context.Context) error { return p.Set(ctx, key, value) }))
}

// nemesis runs the phases: healthy, then each fault followed by a healthy
// phase.
func (r *run) nemesis(ctx context.Context, res *Result) error {
	if err := r.calls(ctx, r.cfg.PhaseCalls); err != nil {
		return err
	}
	for _, f := range r.cfg.Faults {
		fr, err := r.fault(ctx, f)
		res.Faults = append(res.Faults, fr)
		if err != nil {
			return fmt.Errorf("fleetcheck: %s: %w", f.What, err)
		}
		if err := r.calls(ctx, r.cfg.PhaseCalls); err != nil {
			return err
		}
	}
	return nil
}

// fault runs one fault and records it.
func (r *run) fault(ctx context.Context, f Fault) (FaultResult, error) {
	touched := r.touched(f.Instance)
	failedBefore := r.failures(touched)
	start := r.h.Now()
	fr := FaultResult{Fault: history.Fault{Instance: f.Instance, What: f.What, Start: start, Bound: f.Bound}}
	if err := f.Inject(); err != nil {
		return fr, fmt.Errorf("inject: %w", err)
	}
	if f.Heal != nil {
		if err := sleep(ctx, r.cfg.Hold); err != nil {
			return fr, err
		}
		for r.failures(touched)-failedBefore < int64(r.cfg.FaultFailures) {
			if err := sleep(ctx, time.Millisecond); err != nil {
				return fr, fmt.Errorf("%d failed calls, want %d: %w", r.failures(touched)-failedBefore, r.cfg.FaultFailures, err)
			}
		}
		if err := f.Heal(); err != nil {
			return fr, fmt.Errorf("heal: %w", err)
		}
	}
	healed := r.h.Now()
	fr.Failures = r.failures(touched) - failedBefore
	if f.Wipes {
		for k := range r.cfg.Keys {
			r.h.Add(history.Op{
				Instance: len(r.cfg.Stores) + len(r.cfg.Plain), Kind: history.Write, Key: "k" + strconv.Itoa(k),
				Absent: true, Start: start, End: healed,
			})
		}
	}
	for _, i := range touched {
		if err := r.probe(ctx, i); err != nil {
			return fr, fmt.Errorf("instance %d not whole again: %w", i, err)
		}
	}
	fr.End = r.h.Now()
	fr.Recovery = fr.End - healed
	r.h.Fault(fr.Fault)
	return fr, nil
}

func (r *run) touched(instance int) []int {
	if instance != history.Everyone {
		return []int{instance}
	}
	all := make([]int, len(r.cfg.Stores))
	for i := range all {
		all[i] = i
	}
	return all
}

func (r *run) failures(instances []int) int64 {
	var n int64
	for _, i := range instances {
		n += r.fails[i].Load()
	}
	return n
}

// calls waits until n more calls have been recorded.
func (r *run) calls(ctx context.Context, n int) error {
	until := r.h.Len() + n
	for r.h.Len() < until {
		if err := sleep(ctx, time.Millisecond); err != nil {
			return fmt.Errorf("fleetcheck: %d calls: %w", n, err)
		}
	}
	return nil
}

// probe waits until instance is whole again: until it passes probeOnce
// twice in a row (a flush of its near tier can pass it once by chance).
func (r *run) probe(ctx context.Context, instance int) error {
	for passed := 0; passed < 2; {
		if r.probeOnce(instance) {
			passed++
			continue
		}
		passed = 0
		if err := sleep(ctx, 10*time.Millisecond); err != nil {
			return err
		}
	}
	return nil
}

// probeOnce reports whether a change reached instance: a plain client
// writes the probe key, the instance reads that value (a near tier keeps a
// copy, fetched after the write began), the plain client writes the key
// again, and the instance reads the new value within ProbeWithin of the
// first write, which means that its copy was dropped on news from the
// backend (or never kept).
func (r *run) probeOnce(instance int) bool {
	s, plain := r.cfg.Stores[instance], r.cfg.Plain[0]
	get := func() (string, bool) {
		var (
			e  store.Entry[string]
			ok bool
		)
		err := r.call(-1, func(ctx context.Context) error {
			var err error
			e, ok, err = s.Get(ctx, probeKey)
			return err
		})
		return e.Value, err == nil && ok
	}
	set := func() (string, bool) {
		v := "probe-" + strconv.FormatInt(r.probes.Add(1), 10)
		return v, r.call(-1, func(ctx context.Context) error { return plain.Set(ctx, probeKey, v) }) == nil
	}
	began := time.Now()
	reads := func(want string) bool {
		for time.Since(began) < r.cfg.ProbeWithin {
			if got, ok := get(); ok && got == want {
				return true
			}
			time.Sleep(time.Millisecond)
		}
		return false
	}
	first, ok := set()
	if !ok || !reads(first) {
		return false
	}
	second, ok := set()
	return ok && reads(second)
}

func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// A T is what [Report] needs of a *testing.T.
type T interface {
	Helper()
	Logf(format string, args ...any)
	Errorf(format string, args ...any)
	Fatal(args ...any)
}

// Report logs the figures of a run (each fault, then the check's) to t,
// and fails t on err or on each violation, showing the first ten.
func Report(t T, res *Result, err error) {
	t.Helper()
	for _, f := range res.Faults {
		t.Logf("fault: %v", f)
	}
	var longest time.Duration
	for _, f := range res.Stalls {
		longest = max(longest, f.End-f.Start)
	}
	t.Logf("the process stalled %d times (longest %v)", len(res.Stalls), longest.Round(time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("history: %v", res.Report)
	for i, v := range res.Report.Violations {
		if i == 10 {
			t.Errorf("and %d more violations", len(res.Report.Violations)-i)
			break
		}
		t.Errorf("%v", v)
	}
}
