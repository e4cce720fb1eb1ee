// Package herd puts a cache in front of a slow source of truth so that a
// service under load never stampedes it.
//
//	users := herd.New(memory.New[User](memory.MaxEntries(100_000)),
//		herd.TTL(10*time.Minute), herd.RefreshAfter(time.Minute), herd.StaleIfError(time.Hour))
//	defer users.Close(ctx)
//	u, err := users.Get(ctx, "user:42", loadUser)
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
// no caller wait, and no second load of the key starts before it lands. A
// loader panic reaches every waiter as a [*flight.PanicError], a
// runtime.Goexit as [flight.ErrGoexit]; neither is hidden behind a stale
// value. A store that fails costs a load, not an error.
//
// A loader must not call Get for its own key or Close the cache: it would
// wait for itself until its context ends.
//
// Within a loader, [SetTTL] gives the entry being loaded its own lifetime, for
// example from an HTTP Cache-Control header. [Cache.Fetch] tells a caller
// whether its value was fresh, stale or just loaded, and how old it is.
package herd

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	"github.com/herdcache/herd/flight"
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
	store  store.Store[T]
	shared store.SharedGetter[T] // store, when it can lend its entries
	cfg    config
	flight flight.Group[string, store.Entry[T]]
	writes writeGuard
	stats  counters

	// lifeMu orders the start of a load against Close: a load registers in
	// loads under the read lock, and Close sets closed under the write lock
	// before it waits for loads.
	lifeMu sync.RWMutex
	closed atomic.Bool
	loads  sync.WaitGroup

	refresh refresher[T]

	storeErrLog, refreshErrLog ratelog.Limiter
}

// New returns a cache over s. It panics if an option is invalid, with a
// message that names it. Call [Cache.Close] when done with the cache: it
// waits for background work and closes s.
func New[T any](s store.Store[T], opts ...Option) *Cache[T] {
	cfg := defaultConfig()
	for _, o := range opts {
		o(&cfg)
	}
	cfg.validate()
	c := &Cache[T]{store: s, cfg: cfg}
	c.shared, _ = s.(store.SharedGetter[T])
	c.refresh.init(c)
	return c
}

// Get returns the value of key, loading it with load when the cache has no
// usable entry (see the package documentation for each case). Errors:
// ctx.Err() when ctx ends first; an error wrapping [ErrNotFound] when the
// source says key does not exist; [ErrClosed] after Close; otherwise the
// loader's error, wrapped with the key.
func (c *Cache[T]) Get(ctx context.Context, key string, load Loader[T]) (T, error) {
	r, err := c.Fetch(ctx, key, load)
	return r.Value, err
}

// Fetch is [Cache.Get] that also says whether the value was fresh, stale or
// just loaded, and its age.
func (c *Cache[T]) Fetch(ctx context.Context, key string, load Loader[T]) (Result[T], error) {
	if c.closed.Load() {
		return Result[T]{}, ErrClosed
	}
	if c.shared != nil {
		e, now, ok, err := c.shared.GetShared(ctx, key)
		if err != nil {
			c.storeError("get", key, err)
			ok = false
		}
		if !ok {
			return c.loadAndWait(ctx, key, load, nil)
		}
		if r, err, done := c.judge(ctx, key, load, e, now); done {
			return r, err
		}
		return c.loadAndWait(ctx, key, load, e)
	}
	e, ok, err := c.store.Get(ctx, key)
	if err != nil {
		c.storeError("get", key, err)
		ok = false
	}
	if !ok {
		return c.loadAndWait(ctx, key, load, nil)
	}
	if r, err, done := c.judge(ctx, key, load, &e, time.Time{}); done {
		return r, err
	}
	return c.loadAndWait(ctx, key, load, &e)
}

