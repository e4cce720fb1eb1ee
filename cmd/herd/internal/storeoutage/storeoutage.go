// Package storeoutage is the store outage phase of the herd command: herd
// caches over a remote store (Redis or NATS JetStream) whose client is at
// its defaults, under a steady load of Gets, while the store's server
// becomes unreachable for a while and then comes back. It measures what
// each Get cost, and what the caches' health state did (see herd's
// StoreTimeout and StoreBackoff): the first callers pay at most one
// StoreTimeout before the store is marked down, the callers after them only
// the loader, and a probe finds the store again once it is back.
//
// The phase runs in four windows, and a Get counts in the window it was
// sent in:
//
//   - store up: the caches read and fill the store;
//   - cut, until marked down: the server is unreachable ([Link.Cut]), and
//     the instance the Get went through had not yet marked its store down;
//   - cut, marked down: its instance had marked the store down;
//   - store back: the server is reachable again ([Link.Restore]).
//
// The store's calls are counted by the caches' events, in the window they
// happened in. Run waits for every goroutine it starts, closes every cache
// and store it opened, and restores the link before it returns, also when
// its context ends.
package storeoutage

import (
	"context"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/herdcache/herd"
	"github.com/herdcache/herd/cmd/herd/internal/histogram"
	"github.com/herdcache/herd/cmd/herd/internal/proxy"
	"github.com/herdcache/herd/cmd/herd/internal/sim"
	"github.com/herdcache/herd/store"
)

// A Link is the way from the caches to the store's server, which the phase
// cuts and restores.
type Link interface {
	Cut(proxy.Fault)
	Restore() error
}

// Config is a store outage phase.
type Config struct {
	Clients   int           // callers, each sending a Get every Interval, whether or not the last returned
	Interval  time.Duration // time between two Gets of a caller
	Keys      int           // distinct keys, drawn from a Zipf distribution
	Zipf      float64       // exponent of the key distribution, > 1
	Instances int           // herd caches, each over a store of its own on the server, sharing its keys and lock
	Latency   time.Duration // how long the loader takes
	TTL       time.Duration // how long a cached value is fresh
	Before    time.Duration // the store up, before the cut
	Outage    time.Duration // how long the server is unreachable
	// After is how long the phase goes on once the server is back, at
	// least: it goes on until every cache that marked its store down has
	// marked it up, for at most herd.DefaultStoreBackoffMax more.
	After   time.Duration
	Timeout time.Duration // a Get's deadline
	Fault   proxy.Fault   // how the server is unreachable
	Seed    uint64

	// Open opens the store of one cache, through the Link, with its
	// client at its defaults. Every cache opens it under the same name.
	Open func(ctx context.Context, name string) (sim.SharedStore, error) `json:"-"`
	// Link cuts the server off and restores it.
	Link Link `json:"-"`
	// StoreName names the store in reports, without credentials.
	StoreName string
	// Client says which client the stores use and how it is set, for
	// reports: "go-redis v9 at its defaults".
	Client string
}

// Window names, in the order of the phase.
const (
	StoreUp    = "store up"
	CutNotDown = "cut, until marked down"
	CutDown    = "cut, marked down"
	StoreBack  = "store back"
)

// Validate reports the first setting out of range.
func (c *Config) Validate() error {
	switch {
	case c.Clients < 1 || c.Clients > sim.MaxClients:
		return fmt.Errorf("clients must be between 1 and %d, got %d", sim.MaxClients, c.Clients)
	case c.Keys < 1 || c.Keys > sim.MaxKeys:
		return fmt.Errorf("keys must be between 1 and %d, got %d", sim.MaxKeys, c.Keys)
	case c.Instances < 1 || c.Instances > sim.MaxInstances:
		return fmt.Errorf("instances must be between 1 and %d, got %d", sim.MaxInstances, c.Instances)
	case !(c.Zipf > 1):
		return fmt.Errorf("zipf must be greater than 1, got %v", c.Zipf)
	case c.Interval <= 0 || c.Latency <= 0 || c.TTL <= 0 || c.Before <= 0 || c.Outage <= 0 || c.After <= 0 || c.Timeout <= 0:
		return fmt.Errorf("every duration must be positive")
	case c.Fault != proxy.Hang && c.Fault != proxy.Refuse:
		return fmt.Errorf("unknown fault %v", c.Fault)
	case c.Open == nil || c.Link == nil:
		return fmt.Errorf("no store to open or link to cut")
	}
	return nil
}

