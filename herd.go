// Package herd puts a cache in front of a slow source of truth so that a
// service under load never stampedes it: however many callers miss a key at
// once, one load runs; a stale value is served at once while one worker
// refreshes it; when the source is down, the last good value keeps the
// service up; and a fleet of instances sharing a store (Redis, NATS, the
// two-level store) loads each key once for all.
//
//	users := herd.New(memory.New[User](memory.MaxEntries(100_000)),
//		herd.TTL(10*time.Minute), herd.RefreshAfter(time.Minute), herd.StaleIfError(time.Hour))
//	defer users.Close(ctx)
//	u, err := users.Get(ctx, "user:42", loadUser)
//
// # Guarantees
//
// A [Cache] reads through a [store.Store]. For each key:
//
//   - absent: the caller waits for one load; every concurrent caller of the
//     key shares it (one loader call per key at a time in a process, and across
//     processes with [WithLocker]);
//   - fresh: the value is returned, nothing else happens;
//   - stale (past [RefreshAfter]): the value is returned at once and one
//     background refresh of the key is queued for a bounded pool of workers;
//   - expired (past [TTL]): the caller waits for one load; if it fails and
//     [StaleIfError] still covers the entry, the old value is returned instead
//     of the error;
//   - not found: a loader error wrapping [ErrNotFound] is cached for
//     [NegativeTTL]; other errors are never cached.
//
// A caller's context governs only its own wait. Loads run on
// [context.WithoutCancel] of the first caller's context (its values, such as
// trace ids, survive), bounded by [LoadTimeout], and fill the cache even when
// every caller has left. A caller gets a loaded value as soon as the loader
// returns it; the store write that follows (bounded by [StoreTimeout]) makes
// no caller wait, and no second load of the key starts before it lands.
//
// Writes win, across a fleet. A [Cache.Set] or [Cache.Delete] that lands
// while a load of the key is in flight wins: the load's result goes to its
// callers but is not stored. In one process the cache sees to it; across
// processes that share a store, the store does, when it implements
// [store.Versioned] (memory, Redis, NATS and the two-level store all do): a
// load reads the key's version before it starts and writes its result back
// only if the version is unchanged, so a write by any instance, a later
// load, or any other client of the backend wins, and the store never goes
// back to an older value. A refused write-back is counted in
// [Stats.WriteConflicts].
//
// [Cache.GetMany] and [Cache.FetchMany] read many keys with one bulk read of
// the store and load the misses with a [BatchLoader], with the guarantees of
// Get for each key: a batch is the loads of its keys through the same steps
// as Get's (the fleet's locks, the version read, the conditional
// write-back), whose loader calls are one call of the batch loader. [Batch]
// turns a BatchLoader into a Loader that gathers the keys of concurrent Gets
// into batch calls. Within a loader, [SetTTL] gives the entry being loaded
// its own lifetime, for example from an HTTP Cache-Control header, and
// [Refreshing] tells a background refresh from a caller's load.
// [Cache.Fetch] tells a caller whether its value was fresh, stale or just
// loaded, and how old it is.
//
// # Costs
//
// Over an in-process store (store/memory), a hit takes one lookup in place,
// no lock, no allocation and, while the store is busy, no clock read (its
// coarse clock); a stale hit takes no lock either while its refresh is
// queued. A load whose first caller's context cannot end (context.Background
// and its values) runs on that caller's goroutine, which would only wait
// otherwise: a miss then costs no goroutine, and a runtime.Goexit in such a
// load ends that caller's goroutine, as it would without a cache (the other
// waiters get [flight.ErrGoexit]). Over a remote store, a hit is one store
// read, and a load runs on a goroutine of its own. A batch's store steps
// are one bulk call each when the store has them ([store.BulkVersioned],
// [store.BulkLocker]): a cold GetMany of 100 keys is three round trips to
// one Redis, five with WithLocker.
//
// # Errors
//
// Get returns an error wrapping [ErrNotFound] for a key the source does not
// have, [ErrClosed] after Close, the caller's ctx.Err() when its context ends
// first, and the loader's error otherwise, wrapped with the key. A loader
// panic reaches every waiter as a [*flight.PanicError], a runtime.Goexit as
// [flight.ErrGoexit]; neither is hidden behind a stale value. GetMany
// returns the keys that failed in a [KeyErrors]. A store that fails costs a
// load, not an error: its failures are counted and logged. A remote store
// found unavailable (its call refused, lost or past StoreTimeout) is skipped
// by every call until it answers again, but for one probe now and then (see
// [StoreBackoff]): an outage costs the first caller one StoreTimeout, and
// the callers after it their load, without the store's reads, locks and
// writes.
//
// # Lifecycle
//
// [New] builds a cache over a store and starts nothing: refresh workers
// start when there is work and exit when there is none. [Cache.Close] stops
// the refreshes, waits for the loads in flight (within its context) and
// closes the store. A loader must not call Get for its own key or Close the
// cache: it would wait for itself until its context ends.
//
// # Conventions
//
// Every package of herd follows the same rules:
//
//   - Construction takes functional options, checked at construction: an
//     invalid value panics with a message that names the option, as it is a
//     programming error. A constructor returns an error only for what depends
//     on the outside world (a server, a bucket). Every option documents its
//     default.
//   - Close(ctx) is idempotent; every call waits for the same shutdown within
//     its ctx and returns an error wrapping ctx.Err() ("pkg: close: ...") if
//     ctx ends first; methods called after Close return the package's
//     ErrClosed; nothing the package started outlives it. A store never
//     closes a client it was given.
//   - Callbacks (observers, loggers, user functions run on the package's own
//     goroutines) never run under a lock, so they may call back into the
//     package; they must be quick. The events of a load reach observers and
//     the log only once the load's result has reached its callers, so an
//     observer may Get the key it is told about. A panic in a callback is
//     recovered, counted and logged, never fatal to the process. A panic of
//     a loader or fetch function reaches its callers as a
//     [*flight.PanicError].
//   - Every method takes a context first and never blocks past it; a nil
//     context panics.
//   - Logging goes through log/slog with the key "err" for errors, on the
//     context of the work, at most once per 10 seconds for a failure that can
//     repeat per request.
package herd

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/herdcache/herd/internal/callgroup"
	"github.com/herdcache/herd/internal/check"
	"github.com/herdcache/herd/internal/closing"
	"github.com/herdcache/herd/internal/health"
	"github.com/herdcache/herd/internal/local"
	"github.com/herdcache/herd/internal/ratelog"
	"github.com/herdcache/herd/store"
)

