// Package fleet is the fleet scenario of the herd command: several herd
// instances, as the processes of a fleet, read keys while a writer sets
// them through random instances, and the scenario counts the reads that
// returned a value older than a write that had completed well before they
// began. It runs three setups one after another:
//
//   - memory per instance: each instance its own memory store;
//   - far tier only: every instance on the shared store (Redis, NATS, or a
//     shared memory store that stands for a server);
//   - two-level: a tiered store per instance, a memory near tier in front of
//     the shared store, kept coherent by the shared store's change stream.
//
// Each setup starts warm, as a fleet that has run a while: every instance
// reads every key once before the setup's time starts.
package fleet

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
	"github.com/herdcache/herd/cmd/herd/internal/histogram"
	"github.com/herdcache/herd/cmd/herd/internal/proxy"
	"github.com/herdcache/herd/cmd/herd/internal/sim"
	"github.com/herdcache/herd/store"
	"github.com/herdcache/herd/store/memory"
	"github.com/herdcache/herd/store/tiered"
)

// The setups, in the order they run.
const (
	MemoryPerInstance = "memory per instance"
	FarOnly           = "far tier only"
	TwoLevel          = "two-level"
)

// Config is a fleet scenario.
type Config struct {
	Instances int           // herd instances per setup
	Readers   int           // readers per setup, spread over the instances
	ReadRate  int           // reads a second each reader sends at most
	WriteRate int           // writes a second, each through a random instance
	Keys      int           // distinct keys, drawn uniformly
	Duration  time.Duration // how long each setup runs
	TTL       time.Duration // how long a cached value is fresh
	Timeout   time.Duration // deadline of one read or write
	// Allowance is the stream's delivery time granted to a write: a read
	// that began within Allowance of a write's completion may return the
	// value before it without counting as stale.
	Allowance time.Duration
	Seed      uint64

	// Far gives an instance its connection to the shared store of a setup
	// ("far" or "two-level"); nil means one memory store per setup, shared
	// by its instances, standing for a server.
	Far       func(ctx context.Context, name string) (sim.SharedStore, error) `json:"-"`
	StoreName string                                                          // the shared store as --store named it; "" for memory
	Command   string                                                          // the command line that ran it, without credentials; "" is "herd"
	// Progress, if not nil, is called as each setup starts, with its
	// name, and as each outage phase starts, with its setup's name and
	// what the phase does.
	Progress func(setup string) `json:"-"`

	// Outage, if positive, gives each setup over the far tier (far tier
	// only, two-level) an outage phase after its measured time: a fleet
	// of its own, on connections made by OutageFar through Link, reads
	// and writes for OutageBefore, then the far tier is unreachable from
	// every instance (Link.Cut) for Outage, then reachable again
	// (Link.Restore) for OutageAfter.
	Outage       time.Duration
	OutageBefore time.Duration
	OutageAfter  time.Duration
	Fault        proxy.Fault
	OutageFar    func(ctx context.Context, name string) (sim.SharedStore, error) `json:"-"`
	Link         Link                                                            `json:"-"`
}

// A Link is the way from the instances of an outage phase to the far
// tier's server, which the phase cuts and restores.
type Link interface {
	Cut(proxy.Fault)
	Restore() error
}

// Defaults is the scenario that the command runs with no flags but
// --fleet: at most 6,000 reads and 50 writes a second per setup, which a
// 2-core machine sends on time over Redis or NATS on loopback.
var Defaults = Config{
	Instances: 3,
	Readers:   6,
	ReadRate:  1000,
	WriteRate: 50,
	Keys:      1000,
	Duration:  5 * time.Second,
	TTL:       5 * time.Second,
	Timeout:   time.Second,
	Allowance: 50 * time.Millisecond,
	Seed:      1,
}