// judge answers a read from the entry the store had, if it can: done is
// false when the caller must wait for a load instead. now is the store's
// clock reading, or zero.
func (c *Cache[T]) judge(ctx context.Context, key string, load Loader[T], e *store.Entry[T], now time.Time) (r Result[T], err error, done bool) {
	if now.IsZero() {
		now = time.Now()
	}
	if e.ExpiresAt.IsZero() && e.RefreshAt.IsZero() && !e.NotFound {
		c.count(&c.stats.hits, EventHit, key)
		return result(e, StatusFresh, now), nil, true
	}
	if e.ExpiresAt.IsZero() || now.Before(e.ExpiresAt) {
		switch {
		case e.NotFound:
			c.event(&c.stats.negativeHits, EventNegativeHit, key)
			return Result[T]{}, notFound(key), true
		case !e.RefreshAt.IsZero() && !now.Before(e.RefreshAt):
			c.event(&c.stats.staleHits, EventStaleHit, key)
			c.refresh.schedule(ctx, key, load, now)
			return result(e, StatusStale, now), nil, true
		}
		c.count(&c.stats.hits, EventHit, key)
		return result(e, StatusFresh, now), nil, true
	}
	// Expired. While the key backs off after a failed load, an entry kept
	// for stale-if-error is served without asking the source again.
	if !e.NotFound && e.Live(now) && c.refresh.backingOff(key, now) {
		c.observe(&c.stats.staleOnError, Event{Kind: EventStaleOnError, Key: key, Err: errBackingOff})
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

// loadAndWait loads key through the flight group and waits on ctx. old is the
// expired entry the store still had, if any, for stale-if-error.
func (c *Cache[T]) loadAndWait(ctx context.Context, key string, load Loader[T], old *store.Entry[T]) (Result[T], error) {
	c.event(&c.stats.misses, EventMiss, key)
	var (
		leader bool
		e      store.Entry[T]
		shared bool
		err    error
	)
	// A background refresh that found the key locked by another process
	// gives up; a caller that joined it starts a foreground load, which
	// waits for that process's value instead. One retry is enough, as a
	// foreground load never gives up that way; the bound is a safeguard.
	for range 3 {
		e, shared, err = c.flight.DoShared(ctx, key, func(ctx context.Context) (store.Entry[T], error) {
			leader = true
			return c.load(ctx, key, load, false)
		})
		if !errors.Is(err, errLockedElsewhere) {
			break
		}
	}
	if err != nil {
		return c.loadFailed(ctx, key, old, err)
	}
	// leader was written by the load's goroutine before the result was
	// published, so it is safe to read once DoShared returned the result.
	if shared && !leader {
		c.event(&c.stats.sharedWaits, EventSharedWait, key)
	}
	return result(&e, StatusLoaded, e.StoredAt), nil
}

// loadFailed turns the error of a load that a caller waited for into what
// the caller gets: its own context's error, the old value if stale-if-error
// covers it, or the error wrapped with the key.
func (c *Cache[T]) loadFailed(ctx context.Context, key string, old *store.Entry[T], err error) (Result[T], error) {
	if ctxErr := ctx.Err(); ctxErr != nil && errors.Is(err, ctxErr) {
		return Result[T]{}, ctxErr
	}
	switch {
	case errors.Is(err, ErrClosed):
		return Result[T]{}, ErrClosed
	case errors.Is(err, ErrNotFound):
		return Result[T]{}, fmt.Errorf("herd: %q: %w", key, err)
	}
	// A loader that panicked or called runtime.Goexit has a bug: its error
	// reaches the caller rather than hide behind a stale value.
	var pe *flight.PanicError
	if old != nil && !old.NotFound && !errors.As(err, &pe) && !errors.Is(err, flight.ErrGoexit) {
		if now := time.Now(); old.Live(now) {
			c.observe(&c.stats.staleOnError, Event{Kind: EventStaleOnError, Key: key, Err: err})
			return result(old, StatusStaleOnError, now), nil
		}
	}
	return Result[T]{}, fmt.Errorf("herd: load %q: %w", key, err)
}

// errLockedElsewhere ends a background refresh whose key another process is
// refreshing.
var errLockedElsewhere = errors.New("herd: key locked by another process")

// errLoaderPanicked is the error of the load event of a loader that panicked
// or called runtime.Goexit; its callers get the flight package's error.
var errLoaderPanicked = errors.New("herd: loader panicked or called runtime.Goexit")

// load runs the loader for key and stores its answer; it runs once per key at
// a time, on the flight group's goroutine, whose context callCtx is. A value
// is published to the callers as soon as the loader returns it; the store
// write that follows keeps the key's call in flight, so that no second load
// overlaps it, but makes no caller wait. A refresh gives up when another
// process holds the key's lock; a foreground load waits for that process's
// value instead.
func (c *Cache[T]) load(callCtx context.Context, key string, load Loader[T], refresh bool) (store.Entry[T], error) {
	c.lifeMu.RLock()
	if c.closed.Load() {
		c.lifeMu.RUnlock()
		return store.Entry[T]{}, ErrClosed
	}
	c.loads.Add(1)
	c.lifeMu.RUnlock()
	defer c.loads.Done()

	ctx := callCtx
	if c.cfg.loadTimeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, c.cfg.loadTimeout)
		defer cancel()
	}
	pending := c.writes.begin(key)
	defer c.writes.end(key, pending)

	if c.cfg.locker != nil {
		lock, e, outcome := c.lockOrWait(ctx, key, refresh)
		switch outcome {
		case skipRefresh:
			return store.Entry[T]{}, errLockedElsewhere
		case holderStored:
			if e.NotFound {
				return e, ErrNotFound
			}
			return e, nil
		case loadLocked:
			// Deferred before the write below, so it runs after it: the
			// lock is held until the value is in the store.
			defer func() {
				if err := lock.Unlock(context.WithoutCancel(ctx)); err != nil && !errors.Is(err, store.ErrNotHeld) {
					c.storeError("unlock", key, err)
				}
			}()
		case loadUnlocked:
		}
	}

	var ttl entryTTL
	v, err := c.callLoader(context.WithValue(ctx, entryTTLKey{}, &ttl), key, load)

	// The store write gets its own time budget, whatever the loader used.
	wctx, cancel := context.WithTimeout(context.WithoutCancel(callCtx), c.cfg.storeTimeout)
	defer cancel()
	now := time.Now()
	switch {
	case err == nil:
		c.refresh.succeeded(key)
		e, keep := c.newEntry(v, now, &ttl)
		flight.Publish(callCtx, e)
		if keep {
			c.write(wctx, key, pending, e)
		} else {
			c.remove(wctx, key, pending) // no longer cacheable: drop the old entry
		}
		return e, nil
	case errors.Is(err, ErrNotFound):
		c.refresh.succeeded(key) // the source answered
		if c.cfg.negativeTTL > 0 {
			c.write(wctx, key, pending, c.negativeEntry(now))
		} else {
			c.remove(wctx, key, pending)
		}
		return store.Entry[T]{NotFound: true}, err
	default:
		c.refresh.failed(key, now)
		return store.Entry[T]{}, err
	}
}

