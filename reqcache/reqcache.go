// Package reqcache provides a cache that lives for one request and travels in
// its [context.Context], so that the deep code paths of a request that load
// the same object load it once. [With] attaches a cache to a context
// ([Middleware] does it for every HTTP request); [Get] reads through it.
//
//	http.Handle("/", reqcache.Middleware(handler)) // one cache per request
//
//	// anywhere below, on the request's context:
//	u, err := reqcache.Get(ctx, "user", id, func(ctx context.Context) (User, error) {
//		return db.LoadUser(ctx, id)
//	})
//
// # Guarantees
//
//   - Entries are keyed by a group (a namespace such as "user") and a key;
//     groups never see each other's entries.
//   - [Get] calls its function once per group and key for the life of the
//     cache. Concurrent Gets of one key share one call: the first caller
//     runs it itself (on its goroutine, with its context), and the others wait
//     for it, each on its own context (returning ctx.Err() when it ends).
//     Errors are not cached: the callers sharing the failed call get its
//     error, once, and the next Get calls again. The one exception is told by
//     which context ended, not by the error: a caller that shared a call that
//     failed after the loading caller's context ended, while its own context
//     lives, calls again itself.
//   - A value of another type under the same group and key (Get[User] after
//     Get[string]) is a miss: the function is called and its value replaces
//     the other. It never panics.
//   - [Set] and [Delete] win over a call in flight for the key: the call
//     still returns its result to its callers, but does not store it.
//   - A context without a cache, or from [Without], caches nothing: Get just
//     calls the function, [Set] and [Delete] do nothing.
//   - Every caller of a key gets the same value: treat cached values as
//     read-only, or cache copies.
//   - Two guards bound a cache that lives too long or grows too large, by
//     mistake (a context kept by a goroutine that outlives its request) or by
//     design (a request that touches thousands of rows): at its lifetime
//     ([Lifetime], 5 minutes by default) the cache drops its entries, at that
//     moment and not at the next access, so that a context held longer keeps
//     nothing reachable, and stops serving and storing; past its entry bound
//     ([MaxEntries], 10,000 by default) it stores nothing new. In both cases
//     Get keeps working by calling the function, and the cache logs it once,
//     at the first access past the guard, not on every access.
//   - [Peek] reads a cached value without ever loading or waiting.
//
// The cache is safe for concurrent use by the goroutines of a request. It
// holds no lock while a function or the logger runs, so both may call the
// cache.
//
// # Costs
//
// Attaching a cache costs a few allocations: the cache, its lifetime timer
// ([time.AfterFunc]) and its end with the request's context
// ([context.AfterFunc]); each runs a short function when it fires, and both
// are released when the cache ends. (A context of a type outside the
// standard library makes context.AfterFunc wait on a goroutine until that
// context or the cache ends.) A Get that finds its value takes the cache's
// mutex for one map lookup and allocates nothing.
//
// # Errors
//
// Get returns its function's error as the function returned it, to the
// caller that ran it and to every caller that shared the call, and ctx.Err()
// to a caller whose context ends while it waits. A panic in a function
// passed to Get propagates to the caller that ran it, as it would without a
// cache; the callers sharing the call get an error wrapping a
// [*flight.PanicError] (or [flight.ErrGoexit] after a [runtime.Goexit]), and
// nothing is cached. Nothing else fails: a request cache is an optimisation,
// so an ended or full cache is no cache, not an error. A nil context is a
// programming error: every function panics with "reqcache: nil Context"
// before taking any lock; an option out of range panics where [With] or
// [NewMiddleware] applies it, with a message naming it.
//
// # Lifecycle
//
// A cache ends, dropping its entries, at the first of: its lifetime, the
// end of the context [With] attached it to (net/http ends a request's
// context when its handler returns), and [Close]. An ended cache behaves as
// no cache: Get calls the function, [Peek] finds nothing, Set and Delete do
// nothing. Close is idempotent, waits for nothing (loads run on their
// callers' goroutines) and returns nil; calls after it do not fail with an
// error. [Middleware] attaches a cache to each request and closes it when
// the handler returns.
//
// # Conventions
//
// reqcache follows the conventions of every herd package (see package
// [github.com/herdcache/herd]), with the differences a cache carried in a
// context calls for: [Close] takes the context that carries the cache, and
// calls after it meet no cache rather than an ErrClosed;
// turning a guard off is an explicit value, Lifetime([Forever]) or
// MaxEntries([Unbounded]); the functions given to Get run on their caller's
// goroutine, where a panic propagates to that caller and never leaves a
// lock held; the two warnings go to the configured [slog.Logger] on the
// context of the access that found the guard.
package reqcache