// Validate reports the first setting out of range, naming its flag.
func (c *Config) Validate() error {
	switch {
	case c.Instances < 1 || c.Instances > sim.MaxInstances:
		return fmt.Errorf("instances must be between 1 and %d, got %d", sim.MaxInstances, c.Instances)
	case c.Readers < 1 || c.Readers > sim.MaxClients:
		return fmt.Errorf("clients must be between 1 and %d, got %d", sim.MaxClients, c.Readers)
	case c.ReadRate < 1 || c.ReadRate > 1_000_000:
		return fmt.Errorf("read rate must be between 1 and 1,000,000, got %d", c.ReadRate)
	case c.WriteRate < 1 || c.WriteRate > 10_000:
		return fmt.Errorf("writes must be between 1 and 10000, got %d", c.WriteRate)
	case c.Keys < 1 || c.Keys > sim.MaxKeys:
		return fmt.Errorf("keys must be between 1 and %d, got %d", sim.MaxKeys, c.Keys)
	case c.Duration <= 0:
		return fmt.Errorf("duration must be positive, got %v", c.Duration)
	case c.TTL <= 0:
		return fmt.Errorf("ttl must be positive, got %v", c.TTL)
	case c.Timeout <= 0:
		return fmt.Errorf("timeout must be positive, got %v", c.Timeout)
	case c.Allowance <= 0:
		return fmt.Errorf("allowance must be positive, got %v", c.Allowance)
	case c.Outage < 0:
		return fmt.Errorf("store outage must be at least 0, got %v", c.Outage)
	case c.Outage > 0 && (c.OutageFar == nil || c.Link == nil || c.OutageBefore <= 0 || c.OutageAfter <= 0):
		return fmt.Errorf("a store outage needs a far tier to cut, and windows before and after it")
	}
	return nil
}

// Setup is what one setup did.
type Setup struct {
	Name   string
	Reads  uint64  // reads that returned a value
	Errors uint64  // reads that failed or timed out
	PerSec float64 // reads a second over the setup's time: at most Readers × ReadRate
	P50    time.Duration
	P99    time.Duration
	Writes uint64 // writes that completed
	// StoreErrors counts the store calls that failed (herd then loads
	// from the source, or counts a write it could not make).
	StoreErrors uint64
	// Stale counts the reads that returned a value older than a write of
	// their key that had completed more than Allowance before they began.
	Stale uint64
	// Delivered counts the reads that returned a value older than a write
	// completed before they began, within the Allowance.
	Delivered uint64
	// Longest is the longest time after a write completed that a read
	// began and still returned the value before it (Allowance or not).
	Longest time.Duration
	// Outage is the setup's outage phase; nil when it had none.
	Outage *Outage
}

// Outage is what a setup's outage phase measured, in three windows: the
// far tier up (OutageBefore), unreachable (Outage), and back (OutageAfter).
// A read counts in the window it began in; the caches' counters are read
// as each window ends.
type Outage struct {
	Fault   proxy.Fault
	Windows []OutageWindow // before, during, after
}

// The windows of an outage phase.
const (
	FarUp   = "far tier up"
	FarCut  = "far tier cut"
	FarBack = "far tier back"
)

// An OutageWindow is what one window of an outage phase saw.
type OutageWindow struct {
	Name     string
	Duration time.Duration
	// From the readers: reads that returned a value, reads that failed,
	// their latency, and the stale reads among them (a value older than
	// a write completed more than Allowance before the read began).
	Reads, Errors, Stale uint64
	P50, P99             time.Duration
	// From the caches' Stats, summed over the instances: values served
	// from the store (through two-level, its near tier while the far one
	// is cut), loader calls, store calls that failed, store calls skipped
	// (the store marked down), and writes that completed.
	Hits, Loads, StoreErrors, StoreSkipped uint64
	Writes                                 uint64
}

// Window returns the outage window named name, and whether o has it.
func (o *Outage) Window(name string) (OutageWindow, bool) {
	for _, w := range o.Windows {
		if w.Name == name {
			return w, true
		}
	}
	return OutageWindow{}, false
}

// Result is what a fleet scenario did, setup by setup.
type Result struct {
	Config      Config
	Setups      []Setup
	Elapsed     time.Duration
	Interrupted bool // ctx ended before the last setup did
}

// Setups returns the names of the setups, in the order Run runs them.
func Setups() []string { return []string{MemoryPerInstance, FarOnly, TwoLevel} }

