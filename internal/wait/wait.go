// Package wait holds the one select that every herd package uses to wait for
// a result on a caller's context.
package wait

import "context"

// For waits until done is closed or ctx ends, and reports whether done was
// closed. When both have happened by the time it looks, done wins: a result
// that has arrived is never dropped for a context that ended at the same
// moment, which a single select would do half of the time.
//
// For does not look at ctx before it waits: a closed done is reported even on
// a context that has already ended.
func For(ctx context.Context, done <-chan struct{}) bool {
	select {
	case <-done:
		return true
	case <-ctx.Done():
	}
	select {
	case <-done:
		return true
	default:
		return false
	}
}