import (
	"context"
	"fmt"
	"log/slog"
	"math"
	"sync"
	"time"

	"github.com/herdcache/herd/flight"
	"github.com/herdcache/herd/internal/catch"
	"github.com/herdcache/herd/internal/check"
	"github.com/herdcache/herd/internal/wait"
)

// DefaultLifetime is the lifetime of a cache attached without [Lifetime].
const DefaultLifetime = 5 * time.Minute

// DefaultMaxEntries is the entry bound of a cache attached without
// [MaxEntries].
const DefaultMaxEntries = 10_000

// Forever is the lifetime that turns the lifetime guard off: given to
// [Lifetime], the cache lives until the end of its context or [Close].
const Forever time.Duration = math.MaxInt64

// Unbounded is the entry bound that turns the bound off, given to
// [MaxEntries].
const Unbounded = math.MaxInt

// An Option configures the cache that [With] or [NewMiddleware] attaches.
// An option out of range panics there, with a message naming it.
type Option func(*options)

type options struct {
	lifetime   time.Duration
	maxEntries int
	logger     *slog.Logger
}

// Lifetime sets how long after [With] attached it the cache serves and
// stores entries. At that moment the cache drops its entries; from then on
// Get calls its function every time, and the first access logs a warning
// once. A request cache that lives that long was almost always kept by
// mistake by work that outlives its request and should have used [Without].
// d must be positive; [Forever] turns the guard off. Default:
// [DefaultLifetime], 5 minutes.
func Lifetime(d time.Duration) Option {
	return func(o *options) {
		check.That(d > 0, "reqcache", "Lifetime must be positive (reqcache.Forever turns the guard off), got %v", d)
		o.lifetime = d
	}
}

// MaxEntries bounds the number of entries, loads in flight included, that
// the cache holds. Once it is reached, a Get of a new key calls its function
// without caching or sharing the result, a [Set] of a new key is dropped,
// and the cache logs a warning once; keys already cached are still served and
// may still be replaced. n must be positive; [Unbounded] turns the bound
// off. Default: [DefaultMaxEntries], 10,000.
func MaxEntries(n int) Option {
	return func(o *options) {
		check.That(n > 0, "reqcache", "MaxEntries must be positive (reqcache.Unbounded turns the bound off), got %d", n)
		o.maxEntries = n
	}
}

// WithLogger sets the logger of the cache's two warnings (lifetime passed,
// entry bound reached). Default: [slog.Default] as it is when the cache is
// attached. A nil logger keeps the default.
func WithLogger(l *slog.Logger) Option {
	return func(o *options) {
		if l != nil {
			o.logger = l
		}
	}
}

func newOptions(opts []Option) options {
	o := options{lifetime: DefaultLifetime, maxEntries: DefaultMaxEntries, logger: slog.Default()}
	for _, opt := range opts {
		opt(&o)
	}
	return o
}

// ctxKey is the context key of the cache. A context from Without maps it to a
// nil *cache, which hides the parent's cache.
type ctxKey struct{}

type entryKey struct {
	group, key string
}

