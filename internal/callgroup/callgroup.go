// Package callgroup is the machinery of herd's duplicate call suppression:
// at most one call per key at a time, its result shared by every caller of
// the key that arrives while it runs, each caller waiting on its own
// context. Package flight wraps it as a generic singleflight; the cache
// uses it directly, with what only a cache needs:
//
//   - [Group.DoWith]: a function made once with a per-call argument, so that
//     a miss makes no closure;
//   - [Publish] and [Claim.Publish]: a result given to the callers before
//     the work that follows it (a store write) is done, while the key stays
//     in flight so that no second call overlaps that work; [Release] and
//     [Claim.Release]: a failure given to the callers waiting, with the key
//     free at once, so that no later caller shares it;
//   - [Group.Claim] and [Group.Join]: calls of many keys that one batch runs
//     and finishes by hand, which callers of each key join as any call;
//   - [Group.OwnGoroutine]: where a call runs when its first caller cannot
//     leave early.
//
// A Group is generic in E, which makes the errors of a function that
// panicked or called runtime.Goexit, so that every caller sees the error
// types of the package it called (a *flight.PanicError).
package callgroup

import (
	"context"
	"sync"
	"time"

	"github.com/herdcache/herd/internal/catch"
	"github.com/herdcache/herd/internal/check"
	"github.com/herdcache/herd/internal/keymap"
	"github.com/herdcache/herd/internal/wait"
)

// Errors makes the error that waiters get when a call's function panicked
// or called runtime.Goexit. Its zero value is used.
type Errors interface {
	Panic(p *catch.Panic) error
	Goexit() error
}

// A Group runs at most one call per key at a time and shares its result with
// every caller of that key that arrives while it runs. Results are not kept:
// a call that starts after the previous one finished runs the function again.
//
// The zero value is ready to use. A Group must not be copied after first use.
type Group[K comparable, V any, E Errors] struct {
	// CancelWhenAbandoned cancels a call's context once every caller
	// waiting on it has returned early on its own context; the key is then
	// free at once, and a caller arriving afterwards never joins the
	// cancelled call. By default the call runs on and its result is
	// dropped. Set it before first use.
	CancelWhenAbandoned bool

	// OwnGoroutine decides where a call's function runs when the caller that
	// starts the call has a context that can never end (its Done returns
	// nil, as context.Background's does): false (the default), on that
	// caller's goroutine, which would only wait otherwise; true, on a
	// goroutine of its own, as for every other caller. On the caller's
	// goroutine, a runtime.Goexit in the function ends that caller's
	// goroutine (the other waiters get E's Goexit error), and after a
	// Publish that caller still waits for the function to return. Set it
	// before first use.
	OwnGoroutine bool

	mu sync.Mutex
	// calls are the calls in flight, which give back the map's memory once
	// a burst of keys has drained (see keymap).
	calls keymap.Map[K, *call[V]]
}

type call[V any] struct {
	// done is closed when val and err are set. A call that its first
	// caller runs makes it only when a second caller joins, under mu, which
	// is then the group's mutex (nil otherwise).
	done chan struct{}
	mu   *sync.Mutex

	val V
	err error

	// published is set, on the function's goroutine, when the function gave
	// its result early with Publish; its return values are then ignored.
	published bool

	cancel context.CancelFunc // nil unless the group cancels abandoned calls

	// Guarded by Group.mu.
	waiters   int  // callers still waiting on done
	dups      int  // callers that joined after the first
	abandoned bool // cancelled because every waiter left; never joined again
}

// A Task is the function of a call: Plain, or With and its argument.
type Task[K comparable, V any] struct {
	Plain func(context.Context) (V, error)
	With  func(context.Context, K, any) (V, error)
	Arg   any
}

func (t *Task[K, V]) call(ctx context.Context, key K) (V, error) {
	if t.Plain != nil {
		return t.Plain(ctx)
	}
	return t.With(ctx, key, t.Arg)
}