// Run runs the three setups one after another, each for c.Duration, and
// returns what they did. It returns an error if a shared store cannot be
// opened or followed; when ctx ends, it stops and returns the setups run so
// far with Interrupted set. It leaves no goroutine behind.
func Run(ctx context.Context, c Config) (*Result, error) {
	if err := c.Validate(); err != nil {
		return nil, err
	}
	start := time.Now()
	r := &Result{Config: c}
	for _, name := range Setups() {
		if ctx.Err() != nil {
			r.Interrupted = true
			break
		}
		if c.Progress != nil {
			c.Progress(name)
		}
		s, err := runSetup(ctx, &c, name)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", name, err)
		}
		if c.Outage > 0 && name != MemoryPerInstance && ctx.Err() == nil {
			if c.Progress != nil {
				c.Progress(fmt.Sprintf("%s, outage phase: %v up, %v cut (%v), %v back", name, c.OutageBefore, c.Outage, c.Fault, c.OutageAfter))
			}
			if s.Outage, err = runOutage(ctx, &c, name); err != nil {
				return nil, fmt.Errorf("%s, outage: %w", name, err)
			}
		}
		r.Setups = append(r.Setups, s)
	}
	if ctx.Err() != nil {
		r.Interrupted = true
	}
	r.Elapsed = time.Since(start)
	return r, nil
}

// An instance is one member of the fleet: a herd cache and what to close
// after it.
type instance struct {
	cache *herd.Cache[string]
	close func()
}

// fleetOf builds the instances of a setup and returns them with a function
// that closes them all, then the shared store.
func fleetOf(ctx context.Context, c *Config, name string, far func(context.Context, string) (sim.SharedStore, error)) ([]instance, func(), error) {
	var (
		insts  []instance
		shared *memory.Store[string]
	)
	closeAll := func() {
		for _, in := range insts {
			cctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			_ = in.cache.Close(cctx)
			cancel()
			if in.close != nil {
				in.close()
			}
		}
		if shared != nil {
			_ = shared.Close(context.Background())
		}
	}
	quiet := herd.WithLogger(slog.New(slog.DiscardHandler)) // failures are counted instead
	if far == nil && name != MemoryPerInstance {
		shared = memory.New[string](memory.MaxEntries(c.Keys + 1000))
		far = func(context.Context, string) (sim.SharedStore, error) {
			return sim.SharedStore{Store: shared, Locker: shared, Close: func() {}}, nil
		}
	}
	for range c.Instances {
		var in instance
		switch name {
		case MemoryPerInstance:
			m := memory.New[string](memory.MaxEntries(c.Keys + 1000))
			in.cache = herd.New[string](m, herd.TTL(c.TTL), quiet)
		case FarOnly:
			ss, err := far(ctx, "far")
			if err != nil {
				closeAll()
				return nil, nil, err
			}
			in.close = ss.Close
			in.cache = herd.New[string](ss.Store, herd.TTL(c.TTL), herd.WithLocker(ss.Locker, 10*time.Second), storeTimeout(c), quiet)
		default:
			ss, err := far(ctx, "two-level")
			if err != nil {
				closeAll()
				return nil, nil, err
			}
			near, err := twoLevel(ss.Store, c.Keys+1000)
			if err != nil {
				ss.Close()
				closeAll()
				return nil, nil, err
			}
			in.close = ss.Close
			in.cache = herd.New[string](near, herd.TTL(c.TTL), herd.WithLocker(ss.Locker, 10*time.Second), storeTimeout(c), quiet)
		}
		insts = append(insts, in)
	}
	return insts, closeAll, nil
}

// twoLevel returns a tiered store over far, versioned if far is.
func twoLevel(far store.Store[string], entries int) (store.Store[string], error) {
	if _, ok := far.(store.ChangeStream); !ok {
		return nil, fmt.Errorf("the shared store, a %T, has no change stream", far)
	}
	if v, ok := far.(store.Versioned[string]); ok {
		return tiered.NewVersioned[string](v, tiered.NearMaxEntries(entries))
	}
	return tiered.New[string](far, tiered.NearMaxEntries(entries))
}

// A write is one completed write of a key: the value it wrote and when
// its Set returned, since the start of the setup.
type write struct {
	seq  uint64
	done time.Duration
}

// history holds the source of truth and the writes of every key. The
// writer is its only writer; readers read it without a lock.
type history struct {
	latest []atomic.Uint64           // per key: the value of the source
	writes []atomic.Pointer[[]write] // per key: completed writes, oldest first; never modified once stored
	keys   []string
	seq    uint64 // the last value written, of any key; the writer's own
}