// entry is one value, or one call in flight. Its fields but done are written
// before done is closed and read only after.
type entry struct {
	done chan struct{}
	val  any
	err  error
	// panicked is set when err is a *flight.PanicError or flight.ErrGoexit.
	panicked bool
	// callerEnded is set when the context of the caller that ran the call
	// had ended by the time it failed: its waiters call again themselves.
	callerEnded bool
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
	timer   *time.Timer // ends the cache at its lifetime; nil with Forever

	mu       sync.Mutex
	entries  map[entryKey]*entry
	ended    bool        // entries dropped, nothing served or stored
	warned   bool        // the lifetime warning was logged
	full     bool        // the entry bound was reached once (and logged)
	stopDone func() bool // unregisters the end at the context's end
}

// With returns a context that carries a new request cache configured by
// opts, or ctx itself if it already carries one (nested calls share the
// outer cache, and opts are ignored). On a context from [Without], With
// attaches a new cache, separate from the one Without hid.
//
// The cache ends, dropping its entries, at its lifetime, when ctx ends, or
// at [Close], whichever comes first. With panics when an option is out of
// range, and when ctx is nil.
func With(ctx context.Context, opts ...Option) context.Context {
	if from(ctx) != nil {
		return ctx
	}
	return attach(ctx, newOptions(opts))
}