// Do calls the task once for every group of concurrent callers of key and
// returns its result to each of them. shared reports whether the result
// went to more than one caller, started whether this caller started the
// call.
//
// If ctx ends before the result is ready, Do returns ctx.Err() at once; the
// call itself goes on for the other callers. If ctx has already ended, Do
// returns ctx.Err() without starting or joining a call. A nil ctx panics,
// before any lock is taken.
//
// The function runs with a context that carries the key (see
// [KeyFromContext]) and the call (see [Publish]), and the values of the
// first caller's ctx but not its cancellation, on a new goroutine or on the
// caller's (see [Group.OwnGoroutine]). A panic or runtime.Goexit in it
// reaches every waiter as E's error, and the key is free again.
func (g *Group[K, V, E]) Do(ctx context.Context, key K, t Task[K, V]) (v V, shared, started bool, err error) {
	check.Context(ctx, "flight")
	if ctxErr := ctx.Err(); ctxErr != nil {
		var zero V
		return zero, false, false, ctxErr
	}
	here := ctx.Done() == nil && !g.OwnGoroutine
	c, callCtx, first := g.join(ctx, key, here)
	if !first {
		v, shared, err = g.wait(ctx, key, c)
		return v, shared, false, err
	}
	if here {
		// The caller cannot leave early, so it may as well run the call:
		// run recovers a panic into c.err, and a Goexit ends this goroutine
		// after the other waiters got the Goexit error.
		g.run(callCtx, key, c, t)
		// run took c out of the map under the lock: nobody joins c any
		// more, and dups is final.
		return c.val, c.dups > 0, true, c.err
	}
	go g.run(callCtx, key, c, t)
	v, shared, err = g.wait(ctx, key, c)
	return v, shared, true, err
}

// DoWith is [Group.Do] of the task (fn, arg): it spares the allocation of a
// closure per call when fn is made once (a method value kept in a field)
// and arg is pointer-shaped (a pointer, a func, a map or a channel, which an
// interface holds without allocating).
func (g *Group[K, V, E]) DoWith(ctx context.Context, key K, arg any, fn func(ctx context.Context, key K, arg any) (V, error)) (v V, shared, started bool, err error) {
	return g.Do(ctx, key, Task[K, V]{With: fn, Arg: arg})
}

// join joins the call in flight for key, or records a new one, which the
// caller must start on callCtx (first is then true), on its own goroutine if
// here. The lock is released by defer: a key of an interface type whose
// dynamic value cannot be hashed panics in the map access, and must not
// leave the group locked.
func (g *Group[K, V, E]) join(ctx context.Context, key K, here bool) (c *call[V], callCtx context.Context, first bool) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if cur, ok := g.calls.Get(key); ok {
		joinLocked(cur)
		return cur, nil, false
	}
	own := &ownCall[K, V, E]{call: call[V]{waiters: 1}, key: key, g: g, parent: ctx}
	if here {
		own.mu = &g.mu
	} else {
		own.done = make(chan struct{})
	}
	c, callCtx = &own.call, own
	if g.CancelWhenAbandoned {
		callCtx, c.cancel = context.WithCancel(callCtx)
	}
	g.addLocked(key, c)
	return c, callCtx, true
}

func (g *Group[K, V, E]) addLocked(key K, c *call[V]) {
	g.calls.Put(key, c)
}

// joinLocked adds a caller to c, under the group's lock, and makes c's done
// channel if c's first caller runs it and nobody has joined it yet.
func joinLocked[V any](c *call[V]) {
	c.waiters++
	c.dups++
	if c.done == nil {
		c.done = make(chan struct{})
		if c.published {
			close(c.done)
		}
	}
}

// Forget tells the group to start a new call for the next caller of key
// instead of joining the one in flight, if any. The call in flight still
// returns its result to the callers already waiting on it.
func (g *Group[K, V, E]) Forget(key K) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.forgetLocked(key, nil)
}

// forgetLocked removes key from the in-flight map; when c is not nil, only if
// the entry is c. Removing by identity is what keeps a late finisher from
// removing the call that replaced it after a Forget or an abandonment.
func (g *Group[K, V, E]) forgetLocked(key K, c *call[V]) {
	if cur, ok := g.calls.Get(key); !ok || (c != nil && cur != c) {
		return
	}
	g.calls.Delete(key)
}

func (g *Group[K, V, E]) wait(ctx context.Context, key K, c *call[V]) (V, bool, error) {
	if wait.For(ctx, c.done) {
		return g.result(c)
	}
	g.mu.Lock()
	c.waiters--
	if c.waiters == 0 && c.cancel != nil && !c.abandoned {
		c.abandoned = true
		g.forgetLocked(key, c)
		c.cancel()
	}
	g.mu.Unlock()
	var zero V
	return zero, false, ctx.Err()
}

// result returns the result of c, whose done channel is closed. dups is read
// under the lock: after a Publish, callers may still join c.
func (g *Group[K, V, E]) result(c *call[V]) (V, bool, error) {
	g.mu.Lock()
	shared := c.dups > 0
	g.mu.Unlock()
	return c.val, shared, c.err
}

