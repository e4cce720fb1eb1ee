// Package reqcache provides a cache that lives for one request and travels in
// its [context.Context], so that the deep code paths of a request that load
// the same object load it once.
//
// [With] attaches a cache to a context ([Middleware] does it for every HTTP
// request); [Get] reads through it. The contract:
//
//   - Entries are keyed by a group (a namespace such as "user") and a key;
//     groups never see each other's entries.
//   - [Get] calls its function once per group and key for the life of the
//     cache. Concurrent Gets of one key share one call: the first caller
//     runs it itself (on its goroutine, with its context), and the others wait
//     for it, each on its own context (returning ctx.Err() when it ends). Errors are not cached: the
//     callers sharing the failed call get its error and the next Get calls
//     again. A caller that shared a call that failed because the loading
//     caller's context ended, while its own context lives, calls again itself.
//   - A value of another type under the same group and key (Get[User] after
//     Get[string]) is a miss: the function is called and its value replaces
//     the other. It never panics.
//   - A context without a cache, or from [Without], caches nothing: Get just
//     calls the function, [Set] and [Delete] do nothing.
//   - Every caller of a key gets the same value: treat cached values as
//     read-only, or cache copies.
//   - Two guards bound a cache that lives too long or grows too large, by
//     mistake (a context kept by a goroutine that outlives its request) or by
//     design (a request that touches thousands of rows): past its lifetime
//     ([Lifetime], 5 minutes by default) the cache drops its entries and
//     stops serving and storing; past its entry bound ([MaxEntries], 10,000
//     by default) it stores nothing new. In both cases Get keeps working by
//     calling the function, and the cache logs it once, not on every access.
//
// A panic in a function passed to Get propagates to the caller that ran it,
// as it would without a cache; the callers sharing the call get a
// [*flight.PanicError] (or [flight.ErrGoexit] after a [runtime.Goexit])
// and nothing is cached.
//
// The cache is safe for concurrent use by the goroutines of a request. It
// starts no goroutine and holds no lock while a function runs.
package reqcache

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"runtime/debug"
	"sync"
	"time"

	"github.com/herdcache/herd/flight"
)

// DefaultLifetime is the lifetime of a cache attached without [Lifetime].
const DefaultLifetime = 5 * time.Minute

// DefaultMaxEntries is the entry bound of a cache attached without
// [MaxEntries].
const DefaultMaxEntries = 10_000

// An Option configures the cache that [With] or [NewMiddleware] attaches.
type Option func(*options)

type options struct {
	lifetime   time.Duration
	maxEntries int
	logger     *slog.Logger
}

// Lifetime sets how long after [With] attached it the cache serves and
// stores entries. Past it the cache drops its entries, Get calls its function
// every time, and the cache logs a warning once. A request cache that lives
// that long was almost always kept by mistake by work that outlives its
// request and should have used [Without]. Zero or negative disables the
// guard. Default: [DefaultLifetime], 5 minutes.
func Lifetime(d time.Duration) Option {
	return func(o *options) { o.lifetime = d }
}

// MaxEntries bounds the number of entries, loads in flight included, that
// the cache holds. Once it is reached, a Get of a new key calls its function
// without caching or sharing the result, a [Set] of a new key is dropped,
// and the cache logs a warning once; keys already cached are still served and
// may still be replaced. Zero or negative disables the bound. Default:
// [DefaultMaxEntries], 10,000.
func MaxEntries(n int) Option {
	return func(o *options) { o.maxEntries = n }
}

// WithLogger sets the logger of the cache's two warnings (lifetime passed,
// entry bound reached). Default: [slog.Default]. A nil logger keeps the
// default.
func WithLogger(l *slog.Logger) Option {
	return func(o *options) {
		if l != nil {
			o.logger = l
		}
	}
}

// ctxKey is the context key of the cache. A context from Without maps it to a
// nil *cache, which hides the parent's cache.
type ctxKey struct{}

type entryKey struct {
	group, key string
}

// entry is one value, or one call in flight. val and err are written before
// done is closed and read only after.
type entry struct {
	done chan struct{}
	val  any
	err  error
}

// closedDone is the done channel of entries stored by Set.
var closedDone = func() chan struct{} {
	c := make(chan struct{})
	close(c)
	return c
}()

