// Package flight provides a generic, context-aware duplicate call suppression
// mechanism: however many goroutines ask for the same key at once, one function
// call runs and every caller shares its result.
//
//	var g flight.Group[string, User] // the zero value is ready
//	u, err := g.Do(ctx, "user:42", func(ctx context.Context) (User, error) {
//		id, _ := flight.KeyFromContext[string](ctx)
//		return db.LoadUser(ctx, id)
//	})
//
// # Guarantees
//
// A [Group] runs at most one call per key at a time and shares its result
// with every caller of the key that arrives while it runs. Results are not
// kept: a call that starts after the previous one finished runs the function
// again, and [Group.Forget] makes the next caller start a new call at once.
//
// It differs from golang.org/x/sync/singleflight in four ways that matter to a
// cache in front of a slow source:
//
//   - Each caller waits on its own context. A caller whose context ends returns
//     ctx.Err() at once; the call goes on for the others (see
//     [Group.CancelWhenAbandoned] for when none is left). This includes the
//     caller that started the call. A caller whose context has already ended
//     neither starts nor joins a call, and no caller ever joins a call that
//     was cancelled.
//   - The function runs on a context detached from every caller's
//     cancellation (as [context.WithoutCancel] of the first caller's context,
//     so values such as trace ids survive) that carries the key
//     ([KeyFromContext]).
//   - A panic in the function never crashes the process: every waiter gets
//     a [*PanicError] with the panic's value and stack.
//   - Keys and values are typed.
//
// # Costs
//
// Callers that join a call cost no more than with x/sync. The call itself
// costs one goroutine (not one per caller), about a microsecond on the
// first caller's path, when the first caller's context can end; one
// allocation and no goroutine when it cannot (see "Where the function
// runs"). The map of calls in flight holds only the keys in flight: once a
// burst of keys has drained, the map is replaced by one sized for what is
// left, so memory returns to its idle size.
//
// # Errors
//
// [Group.Do] returns the function's error, as the function returned it, to
// every caller that shared the call, and ctx.Err() to a caller whose context
// ends first. A panic in the function reaches every waiter as a
// [*PanicError], a [runtime.Goexit] (from testing.T.FailNow, for example) as
// [ErrGoexit], except to the caller on whose goroutine the function ran:
// that goroutine ends (see "Where the function runs"). In both cases the
// key is free again for the next caller. A nil context is a programming
// error: Do panics with "flight: nil Context" before it takes any lock, as
// the standard library does.
//
// # Lifecycle
//
// A Group needs no constructor and no Close: the zero value is ready. The
// only goroutine it starts is a call's own, which returns when the function
// does, also after every caller has left, unless CancelWhenAbandoned (set
// before the Group's first use) cancels the function's context. A Group
// must not be copied after first use.
//
// # Where the function runs
//
// When the first caller's context can end, the function runs on a goroutine
// of its own, so that the caller can leave. When it cannot
// (context.Background and its values), the function runs on that caller's
// goroutine, which would only wait otherwise, as x/sync's does. A
// runtime.Goexit in the function then ends that caller's goroutine, as it
// would without a Group, and every other waiter gets ErrGoexit; on a
// goroutine of its own, every waiter gets ErrGoexit.
package flight

import (
	"context"
	"errors"
	"fmt"
	"sync"

	"github.com/herdcache/herd/internal/callgroup"
	"github.com/herdcache/herd/internal/catch"
)

// ErrGoexit is returned to the waiters of a call whose function called
// [runtime.Goexit] (for example through testing.T.FailNow); see "Where the
// function runs" in the package documentation.
var ErrGoexit = errors.New("flight: function called runtime.Goexit")

// PanicError is returned to every waiter of a call whose function panicked.
// It keeps the value passed to panic and the stack of the panicking goroutine.
// Every herd package reports a recovered panic of a user function (a loader,
// a fetch, a sync function) as a *PanicError.
type PanicError struct {
	// Value is the value the function panicked with.
	Value any
	// Stack is the stack trace of the panicking goroutine, as debug.Stack
	// gives it without its first line: that line names the goroutine and its
	// state ("goroutine 7 [running]:"), which is stale by the time the error
	// reaches a caller on another goroutine, as x/sync's singleflight also
	// trims it.
	Stack []byte
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

// errs makes flight's errors for the call group.
type errs struct{}

func (errs) Panic(p *catch.Panic) error { return &PanicError{Value: p.Value, Stack: p.Stack} }
func (errs) Goexit() error              { return ErrGoexit }

// A Group runs at most one call per key at a time and shares its result with
// every caller of that key that arrives while it runs. Results are not kept:
// a call that starts after the previous one finished runs the function again.
//
// The zero value is ready to use. A Group must not be copied after first use.
type Group[K comparable, V any] struct {
	// CancelWhenAbandoned decides what happens to a call once every caller
	// waiting on it has returned early on its own context. Set it before
	// the Group's first use; later changes are ignored.
	//
	// false (the default): the call runs to completion and its result is
	// dropped. This is what a cache wants: the load still fills the cache for
	// the next caller.
	//
	// true: the call's context is cancelled. The key is free at once, so a
	// caller arriving afterwards starts a new call; it never joins the
	// cancelled one.
	CancelWhenAbandoned bool

	once sync.Once
	g    callgroup.Group[K, V, errs]
}

// Do calls fn once for every group of concurrent callers of key and returns
// its result to each of them.
//
// If ctx ends before the result is ready, Do returns ctx.Err() at once; the
// call itself goes on for the other callers. If ctx has already ended, Do
// returns ctx.Err() without starting or joining a call. A nil ctx panics,
// before any lock is taken.
//
// fn runs with a context that carries the key (see [KeyFromContext]) and
// the values of the first caller's ctx but not its cancellation (see "Where
// the function runs" in the package documentation). A panic in fn is
// returned to every waiter as a [*PanicError], a [runtime.Goexit] as
// [ErrGoexit] (except to the caller on whose goroutine fn ran: that
// goroutine ends); in both cases the key is free again for the next caller.
func (g *Group[K, V]) Do(ctx context.Context, key K, fn func(context.Context) (V, error)) (V, error) {
	v, _, err := g.DoShared(ctx, key, fn)
	return v, err
}

// DoShared is [Group.Do] that also reports whether the result was given to
// more than one caller. shared is false for a caller that returns ctx.Err()
// on its own context.
func (g *Group[K, V]) DoShared(ctx context.Context, key K, fn func(context.Context) (V, error)) (v V, shared bool, err error) {
	g.once.Do(func() { g.g.CancelWhenAbandoned = g.CancelWhenAbandoned })
	v, shared, _, err = g.g.Do(ctx, key, callgroup.Task[K, V]{Plain: fn})
	return v, shared, err
}

// Forget tells the group to start a new call for the next caller of key
// instead of joining the one in flight, if any. The call in flight still
// returns its result to the callers already waiting on it.
func (g *Group[K, V]) Forget(key K) { g.g.Forget(key) }

// KeyFromContext returns the key of the call whose function runs on ctx, and
// whether ctx carries a key of type K.
func KeyFromContext[K comparable](ctx context.Context) (K, bool) {
	return callgroup.KeyFromContext[K](ctx)
}
