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
// every caller has left. A loader panic reaches every waiter as a
// [*flight.PanicError]. A store that fails costs a load, not an error.
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
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	"github.com/herdcache/herd/flight"
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
	StoredAt time.Time     // when the value was loaded
	Age      time.Duration // time since StoredAt, for an HTTP Age header
}

// A Cache reads through a store, loading each missing or expired key once
// however many callers ask for it. Build it with [New]; its methods are safe
// for concurrent use.
type Cache[T any] struct {
	store  store.Store[T]
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

	storeErrLog, refreshErrLog rateLog
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
	e, ok, err := c.store.Get(ctx, key)
	if err != nil {
		c.storeError("get", key, err)
		ok = false
	}
	if ok {
		if e.ExpiresAt.IsZero() && e.RefreshAt.IsZero() && !e.NotFound {
			c.count(&c.stats.hits, EventHit, key)
			return result(e, StatusFresh, time.Time{}), nil
		}
		now := time.Now()
		if e.ExpiresAt.IsZero() || now.Before(e.ExpiresAt) {
			switch {
			case e.NotFound:
				c.event(&c.stats.negativeHits, EventNegativeHit, key)
				return Result[T]{}, notFound(key)
			case !e.RefreshAt.IsZero() && !now.Before(e.RefreshAt):
				c.event(&c.stats.staleHits, EventStaleHit, key)
				c.refresh.schedule(ctx, key, load, now)
				return result(e, StatusStale, now), nil
			}
			c.count(&c.stats.hits, EventHit, key)
			return result(e, StatusFresh, now), nil
		}
		// Expired. While the key backs off after a failed load, an entry
		// kept for stale-if-error is served without asking the source again.
		if !e.NotFound && e.Live(now) && c.refresh.backingOff(key, now) {
			c.observe(&c.stats.staleOnError, Event{Kind: EventStaleOnError, Key: key, Err: errBackingOff})
			return result(e, StatusStaleOnError, now), nil
		}
	}
	c.event(&c.stats.misses, EventMiss, key)
	return c.loadAndWait(ctx, key, load, e, ok && !e.NotFound)
}

// errBackingOff is the error of the stale-on-error events of keys that were
// not loaded because they back off after a failure.
var errBackingOff = errors.New("herd: key backing off after a failed load")

func result[T any](e store.Entry[T], s Status, now time.Time) Result[T] {
	r := Result[T]{Value: e.Value, Status: s, StoredAt: e.StoredAt}
	if !now.IsZero() && !e.StoredAt.IsZero() {
		r.Age = max(now.Sub(e.StoredAt), 0)
	}
	return r
}

func notFound(key string) error {
	return fmt.Errorf("herd: %q: %w", key, ErrNotFound)
}

// loadAndWait loads key through the flight group and waits on ctx. old is the
// expired entry the store still had, if any, for stale-if-error.
func (c *Cache[T]) loadAndWait(ctx context.Context, key string, load Loader[T], old store.Entry[T], hasOld bool) (Result[T], error) {
	var leader bool
	e, shared, err := c.flight.DoShared(ctx, key, func(ctx context.Context) (store.Entry[T], error) {
		leader = true
		return c.load(ctx, key, load, false)
	})
	if err != nil {
		if ctxErr := ctx.Err(); ctxErr != nil && errors.Is(err, ctxErr) {
			return Result[T]{}, ctxErr
		}
		var pe *flight.PanicError
		if hasOld && !errors.Is(err, ErrNotFound) && !errors.Is(err, ErrClosed) && !errors.As(err, &pe) {
			if now := time.Now(); old.Live(now) {
				c.observe(&c.stats.staleOnError, Event{Kind: EventStaleOnError, Key: key, Err: err})
				return result(old, StatusStaleOnError, now), nil
			}
		}
		if errors.Is(err, ErrNotFound) {
			return Result[T]{}, notFound(key)
		}
		if errors.Is(err, ErrClosed) {
			return Result[T]{}, ErrClosed
		}
		return Result[T]{}, fmt.Errorf("herd: load %q: %w", key, err)
	}
	// leader was written by the load's goroutine before the result was
	// published, so it is safe to read once DoShared returned the result.
	if shared && !leader {
		c.event(&c.stats.sharedWaits, EventSharedWait, key)
	}
	return result(e, StatusLoaded, time.Now()), nil
}

// errLockedElsewhere ends a background refresh whose key another process is
// refreshing.
var errLockedElsewhere = errors.New("herd: key locked by another process")