func newHistory(keys int) *history {
	h := &history{latest: make([]atomic.Uint64, keys), writes: make([]atomic.Pointer[[]write], keys), keys: make([]string, keys)}
	for i := range h.keys {
		h.keys[i] = "k" + strconv.Itoa(i)
	}
	return h
}

// next returns the value of the next write of key k, and makes it the
// source's latest: the writer's, its only caller.
func (h *history) next(k int) uint64 {
	h.seq++
	h.latest[k].Store(h.seq)
	return h.seq
}

// completed records that the write of seq to key k returned at done.
func (h *history) completed(k int, seq uint64, done time.Duration) {
	var ws []write
	if p := h.writes[k].Load(); p != nil {
		ws = *p
	}
	next := make([]write, len(ws), len(ws)+1)
	copy(next, ws)
	next = append(next, write{seq: seq, done: done})
	h.writes[k].Store(&next)
}

// superseded returns how long before began the value seq of key k had been
// replaced by a completed write, and whether it had been.
func (h *history) superseded(k int, seq uint64, began time.Duration) (time.Duration, bool) {
	p := h.writes[k].Load()
	if p == nil {
		return 0, false
	}
	var first time.Duration
	found := false
	// Writes complete in the order of their values: the first one newer
	// than seq is the one that replaced it.
	for _, w := range *p {
		if w.done >= began {
			break
		}
		if w.seq > seq {
			first, found = w.done, true
			break
		}
	}
	if !found {
		return 0, false
	}
	return began - first, true
}

// tally is what one reader saw, in one window.
type tally struct {
	reads, errors, stale, delivered uint64
	longest                         time.Duration
	lat                             histogram.Histogram
}

// windows is what one reader saw in each window of a phase; a setup's
// measured time has one window.
type windows [3]tally

// merge adds what o saw to t.
func (t *tally) merge(o *tally) {
	t.reads += o.reads
	t.errors += o.errors
	t.stale += o.stale
	t.delivered += o.delivered
	t.longest = max(t.longest, o.longest)
	t.lat.Merge(&o.lat)
}

func runSetup(ctx context.Context, c *Config, name string) (Setup, error) {
	insts, closeAll, err := fleetOf(ctx, c, name, c.Far)
	if err != nil {
		return Setup{}, err
	}
	defer closeAll()

	h := newHistory(c.Keys)
	load := h.loader()
	warmUp(ctx, c, insts, h, load)
	if ctx.Err() != nil {
		return Setup{Name: name}, nil
	}
	start := time.Now()
	ts, writes := drive(ctx, c, insts, h, load, start, c.Duration, nil)
	elapsed := time.Since(start)

	s := Setup{Name: name, Writes: writes[0]}
	for _, in := range insts {
		s.StoreErrors += in.cache.Stats().StoreErrors
	}
	var t tally
	for i := range ts {
		t.merge(&ts[i][0])
	}
	s.Reads, s.Errors, s.Stale, s.Delivered, s.Longest = t.reads, t.errors, t.stale, t.delivered, t.longest
	// Reads were due within the setup's time, at most ReadRate a second
	// per reader: over that time, not the time the last read took to
	// return, reads a second are at most what the readers send.
	s.PerSec = float64(s.Reads) / min(elapsed, c.Duration).Seconds()
	s.P50, s.P99 = t.lat.Quantile(0.50), t.lat.Quantile(0.99)
	return s, nil
}

// loader returns the source's loader: the latest value of a key.
func (h *history) loader() herd.Loader[string] {
	return func(_ context.Context, key string) (string, error) {
		k, err := strconv.Atoi(key[1:])
		if err != nil || k < 0 || k >= len(h.latest) {
			return "", fmt.Errorf("fleet: key %q: %w", key, herd.ErrNotFound)
		}
		return strconv.FormatUint(h.latest[k].Load(), 10), nil
	}
}