// run calls the task and ends the call with its result, or with E's error
// when it panics or calls runtime.Goexit; a panic after Publish is dropped,
// as the callers have their result.
func (g *Group[K, V, E]) run(ctx context.Context, key K, c *call[V], t Task[K, V]) {
	var (
		v   V
		err error
		e   E
	)
	p := catch.Call(func() { v, err = t.call(ctx, key) }, func() { g.end(key, c, v, e.Goexit()) })
	if p != nil {
		var zero V
		v, err = zero, e.Panic(p)
	}
	g.end(key, c, v, err)
}

// end ends c: the key is free for a new call and, unless a Publish gave the
// result already, every waiter gets v and err.
func (g *Group[K, V, E]) end(key K, c *call[V], v V, err error) {
	if !c.published {
		c.val, c.err = v, err
	}
	g.mu.Lock()
	g.forgetLocked(key, c)
	done := c.done // final: nobody joins c any more
	g.mu.Unlock()
	if c.cancel != nil {
		c.cancel()
	}
	if !c.published && done != nil {
		close(done)
	}
}

type publishKey[V any] struct{}

// A publisher is the call whose function runs on a context: an ownCall.
type publisher[V any] interface {
	publish(v V, err error, release bool) *V
}

// Publish gives v and err as the result of the call whose function runs on
// ctx, before the function returns: the callers waiting get it at once, and
// so do callers that arrive until the function returns, without starting a
// new call. The function's own return values are then ignored. It suits
// work that follows the result, such as writing it to a slower store, which
// the callers need not wait for but which a new call should not overlap.
//
// Publish must be called from the function's own goroutine, at most once
// (with Release). It returns the callers' copy of v, which nothing modifies
// from then on, or nil when ctx was not the context of a call of a
// Group[K, V, E] (K and E any), where it does nothing.
func Publish[V any](ctx context.Context, v V, err error) *V {
	if p, ok := ctx.Value(publishKey[V]{}).(publisher[V]); ok {
		return p.publish(v, err, false)
	}
	return nil
}

// Release is [Publish] of a result that callers arriving afterwards must not
// share, such as a failure: the callers waiting get it, and the key is free
// at once for a new call, while the function finishes what follows.
func Release[V any](ctx context.Context, v V, err error) bool {
	p, ok := ctx.Value(publishKey[V]{}).(publisher[V])
	return ok && p.publish(v, err, true) != nil
}

func (c *ownCall[K, V, E]) publish(v V, err error, release bool) *V {
	if c.published {
		return nil
	}
	c.val, c.err = v, err
	if c.mu == nil && !release {
		c.published = true
		close(c.done)
		return &c.val
	}
	c.g.mu.Lock()
	if release {
		c.g.forgetLocked(c.key, &c.call)
	}
	c.published = true
	done := c.done
	c.g.mu.Unlock()
	if done != nil {
		close(done)
	}
	return &c.val
}

// keyContext is the context key under which a call's key is stored. It is
// generic so that groups with different key types never see each other's keys.
type keyContext[K comparable] struct{}

// ownCall is a call of Group.Do and the context its function runs on, in
// one allocation: the first caller's context without its cancellation, plus
// the key and the call (for Publish). It does what context.WithoutCancel and
// context.WithValue would, without their allocations and without boxing the
// key into an interface.
type ownCall[K comparable, V any, E Errors] struct {
	call[V]
	key    K
	g      *Group[K, V, E]
	parent context.Context
}

func (*ownCall[K, V, E]) Deadline() (time.Time, bool) { return time.Time{}, false }
func (*ownCall[K, V, E]) Done() <-chan struct{}       { return nil }
func (*ownCall[K, V, E]) Err() error                  { return nil }

func (c *ownCall[K, V, E]) Value(k any) any {
	switch k.(type) {
	case keyContext[K]:
		return c.key
	case publishKey[V]:
		return c
	case *int:
		// The context package finds a context's cancellation under a key
		// of this type (context.Cause does): only context.WithoutCancel
		// knows to hide it. Other keys of the type are rare.
		return context.WithoutCancel(c.parent).Value(k)
	}
	return c.parent.Value(k)
}

func (c *ownCall[K, V, E]) String() string { return "flight.call" }

// KeyFromContext returns the key of the call whose function runs on ctx, and
// whether ctx carries a key of type K.
func KeyFromContext[K comparable](ctx context.Context) (K, bool) {
	k, ok := ctx.Value(keyContext[K]{}).(K)
	return k, ok
}