// callLoader calls load and counts the call, also when the loader panics or
// calls runtime.Goexit: such a load counts as failed and the key backs off.
// The panic itself goes on to the flight group, which hands it to the callers.
func (c *Cache[T]) callLoader(ctx context.Context, key string, load Loader[T]) (v T, err error) {
	start := time.Now()
	returned := false
	defer func() {
		took := time.Since(start)
		if !returned {
			err = errLoaderPanicked
			c.refresh.failed(key, time.Now())
		}
		c.stats.loads.Add(1)
		c.stats.loadNanos.Add(uint64(took))
		if err != nil && !errors.Is(err, ErrNotFound) {
			c.stats.loadErrors.Add(1)
		}
		if o := c.cfg.observer; o != nil {
			o.Observe(Event{Kind: EventLoad, Key: key, Duration: took, Err: err})
		}
	}()
	v, err = load(ctx, key)
	returned = true
	return v, err
}

// What a load does about another process that may be loading the same key.
type lockOutcome uint8

const (
	loadUnlocked lockOutcome = iota // the locker failed or the holder never stored a value: load anyway
	loadLocked                      // this process holds the lock: load, then unlock
	skipRefresh                     // a refresh found the key locked: another process refreshes it
	holderStored                    // the holder stored an entry while this process waited: use it
)

// lockOrWait takes the key's lock from the configured Locker, or, when
// another process holds it, waits for that process's entry (a foreground
// load) or gives up (a refresh).
func (c *Cache[T]) lockOrWait(ctx context.Context, key string, refresh bool) (store.Lock, store.Entry[T], lockOutcome) {
	var e store.Entry[T]
	l, err := c.cfg.locker.TryLock(ctx, key, c.cfg.lockTTL)
	switch {
	case err == nil && !refresh:
		// The previous holder may have stored the value after this
		// process missed it and before it released the lock: read again.
		if e, ok, gerr := c.store.Get(ctx, key); gerr == nil && ok && (e.ExpiresAt.IsZero() || time.Now().Before(e.ExpiresAt)) {
			if uerr := l.Unlock(context.WithoutCancel(ctx)); uerr != nil && !errors.Is(uerr, store.ErrNotHeld) {
				c.storeError("unlock", key, uerr)
			}
			return nil, e, holderStored
		}
		return l, e, loadLocked
	case err == nil:
		return l, e, loadLocked
	case !errors.Is(err, store.ErrLocked):
		c.storeError("lock", key, err)
		return nil, e, loadUnlocked
	case refresh:
		return nil, e, skipRefresh
	}
	c.event(&c.stats.lockWaits, EventLockWait, key)
	if e, ok := c.waitForHolder(ctx, key); ok {
		return nil, e, holderStored
	}
	return nil, e, loadUnlocked
}

