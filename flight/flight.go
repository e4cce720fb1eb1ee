// Package flight provides a generic, context-aware duplicate call suppression
// mechanism: however many goroutines ask for the same key at once, one function
// call runs and every caller shares its result.
//
// It differs from golang.org/x/sync/singleflight in four ways that matter to a
// cache in front of a slow source:
//
//   - Each caller waits on its own context. A caller whose context ends returns
//     ctx.Err() at once; the call goes on for the others. This includes the
//     caller that started the call.
//   - The function runs on a context detached from every caller's
//     cancellation (as [context.WithoutCancel] of the first caller's context,
//     so values such as trace ids survive) that carries the key
//     ([KeyFromContext]). It runs on a goroutine of its own, unless the first
//     caller's context can never end (see [Group.OwnGoroutine]).
//   - A panic or [runtime.Goexit] in the function never crashes the process or
//     the callers: every waiter gets a [*PanicError] or [ErrGoexit].
//   - Keys and values are typed.
//
// The price of the first two is one goroutine per call (not per caller), about
// a microsecond on the first caller's path, when that caller's context can
// end; a call for a caller whose context cannot (context.Background and its
// values) runs on that caller's goroutine and costs one allocation. Callers
// that join a call cost no more than with x/sync.
//
// A nil context is a programming error: [Group.Do] panics with "flight: nil
// Context" before it takes any lock, as the standard library does. The map of
// calls in flight holds only the keys in flight: once a burst of keys has
// drained, the map is replaced by one sized for what is left, so memory
// returns to its idle size.
//
// [NewPanicError] is the one constructor of the [*PanicError] that every herd
// package returns for a recovered panic of a user function.
package flight

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"maps"
	"runtime/debug"
	"sync"
	"time"

	"github.com/herdcache/herd/internal/wait"
)

// ErrGoexit is returned to every waiter of a call whose function called
// [runtime.Goexit] (for example through testing.T.FailNow).
var ErrGoexit = errors.New("flight: function called runtime.Goexit")

// PanicError is returned to every waiter of a call whose function panicked.
// It keeps the value passed to panic and the stack of the panicking goroutine.
// Every herd package reports a recovered panic of a user function as a
// PanicError built by [NewPanicError].
type PanicError struct {
	// Value is the value the function panicked with.
	Value any
	// Stack is the stack trace of the panicking goroutine, as [debug.Stack]
	// gives it without its first line (see [NewPanicError]).
	Stack []byte
}

// NewPanicError returns a PanicError for the panic value v, with the stack of
// the calling goroutine. Call it from the deferred function that recovered v,
// so that the stack shows where the panic happened.
//
// The first line of a stack trace names the goroutine and its status
// ("goroutine 7 [running]:"); by the time the error reaches a caller on
// another goroutine that goroutine may be gone, so the line is trimmed, as
// golang.org/x/sync/singleflight does.
func NewPanicError(v any) *PanicError {
	stack := debug.Stack()
	if i := bytes.IndexByte(stack, '\n'); i >= 0 {
		stack = stack[i+1:]
	}
	return &PanicError{Value: v, Stack: stack}
}

// Error reports the panic value. The stack is in the Stack field, so that an
// error wrapped in a log line stays one line.
func (p *PanicError) Error() string {
	return fmt.Sprintf("flight: function panicked: %v", p.Value)
}

// Unwrap returns the panic value when it is an error, so that [errors.Is] and
// [errors.As] see through a panic(err).
func (p *PanicError) Unwrap() error {
	err, _ := p.Value.(error)
	return err
}

// A Group runs at most one call per key at a time and shares its result with
// every caller of that key that arrives while it runs. Results are not kept:
// a call that starts after the previous one finished runs the function again.
//
// The zero value is ready to use. A Group must not be copied after first use.
type Group[K comparable, V any] struct {
	// CancelWhenAbandoned decides what happens to a call once every caller
	// waiting on it has returned early on its own context.
	//
	// false (the default): the call runs to completion and its result is
	// dropped. This is what a cache wants: the load still fills the cache for
	// the next caller.
	//
	// true: the call's context is cancelled. The key is free at once, so a
	// caller arriving afterwards starts a new call; it never joins the
	// cancelled one.
	CancelWhenAbandoned bool

	// OwnGoroutine decides where a call's function runs when the caller that
	// starts the call has a context that can never end (its Done returns nil,
	// as context.Background's does).
	//
	// false (the default): on that caller's goroutine, which would only wait
	// for it otherwise; this saves a goroutine and its hand-off. It shows in
	// two ways: a [runtime.Goexit] in the function ends that caller's
	// goroutine, as it would without a Group (the other waiters get
	// [ErrGoexit]), and after [Publish] that caller still waits for the
	// function to return (the others get the result at once).
	//
	// true: on a goroutine of its own, as for every other caller. Set it when
	// the work that follows a Publish is slow.
	OwnGoroutine bool

	mu sync.Mutex
	m  map[K]*call[V]
	// peak is the largest len(m) since m was last allocated. Go maps never
	// shrink, so once a burst of keys has mostly drained, m is replaced by a
	// map sized for the keys still in flight (or by nil when none is).
	peak int
	// shrunk is set when m replaced a map that had passed shrinkAfter keys:
	// once empty, it is released too.
	shrunk bool
}