// drive runs the readers and the writer over insts from start for d, or
// until ctx ends, and returns what each reader saw and the writes that
// completed, per window: windowOf says in which window (0 to 2) a time
// since start falls; nil is always 0.
func drive(ctx context.Context, c *Config, insts []instance, h *history, load herd.Loader[string], start time.Time, d time.Duration,
	windowOf func(time.Duration) int,
) ([]windows, [3]uint64) {
	if windowOf == nil {
		windowOf = func(time.Duration) int { return 0 }
	}
	runCtx, cancel := context.WithDeadline(ctx, start.Add(d))
	defer cancel()
	var (
		wg     sync.WaitGroup
		writes [3]atomic.Uint64
	)
	ts := make([]windows, c.Readers)
	for i := range c.Readers {
		wg.Go(func() {
			read(runCtx, c, insts[i%len(insts)].cache, h, load, start, d, c.Seed*1000+uint64(i), &ts[i], windowOf)
		})
	}
	wg.Go(func() {
		rng := rand.New(rand.NewPCG(c.Seed, 0xfeed))
		tick := time.NewTicker(time.Second / time.Duration(c.WriteRate))
		defer tick.Stop()
		var seq uint64
		for {
			select {
			case <-runCtx.Done():
				return
			case <-tick.C:
			}
			k := rng.IntN(c.Keys)
			in := insts[rng.IntN(len(insts))]
			seq = h.next(k)
			// A call in flight at the end of the setup finishes: its
			// context is not the setup's, so that the end is no failure.
			wctx, wcancel := context.WithTimeout(context.WithoutCancel(runCtx), c.Timeout)
			err := in.cache.Set(wctx, h.keys[k], strconv.FormatUint(seq, 10))
			wcancel()
			if err == nil {
				done := time.Since(start)
				h.completed(k, seq, done)
				writes[windowOf(done)].Add(1)
			}
		}
	})
	wg.Wait()
	return ts, [3]uint64{writes[0].Load(), writes[1].Load(), writes[2].Load()}
}

// runOutage runs the outage phase of setup name: a fleet of its own, on
// connections through c.Link, reads and writes while the far tier is up,
// cut, and back.
func runOutage(ctx context.Context, c *Config, name string) (*Outage, error) {
	insts, closeAll, err := fleetOf(ctx, c, name, c.OutageFar)
	if err != nil {
		return nil, err
	}
	defer closeAll()
	h := newHistory(c.Keys)
	load := h.loader()
	warmUp(ctx, c, insts, h, load)
	if ctx.Err() != nil {
		return nil, nil
	}
	cutAt, backAt := c.OutageBefore, c.OutageBefore+c.Outage
	bounds := [3]time.Duration{cutAt, c.Outage, c.OutageAfter}
	windowOf := func(t time.Duration) int {
		switch {
		case t < cutAt:
			return 0
		case t < backAt:
			return 1
		}
		return 2
	}
	sum := func() herd.Stats {
		var st herd.Stats
		for _, in := range insts {
			x := in.cache.Stats()
			st.Hits += x.Hits
			st.Loads += x.Loads
			st.StoreErrors += x.StoreErrors
			st.StoreSkipped += x.StoreSkipped
		}
		return st
	}
	var (
		marks   [4]herd.Stats
		marked  [4]bool
		restore error
		wg      sync.WaitGroup
	)
	start := time.Now()
	marks[0], marked[0] = sum(), true
	wg.Go(func() {
		// The fault, on the phase's clock: stats are read as each
		// window ends.
		if sleep(ctx, time.Until(start.Add(cutAt))); ctx.Err() != nil {
			return
		}
		marks[1], marked[1] = sum(), true
		c.Link.Cut(c.Fault)
		sleep(ctx, time.Until(start.Add(backAt)))
		marks[2], marked[2] = sum(), true
		restore = c.Link.Restore()
	})
	ts, writes := drive(ctx, c, insts, h, load, start, backAt+c.OutageAfter, windowOf)
	wg.Wait()
	marks[3] = sum()
	for i := 2; i > 0; i-- {
		if !marked[i] { // interrupted before the window began
			marks[i] = marks[i+1]
		}
	}
	if restore != nil {
		return nil, restore
	}
	o := &Outage{Fault: c.Fault}
	for i, wname := range []string{FarUp, FarCut, FarBack} {
		var t tally
		for j := range ts {
			t.merge(&ts[j][i])
		}
		from, to := marks[i], marks[i+1]
		o.Windows = append(o.Windows, OutageWindow{
			Name: wname, Duration: bounds[i], Reads: t.reads, Errors: t.errors, Stale: t.stale,
			P50: t.lat.Quantile(0.50), P99: t.lat.Quantile(0.99),
			Hits: to.Hits - from.Hits, Loads: to.Loads - from.Loads,
			StoreErrors: to.StoreErrors - from.StoreErrors, StoreSkipped: to.StoreSkipped - from.StoreSkipped,
			Writes: writes[i],
		})
	}
	return o, nil
}