// attach returns ctx with a new cache configured by o.
func attach(ctx context.Context, o options) context.Context {
	c := &cache{opts: o, created: time.Now()}
	if o.lifetime != Forever {
		c.timer = time.AfterFunc(o.lifetime, c.expire)
	}
	// Outside the lock: context.AfterFunc calls ctx's methods.
	stop := context.AfterFunc(ctx, c.endWithContext)
	c.mu.Lock()
	c.stopDone = stop
	c.mu.Unlock()
	return context.WithValue(ctx, ctxKey{}, c)
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

// Close ends the request cache that ctx carries, if any: it drops its
// entries, stops its lifetime timer, and from then on the cache serves and
// stores nothing (see the package documentation). [Middleware] calls it when
// the handler returns. Close is idempotent and waits for nothing: loads run
// on their callers' goroutines and keep running, but their results are not
// stored. It returns nil; the error is there for the shape every herd
// package's Close has.
func Close(ctx context.Context) error {
	c := from(ctx)
	if c == nil {
		return nil
	}
	c.mu.Lock()
	c.endLocked()
	stop := c.stopDone
	c.mu.Unlock()
	if c.timer != nil {
		c.timer.Stop()
	}
	if stop != nil {
		stop()
	}
	return nil
}

// expire ends the cache at its lifetime, on the timer's goroutine.
func (c *cache) expire() {
	c.mu.Lock()
	c.endLocked()
	stop := c.stopDone
	c.mu.Unlock()
	if stop != nil {
		stop()
	}
}

// endWithContext ends the cache when the context it was attached to ends.
func (c *cache) endWithContext() {
	c.mu.Lock()
	c.endLocked()
	c.mu.Unlock()
	if c.timer != nil {
		c.timer.Stop()
	}
}

// endLocked drops the entries; nothing is served or stored afterwards. Calls
// in flight keep their entries and release their waiters. c.mu must be held.
func (c *cache) endLocked() {
	c.ended = true
	c.entries = nil
}

func from(ctx context.Context) *cache {
	check.Context(ctx, "reqcache")
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
// that shared a call whose caller's context had ended by the time it
// returned calls fn itself, if its own context lives: which context ended
// decides, not the error's type, so a function that fails on a deadline of
// its own fails once for everyone sharing it. A caller that shares a call
// that panicked gets an error wrapping a [*flight.PanicError] or
// [flight.ErrGoexit]; the panic itself propagates to the caller that ran fn.
//
// fn must not Get the same group and key on the context it was given: it
// would wait for itself until that context ends. A nil ctx or fn panics,
// with a value cached too.
func Get[T any](ctx context.Context, group, key string, fn func(context.Context) (T, error)) (T, error) {
	c := from(ctx)
	check.That(fn != nil, "reqcache", "Get needs a function, got nil")
	if c == nil {
		return fn(ctx)
	}
	k := entryKey{group, key}
	for {
		c.mu.Lock()
		live, warn := c.liveLocked()
		if !live {
			c.mu.Unlock()
			if warn {
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
				v, err, again := await[T](ctx, group, key, e)
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

// Peek returns the value cached in ctx's request cache under group and key,
// and whether there is one. It never calls a function and never waits: a key
// whose load is in flight, a value of another type than T (the rule of
// [Get]), a context without a cache and an ended cache all report false.
func Peek[T any](ctx context.Context, group, key string) (T, bool) {
	var zero T
	c := from(ctx)
	if c == nil {
		return zero, false
	}
	c.mu.Lock()
	live, warn := c.liveLocked()
	e := c.entries[entryKey{group, key}]
	c.mu.Unlock()
	if warn {
		c.logExpired(ctx)
	}
	if !live || e == nil {
		return zero, false
	}
	select {
	case <-e.done:
	default:
		return zero, false // in flight
	}
	if e.err != nil {
		return zero, false // failed after it was looked up
	}
	v, ok := e.val.(T)
	return v, ok
}

// await waits for the call of e on the caller's own context. again reports
// that the caller should look the key up again: the value is of another type,
// or the call failed after its caller's context ended, while this caller's
// lives.
func await[T any](ctx context.Context, group, key string, e *entry) (v T, err error, again bool) {
	if !wait.For(ctx, e.done) {
		return v, ctx.Err(), false
	}
	switch {
	case e.err == nil:
		typed, ok := e.val.(T)
		return typed, nil, !ok
	case e.panicked:
		return v, fmt.Errorf("reqcache: shared load of %s/%s: %w", group, key, e.err), false
	case e.callerEnded && ctx.Err() == nil:
		return v, nil, true
	default:
		return v, e.err, false
	}
}

// load calls fn on the caller's goroutine and records its result in e.
//
// If fn panics or calls runtime.Goexit, the callers waiting on e are
// released with an error, and the panic or the Goexit goes on: a cache must
// not change what happens to the goroutine that ran fn. A panic is raised
// again with the same value.
func load[T any](ctx context.Context, c *cache, k entryKey, e *entry, fn func(context.Context) (T, error)) (v T, err error) {
	p := catch.Call(func() { v, err = fn(ctx) }, func() {
		e.panicked = true
		c.finish(k, e, nil, flight.ErrGoexit)
	})
	if p != nil {
		e.panicked = true
		c.finish(k, e, nil, &flight.PanicError{Value: p.Value, Stack: p.Stack})
		panic(p.Value)
	}
	if err != nil {
		// Read before done is closed, so that the waiters see it.
		e.callerEnded = ctx.Err() != nil
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
// call at or past the lifetime ends the cache if the timer has not yet, and
// reports that the lifetime warning must be logged. c.mu must be held.
func (c *cache) liveLocked() (live, warn bool) {
	if c.opts.lifetime != Forever && !c.warned && time.Since(c.created) >= c.opts.lifetime {
		c.warned, warn = true, true
		c.endLocked()
	}
	return !c.ended, warn
}

// putLocked stores e under k unless the entry bound forbids it. logNow
// reports the first refusal, which must be logged. c.mu must be held.
func (c *cache) putLocked(k entryKey, e *entry) (stored, logNow bool) {
	if _, ok := c.entries[k]; !ok && len(c.entries) >= c.opts.maxEntries {
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
// context without a cache, on an ended cache, or for a new key once the
// entry bound is reached.
func Set[T any](ctx context.Context, group, key string, v T) {
	c := from(ctx)
	if c == nil {
		return
	}
	c.mu.Lock()
	live, warn := c.liveLocked()
	var logFull bool
	if live {
		_, logFull = c.putLocked(entryKey{group, key}, &entry{done: closedDone, val: v})
	}
	c.mu.Unlock()
	if warn {
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
