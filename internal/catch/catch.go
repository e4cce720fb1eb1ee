// Package catch is the one place where herd runs a user function and tells
// how it ended: it returned, it panicked (the panic is recovered, with its
// value and the stack where it happened), or it called runtime.Goexit.
//
// Telling a panic from a Goexit takes a deferred function and a flag set
// after the call returns: recover returns the panic's value in the first
// case and nil in the second (since Go 1.21 a panic(nil) is a
// *runtime.PanicNilError, so nil means Goexit). Every package of herd that
// runs user code (a loader, a fetch, a sync function, an observer) does it
// through [Call], so that the rule is written once.
package catch

import (
	"bytes"
	"runtime/debug"
)

// A Panic is a recovered panic: the value passed to panic and the stack of
// the goroutine that panicked.
type Panic struct {
	Value any
	// Stack is the stack as debug.Stack gives it, without its first line:
	// that line names the goroutine and its state ("goroutine 7
	// [running]:"), which is stale by the time another goroutine reads it,
	// as golang.org/x/sync/singleflight also trims it.
	Stack []byte
}

// Call calls fn on the calling goroutine and returns nil when fn returns,
// or the panic, recovered, when fn panics. When fn calls runtime.Goexit,
// Call does not return: onGoexit, if it is not nil, runs while the
// goroutine unwinds, and the goroutine then goes on exiting, as it would
// without Call.
//
// Call allocates nothing when fn returns, unless fn itself does.
func Call(fn func(), onGoexit func()) (p *Panic) {
	returned := false
	defer func() {
		if returned {
			return
		}
		if r := recover(); r != nil {
			p = New(r)
			return
		}
		if onGoexit != nil {
			onGoexit()
		}
	}()
	fn()
	returned = true
	return nil
}

// New returns the Panic of the value v with the stack of the calling
// goroutine. Call it from the deferred function that recovered v, so that
// the stack shows where the panic happened.
func New(v any) *Panic {
	stack := debug.Stack()
	if i := bytes.IndexByte(stack, '\n'); i >= 0 {
		stack = stack[i+1:]
	}
	return &Panic{Value: v, Stack: stack}
}

// Unwound calls fn and, if fn does not return (it panics or calls
// runtime.Goexit), calls unwound while the goroutine unwinds, without
// stopping either: a panic goes on with the stack where it happened.
func Unwound(fn func(), unwound func()) {
	returned := false
	defer func() {
		if !returned {
			unwound()
		}
	}()
	fn()
	returned = true
}