// ErrNotFound is what a loader returns, wrapped or not, when the source says
// the key does not exist. Get then returns an error wrapping it, and caches
// the answer for [NegativeTTL].
var ErrNotFound = errors.New("herd: not found")

// ErrClosed is returned by every method of a [Cache] after [Cache.Close].
var ErrClosed = errors.New("herd: cache closed")

// A Loader loads the value of key from the source of truth. It returns an
// error wrapping [ErrNotFound] when the source says the key does not exist.
// Its context carries the first caller's values but not its cancellation.
//
// When callers of one key are coalesced, the loader of the caller that
// started the load runs, and the others share its result; a background
// refresh runs the loader of the caller that found the value stale.
type Loader[T any] func(ctx context.Context, key string) (T, error)

// Status says where the value of a [Result] came from.
type Status uint8

// The statuses of a [Result].
const (
	// StatusFresh: from the store, younger than RefreshAfter and TTL.
	StatusFresh Status = iota + 1
	// StatusStale: from the store, past RefreshAfter; a refresh is queued.
	StatusStale
	// StatusLoaded: just loaded, by this caller or one it waited for.
	StatusLoaded
	// StatusStaleOnError: from the store, past TTL, returned because the
	// load that should have replaced it failed.
	StatusStaleOnError
)

func (s Status) String() string {
	switch s {
	case StatusFresh:
		return "fresh"
	case StatusStale:
		return "stale"
	case StatusLoaded:
		return "loaded"
	case StatusStaleOnError:
		return "stale-on-error"
	}
	return "unknown"
}

// A Result is a value with where it came from and how old it is.
type Result[T any] struct {
	Value    T
	Status   Status
	StoredAt time.Time // when the value was loaded

	at time.Time // when the cache returned it
}

// Age is how old the value was when the cache returned it, for an HTTP Age
// header: zero for a value just loaded.
func (r Result[T]) Age() time.Duration {
	if r.at.IsZero() || r.StoredAt.IsZero() {
		return 0
	}
	return max(r.at.Sub(r.StoredAt), 0)
}

