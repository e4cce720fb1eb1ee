package reqcache_test

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"
	"weak"

	"github.com/herdcache/herd/reqcache"
)

// A function that fails on a deadline of its own used to be run again by
// every caller that shared it, one after the other, because its error was a
// context error while their contexts lived: the last of N waited N times as
// long. Which context ended decides now.
func TestRegressionReqcacheTimedOutCallRunsOncePerWaiter(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ctx := reqcache.With(t.Context())
		var n atomic.Int32
		fn := func(ctx context.Context) (string, error) {
			n.Add(1)
			ctx, cancel := context.WithTimeout(ctx, time.Second)
			defer cancel()
			<-ctx.Done()
			return "", fmt.Errorf("query: %w", ctx.Err())
		}
		const callers = 5
		out := startGets(ctx, callers, fn)
		for range callers {
			if r := <-out; !errors.Is(r.err, context.DeadlineExceeded) {
				t.Fatalf("a caller got %+v, want the shared DeadlineExceeded", r)
			}
		}
		if got := n.Load(); got != 1 {
			t.Fatalf("the function ran %d times for %d callers sharing it, want once", got, callers)
		}
	})
}

// An expired cache used to drop its entries at the next access only: a
// context held past the lifetime (by a goroutine that outlived its request)
// kept every value reachable for as long as it was held.
func TestRegressionReqcacheExpiredEntriesReleasedAtLifetime(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ctx := reqcache.With(context.Background(), reqcache.Lifetime(time.Minute), reqcache.WithLogger(discard))
		released := setCollectable(ctx)
		time.Sleep(time.Minute)
		synctest.Wait()
		if !released() {
			t.Fatal("a value is still reachable through the request's context after the cache's lifetime")
		}
		runtime.KeepAlive(ctx)
	})
}

// setCollectable stores a value in ctx's cache, keeping no other reference to
// it, and returns a function that reports whether it has been collected.
func setCollectable(ctx context.Context) func() bool {
	v := new([1 << 10]byte)
	reqcache.Set(ctx, "g", "big", v)
	w := weak.Make(v)
	return func() bool {
		runtime.GC()
		return w.Value() == nil
	}
}

// The cache ends, and lets go of its values, when the context it was
// attached to ends or at Close; an ended cache is no cache.
func TestCacheEndsWithItsContextOrClose(t *testing.T) {
	t.Run("context", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			parent, cancel := context.WithCancel(context.Background())
			ctx := reqcache.With(parent)
			released := setCollectable(ctx)
			if _, ok := reqcache.Peek[*[1 << 10]byte](ctx, "g", "big"); !ok {
				t.Fatal("the value is not cached")
			}
			cancel()
			synctest.Wait()
			if !released() {
				t.Fatal("a value is still reachable after the cache's context ended")
			}
			load, n := counter("v")
			mustGet(ctx, t, "g", "k", load, "v1")
			mustGet(ctx, t, "g", "k", load, "v2")
			if n.Load() != 2 {
				t.Fatalf("%d loads, want 2: an ended cache stores nothing", n.Load())
			}
		})
	})
	t.Run("Close", func(t *testing.T) {
		ctx := reqcache.With(context.Background())
		released := setCollectable(ctx)
		for range 2 {
			if err := reqcache.Close(ctx); err != nil {
				t.Fatalf("Close = %v", err)
			}
		}
		if !released() {
			t.Fatal("a value is still reachable after Close")
		}
		reqcache.Set(ctx, "g", "k", "set")
		if v, ok := reqcache.Peek[string](ctx, "g", "k"); ok {
			t.Fatalf("Peek after Close = %q, want nothing", v)
		}
		if err := reqcache.Close(context.Background()); err != nil {
			t.Fatalf("Close of a context without a cache = %v", err)
		}
	})
}

