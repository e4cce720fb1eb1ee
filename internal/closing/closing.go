// Package closing is the one implementation of herd's Close contract: Close
// is idempotent, every call waits for the same shutdown within its own
// context, and a call whose context ends first returns "pkg: close: ..."
// wrapping ctx.Err() while the shutdown goes on.
package closing

import (
	"context"
	"fmt"
	"sync"
)

// A Once runs a shutdown once and lets every Close call wait for it. The
// zero value is ready to use.
type Once struct {
	once sync.Once
	done chan struct{}
	err  error
}

// Close runs begin on the first call, synchronously (to mark the owner
// closed before Close returns), then finish on a goroutine of its own, and
// waits within ctx for finish to return. It returns finish's error, or, if
// ctx ends first, an error naming pkg and wrapping ctx.Err().
func (o *Once) Close(ctx context.Context, pkg string, begin func(), finish func() error) error {
	o.once.Do(func() {
		o.done = make(chan struct{})
		begin()
		go func() {
			o.err = finish()
			close(o.done)
		}()
	})
	select {
	case <-o.done:
		return o.err
	case <-ctx.Done():
		return fmt.Errorf("%s: close: %w", pkg, ctx.Err())
	}
}
