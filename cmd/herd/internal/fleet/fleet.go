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
	// Progress, if not nil, is called as each setup starts.
	Progress func(setup string) `json:"-"`
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
func fleetOf(ctx context.Context, c *Config, name string) ([]instance, func(), error) {
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
	far := c.Far
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
			in.cache = herd.New[string](ss.Store, herd.TTL(c.TTL), herd.WithLocker(ss.Locker, 10*time.Second), quiet)
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
			in.cache = herd.New[string](near, herd.TTL(c.TTL), herd.WithLocker(ss.Locker, 10*time.Second), quiet)
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
}

func newHistory(keys int) *history {
	h := &history{latest: make([]atomic.Uint64, keys), writes: make([]atomic.Pointer[[]write], keys), keys: make([]string, keys)}
	for i := range h.keys {
		h.keys[i] = "k" + strconv.Itoa(i)
	}
	return h
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

// tally is what one reader saw.
type tally struct {
	reads, errors, stale, delivered uint64
	longest                         time.Duration
	lat                             histogram.Histogram
}

func runSetup(ctx context.Context, c *Config, name string) (Setup, error) {
	insts, closeAll, err := fleetOf(ctx, c, name)
	if err != nil {
		return Setup{}, err
	}
	defer closeAll()

	h := newHistory(c.Keys)
	load := func(_ context.Context, key string) (string, error) {
		k, err := strconv.Atoi(key[1:])
		if err != nil || k < 0 || k >= len(h.latest) {
			return "", fmt.Errorf("fleet: key %q: %w", key, herd.ErrNotFound)
		}
		return strconv.FormatUint(h.latest[k].Load(), 10), nil
	}
	warmUp(ctx, c, insts, h, load)
	if ctx.Err() != nil {
		return Setup{Name: name}, nil
	}

	start := time.Now()
	runCtx, cancel := context.WithDeadline(ctx, start.Add(c.Duration))
	defer cancel()
	var (
		wg     sync.WaitGroup
		writes atomic.Uint64
	)
	tallies := make([]tally, c.Readers)
	for i := range c.Readers {
		wg.Go(func() {
			read(runCtx, c, insts[i%len(insts)].cache, h, load, start, c.Seed*1000+uint64(i), &tallies[i])
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
			seq++
			h.latest[k].Store(seq)
			// A call in flight at the end of the setup finishes: its
			// context is not the setup's, so that the end is no failure.
			wctx, wcancel := context.WithTimeout(context.WithoutCancel(runCtx), c.Timeout)
			err := in.cache.Set(wctx, h.keys[k], strconv.FormatUint(seq, 10))
			wcancel()
			if err == nil {
				h.completed(k, seq, time.Since(start))
				writes.Add(1)
			}
		}
	})
	wg.Wait()
	elapsed := time.Since(start)

	s := Setup{Name: name, Writes: writes.Load()}
	for _, in := range insts {
		s.StoreErrors += in.cache.Stats().StoreErrors
	}
	var lat histogram.Histogram
	for i := range tallies {
		t := &tallies[i]
		s.Reads += t.reads
		s.Errors += t.errors
		s.Stale += t.stale
		s.Delivered += t.delivered
		s.Longest = max(s.Longest, t.longest)
		lat.Merge(&t.lat)
	}
	// Reads were due within the setup's time, at most ReadRate a second
	// per reader: over that time, not the time the last read took to
	// return, reads a second are at most what the readers send.
	s.PerSec = float64(s.Reads) / min(elapsed, c.Duration).Seconds()
	s.P50, s.P99 = lat.Quantile(0.50), lat.Quantile(0.99)
	return s, nil
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

// read is one reader: it reads random keys through its instance for the
// setup's c.Duration from start, or until ctx ends, and tallies what it
// saw. Its n-th read is due n periods of c.ReadRate after start, or later,
// and only reads due before the end are made, so that it makes at most
// c.Duration × c.ReadRate reads, however late the machine runs it.
func read(ctx context.Context, c *Config, cache *herd.Cache[string], h *history, load herd.Loader[string], start time.Time, seed uint64, t *tally) {
	rng := rand.New(rand.NewPCG(seed, 0xbeef))
	every := time.Second / time.Duration(c.ReadRate)
	end := start.Add(c.Duration)
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