type cache struct {
	opts    options
	created time.Time

	mu      sync.Mutex
	entries map[entryKey]*entry
	expired bool // past the lifetime: entries dropped, nothing served or stored
	full    bool // the entry bound was reached once (and logged)
}

// With returns a context that carries a new request cache configured by
// opts, or ctx itself if it already carries one (nested calls share the
// outer cache, and opts are ignored). On a context from [Without], With
// attaches a new cache, separate from the one Without hid.
func With(ctx context.Context, opts ...Option) context.Context {
	if from(ctx) != nil {
		return ctx
	}
	o := options{lifetime: DefaultLifetime, maxEntries: DefaultMaxEntries, logger: slog.Default()}
	for _, opt := range opts {
		opt(&o)
	}
	return context.WithValue(ctx, ctxKey{}, &cache{opts: o, created: time.Now()})
}

// Without returns a context on which nothing is read from or stored in a
// request cache, for work that outlives the request (a goroutine that goes
// on after the response). The parent context's cache is untouched and keeps
// serving the request. Without keeps ctx's cancellation and values; combine
// it with [context.WithoutCancel] to outlive the request's cancellation too.
func Without(ctx context.Context) context.Context {
	if from(ctx) == nil {
		return ctx
	}
	return context.WithValue(ctx, ctxKey{}, (*cache)(nil))
}

func from(ctx context.Context) *cache {
	c, _ := ctx.Value(ctxKey{}).(*cache)
	return c
}

// Get returns the value cached in ctx's request cache under group and key,
// or calls fn(ctx) and caches its value. Concurrent Gets of the same group
// and key share one call of fn; see the package documentation for the whole
// contract.
//
// Get returns fn's error as fn returned it, to the caller that ran it and to
// every caller that shared the call, and caches nothing. A caller whose ctx
// ends while it waits for another caller's call returns ctx.Err(). A caller
// that shares a call that panicked gets an error wrapping a
// [*flight.PanicError] or [flight.ErrGoexit].
//
// fn must not Get the same group and key on the context it was given: it
// would wait for itself until that context ends.
func Get[T any](ctx context.Context, group, key string, fn func(context.Context) (T, error)) (T, error) {
	c := from(ctx)
	if c == nil {
		return fn(ctx)
	}
	k := entryKey{group, key}
	for {
		c.mu.Lock()
		live, logExpired := c.liveLocked()
		if !live {
			c.mu.Unlock()
			if logExpired {
				c.logExpired(ctx)
			}
			return fn(ctx)
		}
		e, ok := c.entries[k]
		if ok {
			select {
			case <-e.done:
				// Entries that failed leave the map before done is closed, so
				// e holds a value; of another type it is a miss, replaced below.
				if v, ok := e.val.(T); ok {
					c.mu.Unlock()
					return v, nil
				}
			default:
				c.mu.Unlock()
				v, err, again := wait[T](ctx, group, key, e)
				if again {
					continue
				}
				return v, err
			}
		}
		e = &entry{done: make(chan struct{})}
		stored, logFull := c.putLocked(k, e)
		c.mu.Unlock()
		if logFull {
			c.logFull(ctx)
		}
		if !stored {
			return fn(ctx)
		}
		return load(ctx, c, k, e, fn)
	}
}

// wait waits for the call of e on the caller's own context. again reports
// that the caller should look the key up again: the value is of another type,
// or the call failed on its caller's context while this caller's lives.
func wait[T any](ctx context.Context, group, key string, e *entry) (v T, err error, again bool) {
	select {
	case <-e.done:
	case <-ctx.Done():
		// The result may have arrived at the same moment; prefer it.
		select {
		case <-e.done:
		default:
			return v, ctx.Err(), false
		}
	}
	if e.err != nil {
		if isContextErr(e.err) && ctx.Err() == nil {
			return v, nil, true
		}
		if pe := (*flight.PanicError)(nil); errors.As(e.err, &pe) || errors.Is(e.err, flight.ErrGoexit) {
			return v, fmt.Errorf("reqcache: shared load of %s/%s: %w", group, key, e.err), false
		}
		return v, e.err, false
	}
	v, ok := e.val.(T)
	return v, nil, !ok
}

