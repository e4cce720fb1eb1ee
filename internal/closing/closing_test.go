package closing_test

import (
	"context"
	"errors"
	"testing"
	"testing/synctest"
	"time"

	"github.com/herdcache/herd/internal/closing"
)

func TestEveryCallWaitsForTheSameShutdown(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var o closing.Once
		begins := 0
		boom := errors.New("store close failed")
		finish := func() error { time.Sleep(time.Second); return boom }
		ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
		defer cancel()
		if err := o.Close(ctx, "pkg", func() { begins++ }, finish); !errors.Is(err, context.DeadlineExceeded) || err.Error() != "pkg: close: context deadline exceeded" {
			t.Fatalf("Close past its context: %v", err)
		}
		for range 2 {
			if err := o.Close(context.Background(), "pkg", func() { begins++ }, finish); !errors.Is(err, boom) {
				t.Fatalf("Close: %v, want the shutdown's error", err)
			}
		}
		if begins != 1 {
			t.Fatalf("begin ran %d times", begins)
		}
	})
}