// A Cache reads through a store, loading each missing or expired key once
// however many callers ask for it. Build it with [New]; its methods are safe
// for concurrent use.
type Cache[T any] struct {
	store store.Store[T]
	// The read paths, chosen once in New: peek, the lookup in place that
	// the store lends (local.Lending), is the whole read of an in-process
	// store (inProcess: store/memory; its calls never block either) or a
	// near tier's, whose miss reads the store (store/tiered); shared lends
	// entries from a remote read; any other store is read with Get.
	peek      local.Peek[T]
	fallback  local.Fallback[T] // a near tier's copies past their time, for stale-if-error
	inProcess bool
	shared    store.SharedGetter[T] // store, when it can lend its entries
	versioned store.Versioned[T]    // store, when it has conditional writes
	health    *health.State         // the store's, when it is remote: nil for an in-process one
	cfg       config
	flight    callgroup.Group[string, store.Entry[T], panicErrors]
	loadFn    func(context.Context, string, any) (store.Entry[T], error) // loadTask, bound once
	writes    writeGuard
	backoff   backoffs
	stats     counters

	// lifeMu orders the start of a load against Close: a load registers in
	// loads under the read lock, and Close sets closed under the write lock
	// before it waits for loads.
	lifeMu  sync.RWMutex
	closed  atomic.Bool
	loads   sync.WaitGroup
	closing closing.Once

	refresh refresher[T]

	storeErrLog, refreshErrLog, callbackLog ratelog.Limiter
}

// New returns a cache over s. It panics if an option is invalid, with a
// message that names it. Call [Cache.Close] when done with the cache: it
// waits for background work and closes s.
func New[T any](s store.Store[T], opts ...Option) *Cache[T] {
	check.That(s != nil, "herd", "New needs a store, got nil")
	cfg := defaultConfig()
	for _, o := range opts {
		o(&cfg)
	}
	cfg.validate()
	c := &Cache[T]{store: s, cfg: cfg}
	var near bool
	c.peek, near, _ = local.Of[T](s)
	c.fallback = local.FallbackOf[T](s)
	c.inProcess = c.peek != nil && !near
	c.shared, _ = s.(store.SharedGetter[T])
	c.versioned, _ = s.(store.Versioned[T])
	if !c.inProcess {
		c.health = health.New(cfg.downMin, cfg.downMax)
	}
	// A load runs on its first caller's goroutine when that caller cannot
	// leave early, unless its store write-back may be slow: no caller waits
	// for a write to a remote store.
	c.flight.OwnGoroutine = !c.inProcess
	c.loadFn = c.loadTask
	c.refresh.init(c)
	return c
}

// Get returns the value of key, loading it with load when the cache has no
// usable entry (see the package documentation for each case). Errors:
// ctx.Err() when ctx ends first; an error wrapping [ErrNotFound] when the
// source says key does not exist; [ErrClosed] after Close; otherwise the
// loader's error, wrapped with the key. A nil ctx or load panics, on a
// cached key too: both are programming errors.
func (c *Cache[T]) Get(ctx context.Context, key string, load Loader[T]) (T, error) {
	check.Context(ctx, "herd")
	check.That(load != nil, "herd", "Get needs a loader, got nil")
	if c.peek == nil || c.closed.Load() {
		r, err := c.Fetch(ctx, key, load)
		return r.Value, err
	}
	// The hit path: one lookup in place, one clock read (an atomic load
	// with the store's coarse clock). Over an in-process store, a stale
	// value is answered here too, and its refresh queued, not yet converted
	// to a Result; over a near tier, anything but a fresh hit reads the
	// store.
	e, now, ok := c.peek(key)
	if ok && fresh(e, now) {
		c.hit(key)
		return e.Value, nil
	}
	if !c.inProcess {
		r, err := c.Fetch(ctx, key, load)
		return r.Value, err
	}
	if ok && stale(e, now) {
		c.staleLocal(ctx, key, load, e, now)
		return e.Value, nil
	}
	r, err := c.serveLocal(ctx, key, load, e, now, ok)
	return r.Value, err
}

