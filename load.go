package herd

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/herdcache/herd/flight"
	"github.com/herdcache/herd/store"
)

// loadAndWait loads key through the call group and waits on ctx. old is the
// expired entry the store still had, if any, for stale-if-error.
func (c *Cache[T]) loadAndWait(ctx context.Context, key string, load Loader[T], old *store.Entry[T]) (Result[T], error) {
	c.record(ctx, &c.stats.misses, Event{Kind: EventMiss, Key: key})
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
		c.record(ctx, &c.stats.sharedWaits, Event{Kind: EventSharedWait, Key: key})
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
	if old == nil && c.fallback != nil {
		// A near tier's copy past its time, kept for this: the store could
		// not be read, or had nothing, and the source failed too.
		if fb, ok := c.fallback(key); ok {
			old = &fb
		}
	}
	if old != nil && !old.NotFound && !errors.As(err, &pe) && !errors.Is(err, flight.ErrGoexit) {
		if now := time.Now(); old.Live(now) {
			c.record(ctx, &c.stats.staleOnError, Event{Kind: EventStaleOnError, Key: key, Err: err})
			return result(old, StatusStaleOnError, now), nil
		}
	}
	return Result[T]{}, fmt.Errorf("herd: load %q: %w", key, err)
}

// loadTask is the call group's function for a foreground load, made once
// per cache (the loader is its argument) so that a load makes no closure.
func (c *Cache[T]) loadTask(ctx context.Context, key string, load any) (store.Entry[T], error) {
	return c.loadKey(ctx, key, load.(Loader[T]), false)
}

// errLockedElsewhere ends a background refresh whose key another process is
// refreshing.
var errLockedElsewhere = errors.New("herd: key locked by another process")

// errLoaderPanicked is the error of the load event of a loader that panicked
// or called runtime.Goexit; its callers get the flight package's error.
var errLoaderPanicked = errors.New("herd: loader panicked or called runtime.Goexit")

// startLoad registers a load that Close waits for, and reports false after
// Close, when no load may start.
func (c *Cache[T]) startLoad() bool {
	c.lifeMu.RLock()
	defer c.lifeMu.RUnlock()
	if c.closed.Load() {
		return false
	}
	c.loads.Add(1)
	return true
}

// loadKey runs the load of one key through the pipeline (pipeline.go) on
// the call of the key in the cache's call group, whose context callCtx is:
// once per key at a time. The result is published to the callers as soon
// as the loader returns it; the store write and the unlock that follow keep
// the key's call in flight, so that no second load overlaps them, but make
// no caller wait.
func (c *Cache[T]) loadKey(callCtx context.Context, key string, load Loader[T], refresh bool) (store.Entry[T], error) {
	if !c.startLoad() {
		return store.Entry[T]{}, ErrClosed
	}
	defer c.loads.Done()
	r := loadRun[T]{callCtx: callCtx, ctx: callCtx, one: load}
	if c.cfg.loadTimeout > 0 {
		var cancel context.CancelFunc
		r.ctx, cancel = context.WithTimeout(callCtx, c.cfg.loadTimeout)
		defer cancel()
	}
	j := &job[T]{Context: r.ctx, key: key, refresh: refresh}
	j.alone[0] = j
	c.run(&r, j.alone[:])
	// The outcome is published: the call group gives that to the callers.
	return store.Entry[T]{}, j.err
}