// A Window is what the Gets sent in one window of the phase saw, and what
// the caches did meanwhile.
type Window struct {
	Name          string
	Gets          uint64 // Gets sent
	Errors        uint64 // Gets that failed or timed out
	FromStore     uint64 // Gets answered from the store
	Loaded        uint64 // Gets answered by a load, theirs or one they waited for
	P50, P99, Max time.Duration
	// SlowGets counts the Gets that took longer than the load plus half a
	// StoreTimeout: those that waited on the unreachable store.
	SlowGets uint64

	// From the caches' events in the window, summed over the caches.
	Loads        uint64        // loader calls
	LoadMax      time.Duration // the longest loader call
	StoreSkipped uint64        // store calls not made: the store was marked down
	StoreErrors  uint64        // store calls that failed
}

// A Point is one bucket of the phase's timeline. A Get counts in the bucket
// it was sent in, an event in the bucket it happened in.
type Point struct {
	At                     time.Duration // start of the bucket, from the start of the phase
	Gets, Errors           uint64
	P50, P99, Max          time.Duration // 0 without Gets
	Loads, FromStore       uint64
	StoreSkipped, StoreErr uint64
}

// Result is what a store outage phase measured.
type Result struct {
	Config       Config
	StoreTimeout time.Duration // the caches' StoreTimeout (herd's default)
	CutAt        time.Duration // when the server was cut off, from the start of the phase
	RestoredAt   time.Duration // when it was reachable again
	Windows      []Window      // in the order of the phase
	// Downs and Ups are when a cache marked its store down or up, from
	// the start of the phase, in order, every cache's.
	Downs, Ups []time.Duration
	// Stats are the caches' counters at the end, summed.
	Stats       herd.Stats
	Bucket      time.Duration
	Timeline    []Point
	Elapsed     time.Duration
	Interrupted bool // ctx ended before the phase did
}

// Window returns the window named name, and whether the result has it.
func (r *Result) Window(name string) (Window, bool) {
	for _, w := range r.Windows {
		if w.Name == name {
			return w, true
		}
	}
	return Window{}, false
}

// A get is one Get the callers sent.
type get struct {
	inst       int
	sent, took time.Duration
	status     herd.Status
	failed     bool
}

// An event is one event of a cache.
type event struct {
	inst int
	at   time.Duration
	kind herd.EventKind
	dur  time.Duration
}

// recorder keeps the Gets and events of the phase.
type recorder struct {
	start time.Time

	mu     sync.Mutex
	gets   []get
	events []event
	down   []bool // per instance: marked down now
}

func (r *recorder) observer(inst int) herd.Observer {
	return herd.ObserverFunc(func(e herd.Event) {
		switch e.Kind {
		case herd.EventLoad, herd.EventStoreSkipped, herd.EventStoreError, herd.EventStoreDown, herd.EventStoreUp:
		default:
			return
		}
		at := time.Since(r.start)
		r.mu.Lock()
		r.events = append(r.events, event{inst: inst, at: at, kind: e.Kind, dur: e.Duration})
		switch e.Kind {
		case herd.EventStoreDown:
			r.down[inst] = true
		case herd.EventStoreUp:
			r.down[inst] = false
		}
		r.mu.Unlock()
	})
}

// allUp reports whether no cache has its store marked down.
func (r *recorder) allUp() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return !slices.Contains(r.down, true)
}