// Fetch is [Cache.Get] that also says whether the value was fresh, stale or
// just loaded, and its age.
func (c *Cache[T]) Fetch(ctx context.Context, key string, load Loader[T]) (Result[T], error) {
	check.Context(ctx, "herd")
	check.That(load != nil, "herd", "Fetch needs a loader, got nil")
	if c.closed.Load() {
		return Result[T]{}, ErrClosed
	}
	if c.inProcess {
		e, now, ok := c.peek(key)
		if ok && fresh(e, now) {
			c.hit(key)
			return Result[T]{Value: e.Value, Status: StatusFresh, StoredAt: local.Time(e.StoredAt), at: time.Unix(0, now)}, nil
		}
		return c.serveLocal(ctx, key, load, e, now, ok)
	}
	// A remote read is bounded by StoreTimeout: a slow or hung store costs
	// the caller a load, not its whole deadline; a store found down costs
	// nothing (see StoreBackoff).
	p := c.health.Enter()
	if p == health.Skip {
		c.record(ctx, &c.stats.storeSkipped, Event{Kind: EventStoreSkipped, Key: key})
		// A near tier serves what it holds while its far tier is down.
		if e, now, ok := c.peekNear(key); ok {
			se := e.Entry()
			return c.serveRead(ctx, key, load, &se, time.Unix(0, now), true, nil)
		}
		return c.loadAndWait(ctx, key, load, nil)
	}
	rctx, cancel := c.storeBound(ctx)
	var (
		e   store.Entry[T]
		se  *store.Entry[T]
		now time.Time
		ok  bool
		err error
	)
	if c.shared != nil {
		se, now, ok, err = c.shared.GetShared(rctx, key)
	} else {
		e, ok, err = c.store.Get(rctx, key)
		se = &e
	}
	cancel()
	c.exit(ctx, p, err)
	if err != nil && ctx.Err() != nil {
		return Result[T]{}, ctx.Err()
	}
	return c.serveRead(ctx, key, load, se, now, ok, err)
}

// peekNear looks key up in the near tier of a two-level store, if the
// cache has one.
func (c *Cache[T]) peekNear(key string) (*local.Entry[T], int64, bool) {
	if c.peek == nil || c.inProcess {
		return nil, 0, false
	}
	return c.peek(key)
}

// storeBound returns ctx bounded by StoreTimeout for a store call. A ctx
// whose deadline comes sooner is bound enough, and is returned as it is:
// a timer costs allocations that a hit would notice.
func (c *Cache[T]) storeBound(ctx context.Context) (context.Context, context.CancelFunc) {
	if d, ok := ctx.Deadline(); ok && time.Until(d) <= c.cfg.storeTimeout {
		return ctx, func() {}
	}
	return context.WithTimeout(ctx, c.cfg.storeTimeout)
}

// fresh reports whether e, found live at now, is a value to return as it is.
func fresh[T any](e *local.Entry[T], now int64) bool {
	return !e.NotFound() && (e.RefreshAt == 0 || now < e.RefreshAt) && (e.ExpiresAt == 0 || now < e.ExpiresAt)
}

// serveLocal is serveRead for an entry of an in-process store that is not
// fresh, or missing (ok false). A stale value, the most frequent case, is
// answered without converting the entry.
func (c *Cache[T]) serveLocal(ctx context.Context, key string, load Loader[T], e *local.Entry[T], now int64, ok bool) (Result[T], error) {
	if !ok {
		return c.loadAndWait(ctx, key, load, nil)
	}
	at := time.Unix(0, now)
	if stale(e, now) {
		c.staleLocal(ctx, key, load, e, now)
		return Result[T]{Value: e.Value, Status: StatusStale, StoredAt: local.Time(e.StoredAt), at: at}, nil
	}
	se := e.Entry()
	return c.serveRead(ctx, key, load, &se, at, true, nil)
}

// stale reports whether e, found live at now, is a value to return at once
// while a refresh runs.
func stale[T any](e *local.Entry[T], now int64) bool {
	return !e.NotFound() && e.RefreshAt != 0 && now >= e.RefreshAt && (e.ExpiresAt == 0 || now < e.ExpiresAt)
}

// staleLocal counts a stale read of the in-process entry e and sees to its
// refresh. A read while the entry's refresh is queued or running, the usual
// case, takes no lock.
func (c *Cache[T]) staleLocal(ctx context.Context, key string, load Loader[T], e *local.Entry[T], now int64) {
	c.staleHit(ctx, key)
	if !c.refresh.listsRefreshing(e) {
		c.refresh.schedule(ctx, key, load, time.Unix(0, now), e)
	}
}