func isContextErr(err error) bool {
	return errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded)
}

// load calls fn on the caller's goroutine and records its result in e.
//
// If fn panics or calls runtime.Goexit, the deferred function releases the
// callers waiting on e with an error and lets the panic or the Goexit go on:
// a cache must not change what happens to the goroutine that ran fn. recover
// returns the panic value in the first case and nil in the second; a panic
// recovered here is raised again with the same value.
func load[T any](ctx context.Context, c *cache, k entryKey, e *entry, fn func(context.Context) (T, error)) (v T, err error) {
	returned := false
	defer func() {
		if returned {
			return
		}
		r := recover()
		if r == nil {
			c.finish(k, e, nil, flight.ErrGoexit)
			return
		}
		c.finish(k, e, nil, &flight.PanicError{Value: r, Stack: debug.Stack()})
		panic(r)
	}()
	v, err = fn(ctx)
	returned = true
	if err != nil {
		c.finish(k, e, nil, err)
	} else {
		c.finish(k, e, v, nil)
	}
	return v, err
}

// finish records the result of e's call and releases its waiters. A failed
// entry leaves the map, by identity: a Set or a Delete that replaced it
// while it ran wins, and so does a later load of the same key.
func (c *cache) finish(k entryKey, e *entry, v any, err error) {
	c.mu.Lock()
	if err != nil && c.entries[k] == e {
		delete(c.entries, k)
	}
	e.val, e.err = v, err
	c.mu.Unlock()
	close(e.done)
}

// liveLocked reports whether the cache may still serve and store. The first
// call past the lifetime drops the entries and reports that it must be
// logged. c.mu must be held.
func (c *cache) liveLocked() (live, logNow bool) {
	if c.expired {
		return false, false
	}
	if c.opts.lifetime <= 0 || time.Since(c.created) < c.opts.lifetime {
		return true, false
	}
	c.expired = true
	c.entries = nil
	return false, true
}

// putLocked stores e under k unless the entry bound forbids it. logNow
// reports the first refusal, which must be logged. c.mu must be held.
func (c *cache) putLocked(k entryKey, e *entry) (stored, logNow bool) {
	if _, ok := c.entries[k]; !ok && c.opts.maxEntries > 0 && len(c.entries) >= c.opts.maxEntries {
		logNow = !c.full
		c.full = true
		return false, logNow
	}
	if c.entries == nil {
		c.entries = make(map[entryKey]*entry)
	}
	c.entries[k] = e
	return true, false
}

func (c *cache) logExpired(ctx context.Context) {
	c.opts.logger.WarnContext(ctx, "reqcache: request cache outlived its lifetime, no longer caching; use reqcache.Without for work that outlives a request",
		slog.Duration("lifetime", c.opts.lifetime))
}

func (c *cache) logFull(ctx context.Context) {
	c.opts.logger.WarnContext(ctx, "reqcache: request cache reached its entry bound, caching no new keys",
		slog.Int("max_entries", c.opts.maxEntries))
}

// Set stores v under group and key in ctx's request cache, replacing any
// value or call in flight there: a call in flight still returns its own
// result to its callers, but does not overwrite v. Set does nothing on a
// context without a cache, past the cache's lifetime, or for a new key once
// the entry bound is reached.
func Set[T any](ctx context.Context, group, key string, v T) {
	c := from(ctx)
	if c == nil {
		return
	}
	c.mu.Lock()
	live, logExpired := c.liveLocked()
	var logFull bool
	if live {
		_, logFull = c.putLocked(entryKey{group, key}, &entry{done: closedDone, val: v})
	}
	c.mu.Unlock()
	if logExpired {
		c.logExpired(ctx)
	}
	if logFull {
		c.logFull(ctx)
	}
}

// Delete removes the entry under group and key from ctx's request cache, so
// that the next Get calls its function. A call in flight still returns its
// result to its callers but does not store it. Deleting a missing key, or on a
// context without a cache, does nothing.
func Delete(ctx context.Context, group, key string) {
	c := from(ctx)
	if c == nil {
		return
	}
	c.mu.Lock()
	delete(c.entries, entryKey{group, key})
	c.mu.Unlock()
}