// A map whose peak passed shrinkAfter keys is replaced once it holds no more
// than 1/shrinkRatio of that peak. Copying the keys left costs at most
// 1/(shrinkRatio-1) of the deletes that led there, so the cost per call stays
// constant.
const (
	shrinkAfter = 1024
	shrinkRatio = 8
)

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

	cancel context.CancelFunc // nil unless Group.CancelWhenAbandoned

	// Guarded by Group.mu.
	waiters   int  // callers still waiting on done
	dups      int  // callers that joined after the first
	abandoned bool // cancelled because every waiter left; never joined again
}

// Do calls fn once for every group of concurrent callers of key and returns
// its result to each of them.
//
// If ctx ends before the result is ready, Do returns ctx.Err() at once; the
// call itself goes on for the other callers (see [Group.CancelWhenAbandoned]
// for when none is left). If ctx has already ended, Do returns ctx.Err()
// without starting or joining a call. A nil ctx panics, before any lock is
// taken.
//
// fn runs with a context that carries the key (see [KeyFromContext]) and
// the values of the first caller's ctx but not its cancellation, on a new
// goroutine or, when ctx can never end, on the caller's (see
// [Group.OwnGoroutine]). A panic in fn is returned to every waiter as a [*PanicError]
// and a [runtime.Goexit] as [ErrGoexit]; in both cases the key is free again
// for the next caller.
func (g *Group[K, V]) Do(ctx context.Context, key K, fn func(context.Context) (V, error)) (V, error) {
	v, _, err := g.DoShared(ctx, key, fn)
	return v, err
}

// DoShared is [Group.Do] that also reports whether the result was given to
// more than one caller. shared is false for a caller that returns ctx.Err()
// on its own context.
func (g *Group[K, V]) DoShared(ctx context.Context, key K, fn func(context.Context) (V, error)) (v V, shared bool, err error) {
	v, shared, _, err = g.do(ctx, key, task[K, V]{plain: fn})
	return v, shared, err
}

// A task is the function of a call: plain, or with and its argument.
type task[K comparable, V any] struct {
	plain func(context.Context) (V, error)
	with  func(context.Context, K, any) (V, error)
	arg   any
}

func (t *task[K, V]) call(ctx context.Context, key K) (V, error) {
	if t.plain != nil {
		return t.plain(ctx)
	}
	return t.with(ctx, key, t.arg)
}

// DoWith is [Group.DoShared] for a function that takes the key and an
// argument, which spares the allocation of a closure per call when fn is
// made once (a method value kept in a field) and arg is pointer-shaped (a
// pointer, a func, a map or a channel, which an interface holds without
// allocating). started reports whether this caller started the call, and
// so was the one whose call ran fn.
func (g *Group[K, V]) DoWith(ctx context.Context, key K, arg any, fn func(ctx context.Context, key K, arg any) (V, error)) (v V, shared, started bool, err error) {
	return g.do(ctx, key, task[K, V]{with: fn, arg: arg})
}

func (g *Group[K, V]) do(ctx context.Context, key K, t task[K, V]) (v V, shared, started bool, err error) {
	if ctx == nil {
		panic("flight: nil Context")
	}
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
		// after the other waiters got ErrGoexit.
		g.run(callCtx, key, c, t)
		// run took c out of the map under the lock: nobody joins c any
		// more, and dups is final.
		return c.val, c.dups > 0, true, c.err
	}
	go g.run(callCtx, key, c, t)
	v, shared, err = g.wait(ctx, key, c)
	return v, shared, true, err
}

// join joins the call in flight for key, or records a new one, which the
// caller must start on callCtx (first is then true), on its own goroutine if
// here. The lock is released by defer: a key of an interface type whose
// dynamic value cannot be hashed panics in the map access, and must not
// leave the group locked.
func (g *Group[K, V]) join(ctx context.Context, key K, here bool) (c *call[V], callCtx context.Context, first bool) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if cur, ok := g.m[key]; ok {
		joinLocked(cur)
		return cur, nil, false
	}
	if g.m == nil {
		g.m = make(map[K]*call[V])
	}
	own := &ownCall[K, V]{call: call[V]{waiters: 1}, key: key, parent: ctx}
	if here {
		own.mu = &g.mu
	} else {
		own.done = make(chan struct{})
	}
	c, callCtx = &own.call, own
	if g.CancelWhenAbandoned {
		callCtx, c.cancel = context.WithCancel(callCtx)
	}
	g.m[key] = c
	g.peak = max(g.peak, len(g.m))
	return c, callCtx, true
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
func (g *Group[K, V]) Forget(key K) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.forgetLocked(key, nil)
}