// serveRead answers a read from what the store returned: the entry if it is
// usable, a load otherwise. A store error counts as a miss.
func (c *Cache[T]) serveRead(ctx context.Context, key string, load Loader[T], e *store.Entry[T], now time.Time, ok bool, err error) (Result[T], error) {
	if err != nil {
		c.storeError(ctx, "get", key, err)
		ok = false
	}
	if !ok {
		return c.loadAndWait(ctx, key, load, nil)
	}
	if r, err, done := c.serveEntry(ctx, key, load, e, now); done {
		return r, err
	}
	return c.loadAndWait(ctx, key, load, e)
}

// serveEntry answers a read from the entry the store had, if it can: done is
// false when the caller must wait for a load instead. now is the store's
// clock reading, or zero.
func (c *Cache[T]) serveEntry(ctx context.Context, key string, load Loader[T], e *store.Entry[T], now time.Time) (r Result[T], err error, done bool) {
	if now.IsZero() {
		now = time.Now()
	}
	if e.ExpiresAt.IsZero() && e.RefreshAt.IsZero() && !e.NotFound {
		c.record(ctx, &c.stats.hits, Event{Kind: EventHit, Key: key})
		return result(e, StatusFresh, now), nil, true
	}
	if !e.Expired(now) {
		switch {
		case e.NotFound:
			c.record(ctx, &c.stats.negativeHits, Event{Kind: EventNegativeHit, Key: key})
			return Result[T]{}, notFound(key), true
		case !e.RefreshAt.IsZero() && !now.Before(e.RefreshAt):
			c.record(ctx, &c.stats.staleHits, Event{Kind: EventStaleHit, Key: key})
			c.refresh.schedule(ctx, key, load, now, nil)
			return result(e, StatusStale, now), nil, true
		}
		c.record(ctx, &c.stats.hits, Event{Kind: EventHit, Key: key})
		return result(e, StatusFresh, now), nil, true
	}
	// Expired. While the key backs off after a failed load, an entry kept
	// for stale-if-error is served without asking the source again.
	if !e.NotFound && e.Live(now) && c.backoff.active(key, now) {
		c.record(ctx, &c.stats.staleOnError, Event{Kind: EventStaleOnError, Key: key, Err: errBackingOff})
		return result(e, StatusStaleOnError, now), nil, true
	}
	return Result[T]{}, nil, false
}

// errBackingOff is the error of the stale-on-error events of keys that were
// not loaded because they back off after a failure.
var errBackingOff = errors.New("herd: key backing off after a failed load")

func result[T any](e *store.Entry[T], s Status, now time.Time) Result[T] {
	return Result[T]{Value: e.Value, Status: s, StoredAt: e.StoredAt, at: now}
}

func notFound(key string) error {
	return fmt.Errorf("herd: %q: %w", key, ErrNotFound)
}

// Stats returns the cache's counters. The fields are read one by one, not as
// one snapshot: a count may include an event that a related count, read
// earlier, does not.
func (c *Cache[T]) Stats() Stats { return c.stats.snapshot() }

// Close stops the background refreshes: queued ones are dropped, running
// ones and foreground loads in flight (with their store writes) are waited
// for until ctx ends. Then it closes the store if the store has a
// Close(context.Context) error or Close() error method. Close returns an
// error wrapping ctx.Err() if ctx ended first (the loads still in flight then
// finish on their own, bounded by LoadTimeout and StoreTimeout, and the store
// is closed after them), or the store's Close error. Calls after Close return [ErrClosed]. Close is
// idempotent: every call waits for the same shutdown, within its own ctx,
// and returns its result. Close does not wait for Get, Set and Delete calls
// that are reading or writing the store at that moment.
func (c *Cache[T]) Close(ctx context.Context) error {
	check.Context(ctx, "herd")
	return c.closing.Close(ctx, "herd", func() {
		c.lifeMu.Lock()
		c.closed.Store(true)
		c.lifeMu.Unlock()
		c.refresh.close()
	}, c.shutdown)
}

// shutdown waits for the background work, then closes the store, on a
// context bounded by StoreTimeout rather than by any one Close caller's.
func (c *Cache[T]) shutdown() error {
	c.refresh.wait()
	c.loads.Wait()
	switch s := c.store.(type) {
	case interface{ Close(context.Context) error }:
		ctx, cancel := context.WithTimeout(context.Background(), c.cfg.storeTimeout)
		defer cancel()
		return s.Close(ctx)
	case interface{ Close() error }:
		return s.Close()
	}
	return nil
}
