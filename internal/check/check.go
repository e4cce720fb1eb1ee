// Package check words the panics of programming errors alike in every herd
// package, and is the one place that checks them: a nil context ("pkg: nil
// Context", as the standard library words it), an option out of range
// ("pkg: Name must be ..., got X"), a required argument missing ("pkg:
// Func needs a ..., got nil"). Options are constants of a program and
// contexts come from the caller's code, so these are bugs, reported where
// they happen and before any lock is taken.
package check

import (
	"context"
	"fmt"
)

// That panics with pkg, a colon and the formatted message when ok is false.
func That(ok bool, pkg, format string, args ...any) {
	if !ok {
		panic(pkg + ": " + fmt.Sprintf(format, args...))
	}
}

// Context panics with "pkg: nil Context" when ctx is nil.
func Context(ctx context.Context, pkg string) {
	if ctx == nil {
		panic(pkg + ": nil Context")
	}
}

// Positive returns v, or panics with "pkg: name must be positive, got v"
// when v is zero or negative.
func Positive[T ~int | ~int64 | ~float64](pkg, name string, v T) T {
	That(v > 0, pkg, "%s must be positive, got %v", name, v)
	return v
}

// NotNil panics with a message naming the option if v is nil, and returns v:
// "pkg: name must be given a what, got nil".
func NotNil[E any](pkg, name, what string, v *E) *E {
	That(v != nil, pkg, "%s must be given a %s, got nil", name, what)
	return v
}