// load runs the loader for key and stores its answer; it runs once per key at
// a time, on the flight group's goroutine. A refresh gives up when another
// process holds the key's lock; a foreground load waits for that process's
// value instead.
func (c *Cache[T]) load(ctx context.Context, key string, load Loader[T], refresh bool) (store.Entry[T], error) {
	c.lifeMu.RLock()
	if c.closed.Load() {
		c.lifeMu.RUnlock()
		return store.Entry[T]{}, ErrClosed
	}
	c.loads.Add(1)
	c.lifeMu.RUnlock()
	defer c.loads.Done()

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
			defer func() {
				if err := lock.Unlock(context.WithoutCancel(ctx)); err != nil && !errors.Is(err, store.ErrNotHeld) {
					c.storeError("unlock", key, err)
				}
			}()
		case loadUnlocked:
		}
	}

	var ttl entryTTL
	start := time.Now()
	v, err := load(context.WithValue(ctx, entryTTLKey{}, &ttl), key)
	took := time.Since(start)
	c.stats.loads.Add(1)
	c.stats.loadNanos.Add(uint64(took))
	if err != nil && !errors.Is(err, ErrNotFound) {
		c.stats.loadErrors.Add(1)
	}
	if o := c.cfg.observer; o != nil {
		o.Observe(Event{Kind: EventLoad, Key: key, Duration: took, Err: err})
	}

	now := time.Now()
	switch {
	case err == nil:
		c.refresh.succeeded(key)
		e, keep := c.newEntry(v, now, &ttl)
		if keep {
			c.write(ctx, key, pending, e)
		}
		return e, nil
	case errors.Is(err, ErrNotFound):
		c.refresh.succeeded(key) // the source answered
		if c.cfg.negativeTTL > 0 {
			c.write(ctx, key, pending, c.negativeEntry(now))
		} else {
			c.writes.commit(key, pending, func() {
				if err := c.store.Delete(ctx, key); err != nil {
					c.storeError("delete", key, err)
				}
			})
		}
		return store.Entry[T]{NotFound: true}, err
	default:
		c.refresh.failed(key, now)
		return store.Entry[T]{}, err
	}
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
		e.RefreshAt = now.Add(time.Duration(float64(c.cfg.refreshAfter) * scale))
	}
	if c.cfg.ttl > 0 {
		e.ExpiresAt = now.Add(time.Duration(float64(c.cfg.ttl) * scale))
		e.KeepUntil = e.ExpiresAt.Add(c.cfg.staleIfError)
	}
	return e, true
}

func (c *Cache[T]) negativeEntry(now time.Time) store.Entry[T] {
	d := c.cfg.negativeTTL
	if c.cfg.jitter > 0 {
		d = time.Duration(float64(d) * (1 - rand.Float64()*c.cfg.jitter))
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

// Set stores v under key as if it had just been loaded. It wins over a load
// or refresh of key in flight: that load's result is not stored.
func (c *Cache[T]) Set(ctx context.Context, key string, v T) error {
	if c.closed.Load() {
		return ErrClosed
	}
	e, _ := c.newEntry(v, time.Now(), nil)
	c.refresh.succeeded(key)
	var err error
	c.writes.supersede(key, func() { err = c.store.Set(ctx, key, e) })
	if err != nil {
		c.storeError("set", key, err)
		return fmt.Errorf("herd: set %q: %w", key, err)
	}
	return nil
}

// Delete removes key from the cache. It wins over a load or refresh of key in
// flight: that load's result is not stored.
func (c *Cache[T]) Delete(ctx context.Context, key string) error {
	if c.closed.Load() {
		return ErrClosed
	}
	var err error
	c.writes.supersede(key, func() { err = c.store.Delete(ctx, key) })
	if err != nil {
		c.storeError("delete", key, err)
		return fmt.Errorf("herd: delete %q: %w", key, err)
	}
	return nil
}

// Stats returns the cache's counters.
func (c *Cache[T]) Stats() Stats { return c.stats.snapshot() }

// Close stops the background refreshes: queued ones are dropped, running
// ones and foreground loads in flight are waited for until ctx ends. Then it
// closes the store if the store has a Close(context.Context) error or
// Close() error method. Close returns ctx.Err() if ctx ended first, or the
// store's Close error. Calls after Close return [ErrClosed]; a second Close
// returns nil.
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
	c.storeErrLog.log(c.cfg.logger, slog.LevelWarn, "herd: store failed; loading from the source instead",
		slog.String("op", op), slog.String("key", key), slog.Any("error", err))
}
