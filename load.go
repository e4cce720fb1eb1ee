package herd

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/herdcache/herd/flight"
	"github.com/herdcache/herd/store"
)

// loadAndWait loads key through the flight group and waits on ctx. old is the
// expired entry the store still had, if any, for stale-if-error.
func (c *Cache[T]) loadAndWait(ctx context.Context, key string, load Loader[T], old *store.Entry[T]) (Result[T], error) {
	c.count(ctx, &c.stats.misses, EventMiss, key)
	var (
		e       store.Entry[T]
		shared  bool
		started bool
		err     error
	)
	// A background refresh that found the key locked by another process
	// gives up; a caller that joined it starts a foreground load, which
	// waits for that process's value instead. One retry is enough, as a
	// foreground load never gives up that way; the bound is a safeguard.
	for range 3 {
		e, shared, started, err = c.flight.DoWith(ctx, key, load, c.loadFn)
		if !errors.Is(err, errLockedElsewhere) {
			break
		}
	}
	if err != nil {
		return c.loadFailed(ctx, key, old, err)
	}
	if shared && !started {
		c.count(ctx, &c.stats.sharedWaits, EventSharedWait, key)
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
			c.observe(ctx, &c.stats.staleOnError, Event{Kind: EventStaleOnError, Key: key, Err: err})
			return result(old, StatusStaleOnError, now), nil
		}
	}
	return Result[T]{}, fmt.Errorf("herd: load %q: %w", key, err)
}

// loadTask is the flight group's function for a foreground load, made once
// per cache (the loader is its argument) so that a load makes no closure.
func (c *Cache[T]) loadTask(ctx context.Context, key string, load any) (store.Entry[T], error) {
	return c.load(ctx, key, load.(Loader[T]), false)
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
// write and the unlock that follow keep the key's call in flight, so that no
// second load overlaps them, but make no caller wait. With a locker, the
// load runs under the key's lease (see lock.go).
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
	run := &loadRun{Context: ctx}
	pending := &run.pending
	c.writes.begin(key, pending)
	defer c.writes.end(key, pending)

	var base writeBase
	if c.cfg.locker != nil {
		l := c.lockLoad(ctx, callCtx, key, refresh)
		switch l.outcome {
		case skipRefresh:
			return store.Entry[T]{}, errLockedElsewhere
		case holderStored:
			if l.entry.NotFound {
				return l.entry, ErrNotFound
			}
			return l.entry, nil
		case loadLocked:
			// Deferred before the write below, so it runs after it: the
			// lease is kept and held until the value is in the store.
			defer l.release(callCtx)
		case loadUnlocked:
		}
		base = l.base
	}
	if !base.read && c.versioned != nil {
		var (
			e     store.Entry[T]
			found bool
		)
		e, found, base = c.readForLoad(ctx, key)
		// A caller that missed just before another load's write landed,
		// and reached the flight group just after that load ended, finds
		// the value here instead of loading it again. (The read time is
		// the version's, unless the read was a remote call.)
		at := base.at
		if c.local == nil {
			at = time.Now()
		}
		if !refresh && found && !e.Expired(at) {
			if e.NotFound {
				return e, ErrNotFound
			}
			return e, nil
		}
	}

	v, now, err := c.callLoader(run, key, load)
	ttl := &run.ttl

	// The store write gets its own time budget, whatever the loader used,
	// unless the store is in-process: its calls never block, and a timer
	// would cost more than the write.
	wctx := callCtx
	if callCtx.Done() != nil {
		wctx = context.WithoutCancel(callCtx)
	}
	if c.local == nil {
		var cancel context.CancelFunc
		wctx, cancel = context.WithTimeout(wctx, c.cfg.storeTimeout)
		defer cancel()
	}
	switch {
	case err == nil:
		c.backoff.succeeded(key)
		e, keep := c.newEntry(v, now, ttl)
		flight.Publish(callCtx, e)
		if keep {
			c.writeBack(wctx, key, pending, base, &e, now)
		} else {
			c.writeBack(wctx, key, pending, base, nil, now) // no longer cacheable: drop the old entry
		}
		return e, nil
	case errors.Is(err, ErrNotFound):
		c.backoff.succeeded(key) // the source answered
		if c.cfg.negativeTTL > 0 {
			ne := c.negativeEntry(now)
			c.writeBack(wctx, key, pending, base, &ne, now)
		} else {
			c.writeBack(wctx, key, pending, base, nil, now)
		}
		return store.Entry[T]{NotFound: true}, err
	default:
		c.backoff.failed(key, now, &c.cfg)
		return store.Entry[T]{}, err
	}
}

// A loadRun is what one load keeps while it runs, in one allocation: the
// loader's context, which carries the slot of [SetTTL], and the load's
// registration with the write guard.
type loadRun struct {
	context.Context
	ttl     entryTTL
	pending pendingWrite
}

// Value is the context's Value, with SetTTL's slot.
func (r *loadRun) Value(key any) any {
	if _, ok := key.(entryTTLKey); ok {
		return &r.ttl
	}
	return r.Context.Value(key)
}

// callLoader calls load and counts the call, also when the loader panics or
// calls runtime.Goexit: such a load counts as failed and the key backs off.
// The panic itself goes on to the flight group, which hands it to the callers.
// end is when the loader returned.
func (c *Cache[T]) callLoader(ctx context.Context, key string, load Loader[T]) (v T, end time.Time, err error) {
	start := time.Now()
	returned := false
	defer func() {
		end = time.Now()
		took := end.Sub(start)
		if !returned {
			err = errLoaderPanicked
			c.backoff.failed(key, end, &c.cfg)
		}
		c.stats.loads.add()
		c.stats.loadNanos.addN(uint64(took))
		if err != nil && !errors.Is(err, ErrNotFound) {
			c.stats.loadErrors.Add(1)
		}
		c.notify(ctx, Event{Kind: EventLoad, Key: key, Duration: took, Err: err})
	}()
	v, err = load(ctx, key)
	returned = true
	return v, end, err
}