// warmUpReaders is how many reads at once each instance makes while it
// warms up.
const warmUpReaders = 8

// warmUp reads every key once through every instance, before the setup's
// time starts, so that the setup is measured as a fleet that has run a
// while, not at its cold start. Cold, the first read of a key through an
// instance misses its near tier (and, through the first instance, loads):
// a tenth of the reads of a 5-second two-level setup, a thirtieth of the far
// tier's, and those reads, not the running fleet's, would set both p99s.
func warmUp(ctx context.Context, c *Config, insts []instance, h *history, load herd.Loader[string]) {
	type job struct {
		cache *herd.Cache[string]
		key   string
	}
	jobs := make(chan job)
	var wg sync.WaitGroup
	for range warmUpReaders * len(insts) {
		wg.Go(func() {
			for r := range jobs {
				rctx, cancel := context.WithTimeout(ctx, c.Timeout)
				_, _ = r.cache.Get(rctx, r.key, load) // a failure shows in the setup's own reads
				cancel()
			}
		})
	}
	for _, k := range h.keys {
		for _, in := range insts {
			select {
			case jobs <- job{in.cache, k}:
			case <-ctx.Done():
			}
		}
	}
	close(jobs)
	wg.Wait()
}

// read is one reader: it reads random keys through its instance for d
// from start, or until ctx ends, and tallies what it saw in the window of
// ws that each read began in. Its n-th read is due n periods of c.ReadRate
// after start, or later, and only reads due before the end are made, so
// that it makes at most d × c.ReadRate reads, however late the machine
// runs it.
func read(ctx context.Context, c *Config, cache *herd.Cache[string], h *history, load herd.Loader[string], start time.Time, d time.Duration,
	seed uint64, ws *windows, windowOf func(time.Duration) int,
) {
	rng := rand.New(rand.NewPCG(seed, 0xbeef))
	every := time.Second / time.Duration(c.ReadRate)
	end := start.Add(d)
	next := start
	for {
		// Paced, not closed-loop: a reader that fell behind by more than
		// a tenth of a second starts afresh rather than bursting.
		next = next.Add(every)
		if !next.Before(end) {
			return
		}
		now := time.Now()
		switch d := next.Sub(now); {
		case d > 0:
			sleep(ctx, d)
		case d < -100*time.Millisecond:
			next = now
		}
		if ctx.Err() != nil {
			return
		}
		k := rng.IntN(c.Keys)
		began := time.Since(start)
		t := &ws[windowOf(began)]
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), c.Timeout)
		v, err := cache.Get(rctx, h.keys[k], load)
		cancel()
		took := time.Since(start) - began
		if err != nil {
			t.errors++
		} else {
			t.reads++
			t.lat.Add(took)
			seq, perr := strconv.ParseUint(v, 10, 64)
			if perr != nil {
				t.errors++ // not a value the writer or the source gave
			} else if late, ok := h.superseded(k, seq, began); ok {
				t.longest = max(t.longest, late)
				if late > c.Allowance {
					t.stale++
				} else {
					t.delivered++
				}
			}
		}
	}
}

// sleep waits for d or the end of ctx.
func sleep(ctx context.Context, d time.Duration) {
	tm := time.NewTimer(d)
	defer tm.Stop()
	select {
	case <-ctx.Done():
	case <-tm.C:
	}
}

// ErrNoSetup is returned by [Result.Setup] for a setup the result lacks.
var ErrNoSetup = errors.New("fleet: no such setup in the result")

// Setup returns the result of the named setup.
func (r *Result) Setup(name string) (Setup, error) {
	for _, s := range r.Setups {
		if s.Name == name {
			return s, nil
		}
	}
	return Setup{}, fmt.Errorf("%w: %q", ErrNoSetup, name)
}

// storeTimeout bounds the caches' store calls well within a read's
// deadline, as a service gives its cache a StoreTimeout shorter than its
// callers' deadlines: a far tier that stops answering then costs a read
// one StoreTimeout and a load, not its whole deadline.
func storeTimeout(c *Config) herd.Option { return herd.StoreTimeout(c.Timeout / 4) }