// The request cache it replaces could be asked whether a value is cached
// without a function to call on a miss; Get always needed one.
func TestRegressionReqcachePeekNeverLoadsOrWaits(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ctx := reqcache.With(t.Context())
		if v, ok := reqcache.Peek[string](ctx, "g", "k"); ok || v != "" {
			t.Fatalf("Peek of a missing key = %q, %v", v, ok)
		}
		release := make(chan struct{})
		out := startGets(ctx, 1, func(context.Context) (string, error) {
			<-release
			return "v", nil
		})
		synctest.Wait()
		if _, ok := reqcache.Peek[string](ctx, "g", "k"); ok {
			t.Fatal("Peek of a key in flight found a value")
		}
		close(release)
		<-out
		if v, ok := reqcache.Peek[string](ctx, "g", "k"); !ok || v != "v" {
			t.Fatalf("Peek after the load = %q, %v; want v, true", v, ok)
		}
		if v, ok := reqcache.Peek[int](ctx, "g", "k"); ok || v != 0 {
			t.Fatalf("Peek of another type = %d, %v; want a miss", v, ok)
		}
		if _, ok := reqcache.Peek[string](ctx, "other", "k"); ok {
			t.Fatal("Peek saw another group's entry")
		}
		if _, ok := reqcache.Peek[string](reqcache.Without(ctx), "g", "k"); ok {
			t.Fatal("Peek on a context from Without found a value")
		}
		if _, ok := reqcache.Peek[string](t.Context(), "g", "k"); ok {
			t.Fatal("Peek on a context without a cache found a value")
		}

		// A failed load leaves nothing to peek at.
		_, _ = reqcache.Get(ctx, "g", "failed", func(context.Context) (string, error) { return "", errBoom })
		if _, ok := reqcache.Peek[string](ctx, "g", "failed"); ok {
			t.Fatal("Peek found the result of a failed load")
		}
	})
}

func TestRegressionReqcacheOptionsOutOfRangePanic(t *testing.T) {
	for _, tc := range []struct {
		opt  func() reqcache.Option
		want string
	}{
		{func() reqcache.Option { return reqcache.Lifetime(0) }, "reqcache: Lifetime must be positive (reqcache.Forever turns the guard off), got 0s"},
		{func() reqcache.Option { return reqcache.Lifetime(-time.Second) }, "reqcache: Lifetime must be positive (reqcache.Forever turns the guard off), got -1s"},
		{func() reqcache.Option { return reqcache.MaxEntries(0) }, "reqcache: MaxEntries must be positive (reqcache.Unbounded turns the bound off), got 0"},
	} {
		t.Run(tc.want, func(t *testing.T) {
			for _, attach := range []func(reqcache.Option){
				func(o reqcache.Option) { reqcache.With(t.Context(), o) },
				func(o reqcache.Option) { reqcache.NewMiddleware(o) },
			} {
				func() {
					defer func() {
						if r := recover(); r != tc.want {
							t.Fatalf("panicked with %v, want %q", r, tc.want)
						}
					}()
					attach(tc.opt())
				}()
			}
		})
	}
}

func TestRegressionReqcacheNilContextPanics(t *testing.T) {
	for name, call := range map[string]func(){
		"With":    func() { reqcache.With(nil) },                            //nolint:staticcheck // SA1012: the point of the test
		"Without": func() { reqcache.Without(nil) },                         //nolint:staticcheck // SA1012: the point of the test
		"Get":     func() { _, _ = reqcache.Get(nil, "g", "k", counterFn) }, //nolint:staticcheck // SA1012: the point of the test
		"Peek":    func() { reqcache.Peek[string](nil, "g", "k") },          //nolint:staticcheck // SA1012: the point of the test
		"Set":     func() { reqcache.Set(nil, "g", "k", "v") },              //nolint:staticcheck // SA1012: the point of the test
		"Delete":  func() { reqcache.Delete(nil, "g", "k") },                //nolint:staticcheck // SA1012: the point of the test
		"Close":   func() { _ = reqcache.Close(nil) },                       //nolint:staticcheck // SA1012: the point of the test
	} {
		t.Run(name, func(t *testing.T) {
			defer func() {
				if r := recover(); r != "reqcache: nil Context" {
					t.Fatalf("%s(nil) panicked with %v, want reqcache: nil Context", name, r)
				}
			}()
			call()
		})
	}
}

func counterFn(context.Context) (string, error) { return "v", nil }