// Polling of the store while another process holds a key's lock.
const (
	holderPollFirst = 5 * time.Millisecond
	holderPollMax   = 100 * time.Millisecond
)

// waitForHolder polls the store until an unexpired entry for key appears,
// for at most the lock TTL.
func (c *Cache[T]) waitForHolder(ctx context.Context, key string) (store.Entry[T], bool) {
	deadline := time.NewTimer(c.cfg.lockTTL)
	defer deadline.Stop()
	wait := holderPollFirst
	for {
		poll := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			poll.Stop()
			return store.Entry[T]{}, false
		case <-deadline.C:
			poll.Stop()
			return store.Entry[T]{}, false
		case <-poll.C:
		}
		e, ok, err := c.store.Get(ctx, key)
		if err != nil {
			c.storeError("get", key, err)
		}
		if ok && (e.ExpiresAt.IsZero() || time.Now().Before(e.ExpiresAt)) {
			return e, true
		}
		wait = min(2*wait, holderPollMax)
	}
}

// entryTTL is where SetTTL puts a loader's choice of lifetime.
type entryTTL struct {
	set bool
	ttl time.Duration
}

type entryTTLKey struct{}

// SetTTL sets the TTL of the entry being loaded instead of the cache's [TTL],
// for example from an HTTP Cache-Control max-age. A loader calls it on the
// context it was given. The entry is refreshed in the background after
// [RefreshAfter] if that is shorter than ttl, and kept [StaleIfError] past
// ttl. A ttl of zero or less means: return the value but do not cache it.
// SetTTL reports whether ctx was a loader's context; elsewhere it does nothing.
func SetTTL(ctx context.Context, ttl time.Duration) bool {
	t, ok := ctx.Value(entryTTLKey{}).(*entryTTL)
	if ok {
		t.set, t.ttl = true, ttl
	}
	return ok
}

// newEntry builds the entry for a value loaded at now; keep is false when
// the loader asked for it not to be cached.
func (c *Cache[T]) newEntry(v T, now time.Time, t *entryTTL) (e store.Entry[T], keep bool) {
	e = store.Entry[T]{Value: v, StoredAt: now}
	if t != nil && t.set {
		if t.ttl <= 0 {
			return e, false
		}
		e.ExpiresAt = now.Add(t.ttl)
		if c.cfg.refreshAfter > 0 && c.cfg.refreshAfter < t.ttl {
			e.RefreshAt = now.Add(c.cfg.refreshAfter)
		}
		e.KeepUntil = e.ExpiresAt.Add(c.cfg.staleIfError)
		return e, true
	}
	// One random factor for both times keeps RefreshAt before ExpiresAt.
	scale := 1.0
	if c.cfg.jitter > 0 {
		scale -= rand.Float64() * c.cfg.jitter
	}
	if c.cfg.refreshAfter > 0 {
		e.RefreshAt = now.Add(scaled(c.cfg.refreshAfter, scale))
	}
	if c.cfg.ttl > 0 {
		e.ExpiresAt = now.Add(scaled(c.cfg.ttl, scale))
		e.KeepUntil = e.ExpiresAt.Add(c.cfg.staleIfError)
	}
	return e, true
}

// scaled returns d*scale for a scale in (0, 1], exactly d for 1; the float
// conversion of a duration near math.MaxInt64 would otherwise overflow.
func scaled(d time.Duration, scale float64) time.Duration {
	if scale >= 1 {
		return d
	}
	f := float64(d) * scale
	if f >= math.MaxInt64 {
		return math.MaxInt64
	}
	return time.Duration(f)
}

func (c *Cache[T]) negativeEntry(now time.Time) store.Entry[T] {
	d := c.cfg.negativeTTL
	if c.cfg.jitter > 0 {
		d = scaled(d, 1-rand.Float64()*c.cfg.jitter)
	}
	exp := now.Add(d)
	return store.Entry[T]{NotFound: true, StoredAt: now, ExpiresAt: exp, KeepUntil: exp}
}