// Run runs the phase and reports what it measured. It returns an error if
// a store cannot be opened or the link cannot be restored; when ctx ends,
// it stops early and returns what it measured with Interrupted set.
func Run(ctx context.Context, c Config) (*Result, error) {
	if err := c.Validate(); err != nil {
		return nil, err
	}
	started := time.Now()
	rec := &recorder{down: make([]bool, c.Instances)}
	caches := make([]*herd.Cache[string], 0, c.Instances)
	var closers []func()
	closeAll := func() {
		for _, ch := range caches {
			cctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			_ = ch.Close(cctx)
			cancel()
		}
		for _, f := range closers {
			f()
		}
	}
	for i := range c.Instances {
		ss, err := c.Open(ctx, "outage")
		for try := 1; err != nil && try < openTries && ctx.Err() == nil; try++ {
			// A server under load may fail to create a stream or a key
			// space once (JetStream's 10049, "error creating store").
			time.Sleep(200 * time.Millisecond)
			ss, err = c.Open(ctx, "outage")
		}
		if err != nil {
			closeAll()
			return nil, err
		}
		closers = append(closers, ss.Close)
		caches = append(caches, herd.New[string](storeOnly{ss.Store}, herd.TTL(c.TTL),
			herd.WithLocker(ss.Locker, 10*time.Second),
			herd.WithLogger(slog.New(slog.DiscardHandler)), herd.WithObserver(rec.observer(i))))
	}

	load := func(ctx context.Context, key string) (string, error) {
		t := time.NewTimer(c.Latency)
		defer t.Stop()
		select {
		case <-t.C:
			return "value of " + key, nil
		case <-ctx.Done():
			return "", ctx.Err()
		}
	}

	rec.start = time.Now()
	r := &Result{Config: c, StoreTimeout: herd.DefaultStoreTimeout, Bucket: 100 * time.Millisecond}
	clientsCtx, stop := context.WithCancel(ctx)
	var clients sync.WaitGroup
	for id := range c.Clients {
		clients.Go(func() { send(clientsCtx, &c, rec, caches, load, id) })
	}

	// The fault: cut after Before, restored after Outage, then the phase
	// goes on until every cache has found its store again.
	interrupted := !wait(ctx, c.Before)
	cut := false
	if !interrupted {
		r.CutAt = time.Since(rec.start)
		c.Link.Cut(c.Fault)
		cut = true
		interrupted = !wait(ctx, c.Outage)
	}
	var restoreErr error
	if cut {
		r.RestoredAt = time.Since(rec.start)
		restoreErr = c.Link.Restore()
	}
	if !interrupted && restoreErr == nil {
		interrupted = !wait(ctx, c.After)
		limit := time.Now().Add(herd.DefaultStoreBackoffMax)
		for !interrupted && !rec.allUp() && time.Now().Before(limit) {
			interrupted = !wait(ctx, 50*time.Millisecond)
		}
	}
	end := time.Since(rec.start)
	stop()
	clients.Wait()
	for _, ch := range caches {
		r.Stats = addStats(r.Stats, ch.Stats())
	}
	closeAll()
	if restoreErr != nil {
		return nil, restoreErr
	}
	r.Interrupted = interrupted || ctx.Err() != nil
	r.summarize(rec, end)
	r.Elapsed = time.Since(started)
	return r, nil
}

// storeOnly hides the store's Close from the cache: the phase closes the
// store itself, after the cache.
type storeOnly struct {
	store.Store[string]
}

// send is one caller: a Get every Interval, each on a goroutine of its
// own, until ctx ends; it returns when its Gets have returned.
func send(ctx context.Context, c *Config, rec *recorder, caches []*herd.Cache[string], load herd.Loader[string], id int) {
	rng := rand.New(rand.NewPCG(c.Seed, uint64(id)))
	var zipf *rand.Zipf
	if c.Keys > 1 {
		zipf = rand.NewZipf(rng, c.Zipf, 1, uint64(c.Keys-1))
	}
	inst := id % len(caches)
	cache := caches[inst]
	var gets sync.WaitGroup
	defer gets.Wait()
	next := time.Now().Add(time.Duration(rng.Int64N(int64(c.Interval))))
	timer := time.NewTimer(time.Until(next))
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-timer.C:
		}
		k := 0
		if zipf != nil {
			k = int(zipf.Uint64())
		}
		key := "k" + strconv.Itoa(k)
		gets.Go(func() {
			sent := time.Now()
			gctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), c.Timeout)
			res, err := cache.Fetch(gctx, key, load)
			cancel()
			g := get{inst: inst, sent: sent.Sub(rec.start), took: time.Since(sent), status: res.Status, failed: err != nil}
			rec.mu.Lock()
			rec.gets = append(rec.gets, g)
			rec.mu.Unlock()
		})
		next = next.Add(c.Interval)
		timer.Reset(max(time.Until(next), 0))
	}
}