// forgetLocked removes key from the in-flight map; when c is not nil, only if
// the entry is c. Removing by identity is what keeps a late finisher from
// removing the call that replaced it after a Forget or an abandonment.
func (g *Group[K, V]) forgetLocked(key K, c *call[V]) {
	if cur, ok := g.m[key]; !ok || (c != nil && cur != c) {
		return
	}
	delete(g.m, key)
	switch {
	case len(g.m) == 0 && (g.shrunk || g.peak > shrinkAfter):
		g.m, g.peak, g.shrunk = nil, 0, false
	case g.peak > shrinkAfter && len(g.m) <= g.peak/shrinkRatio:
		// Not maps.Clone, which keeps the size of the original.
		m := make(map[K]*call[V], len(g.m))
		maps.Copy(m, g.m)
		g.m, g.peak, g.shrunk = m, len(m), true
	}
}

func (g *Group[K, V]) wait(ctx context.Context, key K, c *call[V]) (V, bool, error) {
	if wait.For(ctx, c.done) {
		return g.result(c)
	}
	g.mu.Lock()
	c.waiters--
	if c.waiters == 0 && g.CancelWhenAbandoned && !c.abandoned {
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
func (g *Group[K, V]) result(c *call[V]) (V, bool, error) {
	g.mu.Lock()
	shared := c.dups > 0
	g.mu.Unlock()
	return c.val, shared, c.err
}

// run calls fn on its own goroutine. Because the goroutine is ours, one
// deferred function is enough to tell a panic from a runtime.Goexit: recover
// returns the panic value in the first case and nil in the second, and in
// neither case does anything need to propagate to a caller's goroutine.
func (g *Group[K, V]) run(ctx context.Context, key K, c *call[V], t task[K, V]) {
	returned := false
	defer func() {
		if !returned && !c.published {
			if r := recover(); r != nil {
				c.err = NewPanicError(r)
			} else {
				c.err = ErrGoexit
			}
		} else if !returned {
			_ = recover() // the callers have their result; a panic after Publish is dropped
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
	}()
	v, err := t.call(ctx, key)
	if !c.published {
		c.val, c.err = v, err
	}
	returned = true
}

type publishKey[V any] struct{}

// Publish gives v as the result of the call whose function runs on ctx,
// before the function returns: the callers waiting get it at once, and so do
// callers that arrive until the function returns, without starting a new
// call. The function's own return values are then ignored. It suits work
// that follows the result, such as writing it to a slower store, which the
// callers need not wait for but which a new call should not overlap.
//
// Publish must be called from the function's own goroutine, at most once.
// It reports whether ctx was the context of a call of a Group[K, V] (K is
// any key type); elsewhere it does nothing.
func Publish[V any](ctx context.Context, v V) bool {
	c, ok := ctx.Value(publishKey[V]{}).(*call[V])
	if !ok || c.published {
		return false
	}
	c.val, c.err = v, nil
	if c.mu == nil {
		c.published = true
		close(c.done)
		return true
	}
	c.mu.Lock()
	c.published = true
	done := c.done
	c.mu.Unlock()
	if done != nil {
		close(done)
	}
	return true
}

// keyContext is the context key under which a call's key is stored. It is
// generic so that groups with different key types never see each other's keys.
type keyContext[K comparable] struct{}

// ownCall is a call of Group.Do and the context its function runs on, in
// one allocation: the first caller's context without its cancellation, plus
// the key and the call (for Publish). It does what context.WithoutCancel and
// context.WithValue would, without their allocations and without boxing the
// key into an interface.
type ownCall[K comparable, V any] struct {
	call[V]
	key    K
	parent context.Context
}

func (*ownCall[K, V]) Deadline() (time.Time, bool) { return time.Time{}, false }
func (*ownCall[K, V]) Done() <-chan struct{}       { return nil }
func (*ownCall[K, V]) Err() error                  { return nil }

func (c *ownCall[K, V]) Value(k any) any {
	switch k.(type) {
	case keyContext[K]:
		return c.key
	case publishKey[V]:
		return &c.call
	case *int:
		// The context package finds a context's cancellation under a key
		// of this type (context.Cause does): only context.WithoutCancel
		// knows to hide it. Other keys of the type are rare.
		return context.WithoutCancel(c.parent).Value(k)
	}
	return c.parent.Value(k)
}

func (c *ownCall[K, V]) String() string { return "flight.call" }

// KeyFromContext returns the key of the call whose function runs on ctx, and
// whether ctx carries a key of type K.
func KeyFromContext[K comparable](ctx context.Context) (K, bool) {
	k, ok := ctx.Value(keyContext[K]{}).(K)
	return k, ok
}
