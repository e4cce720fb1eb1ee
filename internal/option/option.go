// Package option words the panics of options out of range alike in every
// herd package: "pkg: Name must be ..., got X". Options are constants of a
// program, so a wrong one is a programming error, reported where the value
// is applied.
package option

import "fmt"

// Check panics with pkg, a colon and the formatted message when ok is false.
func Check(ok bool, pkg, format string, args ...any) {
	if !ok {
		panic(pkg + ": " + fmt.Sprintf(format, args...))
	}
}

// Positive returns v, or panics with "pkg: name must be positive, got v"
// when v is zero or negative.
func Positive[T ~int | ~int64 | ~float64](pkg, name string, v T) T {
	Check(v > 0, pkg, "%s must be positive, got %v", name, v)
	return v
}

// NotNil panics with a message naming the option if v is nil, and returns v:
// "pkg: name must be given a what, got nil".
func NotNil[E any](pkg, name, what string, v *E) *E {
	Check(v != nil, pkg, "%s must be given a %s, got nil", name, what)
	return v
}