// wait waits for d or the end of ctx, and reports whether d passed.
func wait(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

// summarize fills r's windows, marks and timeline from what rec kept, for
// the phase that ended at end.
func (r *Result) summarize(rec *recorder, end time.Duration) {
	rec.mu.Lock()
	defer rec.mu.Unlock()
	slices.SortFunc(rec.events, func(a, b event) int { return int(a.at - b.at) })
	// downAt[i] is when cache i first marked its store down after the
	// cut; a cache that never did has it at the restore.
	downAt := make([]time.Duration, r.Config.Instances)
	for i := range downAt {
		downAt[i] = r.RestoredAt
	}
	for _, e := range rec.events {
		switch e.kind {
		case herd.EventStoreDown:
			r.Downs = append(r.Downs, e.at)
			if r.CutAt > 0 && e.at >= r.CutAt && e.at < downAt[e.inst] {
				downAt[e.inst] = e.at
			}
		case herd.EventStoreUp:
			r.Ups = append(r.Ups, e.at)
		}
	}
	window := func(inst int, at time.Duration) int {
		switch {
		case r.CutAt == 0 || at < r.CutAt:
			return 0
		case at >= r.RestoredAt:
			return 3
		case at < downAt[inst]:
			return 1
		}
		return 2
	}
	names := []string{StoreUp, CutNotDown, CutDown, StoreBack}
	var lat [4]histogram.Histogram
	ws := make([]Window, 4)
	for i := range ws {
		ws[i].Name = names[i]
	}
	buckets := int(end/r.Bucket) + 1
	r.Timeline = make([]Point, buckets)
	blat := make([]histogram.Histogram, buckets)
	for i := range r.Timeline {
		r.Timeline[i].At = time.Duration(i) * r.Bucket
	}
	bucketOf := func(at time.Duration) int { return min(max(int(at/r.Bucket), 0), buckets-1) }
	for _, e := range rec.events {
		w, b := &ws[window(e.inst, e.at)], &r.Timeline[bucketOf(e.at)]
		switch e.kind {
		case herd.EventLoad:
			w.Loads++
			w.LoadMax = max(w.LoadMax, e.dur)
			b.Loads++
		case herd.EventStoreSkipped:
			w.StoreSkipped++
			b.StoreSkipped++
		case herd.EventStoreError:
			w.StoreErrors++
			b.StoreErr++
		}
	}
	slow := r.Config.Latency + r.StoreTimeout/2
	for _, g := range rec.gets {
		i := window(g.inst, g.sent)
		w, b := &ws[i], &r.Timeline[bucketOf(g.sent)]
		w.Gets++
		b.Gets++
		lat[i].Add(g.took)
		blat[bucketOf(g.sent)].Add(g.took)
		if g.took > slow {
			w.SlowGets++
		}
		switch {
		case g.failed:
			w.Errors++
			b.Errors++
		case g.status == herd.StatusLoaded:
			w.Loaded++
		default:
			w.FromStore++
			b.FromStore++
		}
	}
	for i := range ws {
		ws[i].P50, ws[i].P99, ws[i].Max = lat[i].Quantile(0.50), lat[i].Quantile(0.99), lat[i].Max()
	}
	for i := range r.Timeline {
		if blat[i].N() > 0 {
			p := &r.Timeline[i]
			p.P50, p.P99, p.Max = blat[i].Quantile(0.50), blat[i].Quantile(0.99), blat[i].Max()
		}
	}
	r.Windows = ws
}

func addStats(a, b herd.Stats) herd.Stats {
	a.Hits += b.Hits
	a.Misses += b.Misses
	a.SharedWaits += b.SharedWaits
	a.Loads += b.Loads
	a.LoadErrors += b.LoadErrors
	a.StoreErrors += b.StoreErrors
	a.StoreSkipped += b.StoreSkipped
	a.StoreDowns += b.StoreDowns
	a.StoreUps += b.StoreUps
	a.LockWaits += b.LockWaits
	return a
}

// openTries is how many times the phase tries to open each instance's
// store before it gives up.
const openTries = 3