// write stores the entry a load produced, unless a Set or Delete of the key
// landed while the load ran.
func (c *Cache[T]) write(ctx context.Context, key string, pending *pendingWrite, e store.Entry[T]) {
	c.writes.commit(key, pending, func() {
		if err := c.store.Set(ctx, key, e); err != nil {
			c.storeError("set", key, err)
		}
	})
}

// remove deletes the entry of key after a load found it gone or uncacheable,
// unless a Set or Delete of the key landed while the load ran.
func (c *Cache[T]) remove(ctx context.Context, key string, pending *pendingWrite) {
	c.writes.commit(key, pending, func() {
		if err := c.store.Delete(ctx, key); err != nil {
			c.storeError("delete", key, err)
		}
	})
}

// Set stores v under key as if it had just been loaded. It wins over a load
// or refresh of key in flight: that load's result is not stored. If that load
// is storing its result at this moment, Set waits for it, within ctx.
func (c *Cache[T]) Set(ctx context.Context, key string, v T) error {
	if c.closed.Load() {
		return ErrClosed
	}
	e, _ := c.newEntry(v, time.Now(), nil)
	c.refresh.succeeded(key)
	err := c.writes.supersede(ctx, key, func() error { return c.store.Set(ctx, key, e) })
	if err != nil {
		c.storeError("set", key, err)
		return fmt.Errorf("herd: set %q: %w", key, err)
	}
	return nil
}

// Delete removes key from the cache. It wins over a load or refresh of key in
// flight: that load's result is not stored, and a Get that starts after
// Delete returns does not share it but loads again.
func (c *Cache[T]) Delete(ctx context.Context, key string) error {
	if c.closed.Load() {
		return ErrClosed
	}
	err := c.writes.supersede(ctx, key, func() error { return c.store.Delete(ctx, key) })
	// A load in flight read the source before this Delete: callers from now
	// on must not join it.
	c.flight.Forget(key)
	if err != nil {
		c.storeError("delete", key, err)
		return fmt.Errorf("herd: delete %q: %w", key, err)
	}
	return nil
}

// Stats returns the cache's counters.
func (c *Cache[T]) Stats() Stats { return c.stats.snapshot() }

// Close stops the background refreshes: queued ones are dropped, running
// ones and foreground loads in flight (with their store writes) are waited
// for until ctx ends. Then it closes the store if the store has a
// Close(context.Context) error or Close() error method. Close returns an
// error wrapping ctx.Err() if ctx ended first (the loads still in flight then
// finish on their own, bounded by LoadTimeout and StoreTimeout), or the
// store's Close error. Calls after Close return [ErrClosed]; a second Close
// returns nil. Close does not wait for Get, Set and Delete calls that are
// reading or writing the store at that moment.
func (c *Cache[T]) Close(ctx context.Context) error {
	c.lifeMu.Lock()
	already := c.closed.Swap(true)
	c.lifeMu.Unlock()
	if already {
		return nil
	}
	c.refresh.close()
	done := make(chan struct{})
	go func() {
		c.refresh.wait()
		c.loads.Wait()
		close(done)
	}()
	var err error
	select {
	case <-done:
	case <-ctx.Done():
		err = fmt.Errorf("herd: close: %w", ctx.Err())
	}
	switch s := c.store.(type) {
	case interface{ Close(context.Context) error }:
		err = errors.Join(err, s.Close(ctx))
	case interface{ Close() error }:
		err = errors.Join(err, s.Close())
	}
	return err
}

// count adds a hit to a striped counter and tells the observer.
func (c *Cache[T]) count(n *stripedCounter, kind EventKind, key string) {
	n.add()
	if o := c.cfg.observer; o != nil {
		o.Observe(Event{Kind: kind, Key: key})
	}
}

func (c *Cache[T]) event(n *atomic.Uint64, kind EventKind, key string) {
	c.observe(n, Event{Kind: kind, Key: key})
}

func (c *Cache[T]) observe(n *atomic.Uint64, e Event) {
	n.Add(1)
	if o := c.cfg.observer; o != nil {
		o.Observe(e)
	}
}

func (c *Cache[T]) storeError(op, key string, err error) {
	c.observe(&c.stats.storeErrors, Event{Kind: EventStoreError, Key: key, Err: err})
	c.storeErrLog.Log(context.Background(), c.cfg.logger, slog.LevelWarn, "herd: store failed; loading from the source instead",
		slog.String("op", op), slog.String("key", key), slog.Any("error", err))
}
