package callgroup

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"sync"
	"testing"
	"testing/synctest"

	"github.com/herdcache/herd/internal/catch"
)

// inFlight returns the number of keys in the in-flight map, and whether the
// map is allocated at all.
func (g *Group[K, V, E]) inFlight() (int, bool) {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.calls.Len(), g.calls.Len() > 0
}

func TestInFlightMapHoldsOnlyKeysInFlight(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var g Group[int, int, errsForMap]
		const keys = 10_000
		release := make(chan struct{})
		done := make(chan struct{}, keys)
		for k := range keys {
			go func() {
				_, _ = g.do(context.Background(), k, func(context.Context) (int, error) {
					<-release
					return k, nil
				})
				done <- struct{}{}
			}()
		}
		synctest.Wait()
		if n, _ := g.inFlight(); n != keys {
			t.Fatalf("%d keys in flight, want %d", n, keys)
		}
		close(release)
		for range keys {
			<-done
		}
		n, allocated := g.inFlight()
		if n != 0 {
			t.Fatalf("%d keys left in the map after every call finished", n)
		}
		if allocated {
			t.Fatal("the in-flight map is still allocated after a burst of 10,000 keys drained")
		}
	})
}

func TestAbandonedCallLeavesTheMap(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		g := Group[int, int, errsForMap]{CancelWhenAbandoned: true}
		for k := range 100 {
			ctx, cancel := context.WithCancel(context.Background())
			go func() {
				_, _ = g.do(ctx, k, func(ctx context.Context) (int, error) {
					<-ctx.Done()
					return 0, ctx.Err()
				})
			}()
			synctest.Wait()
			cancel()
		}
		synctest.Wait()
		if n, _ := g.inFlight(); n != 0 {
			t.Fatalf("%d abandoned calls left in the map", n)
		}
	})
}

// heapAfterGC returns the bytes of live heap objects after a full collection.
func heapAfterGC() uint64 {
	var ms runtime.MemStats
	runtime.GC()
	runtime.GC()
	runtime.ReadMemStats(&ms)
	return ms.HeapAlloc
}

// Go maps never shrink: a map that held 100,000 keys keeps their buckets
// after every key but one is deleted. The in-flight map used to be released
// only once it was empty, so a burst that drained while one slow call stayed
// in flight kept megabytes until that call ended.
func TestRegressionFlightMapShrinksAfterBurst(t *testing.T) {
	const burst = 100_000
	var g Group[int, int, errsForMap]
	slow := make(chan struct{})
	slowDone := make(chan struct{})
	go func() {
		defer close(slowDone)
		_, _ = g.do(context.Background(), -1, func(context.Context) (int, error) {
			<-slow
			return 0, nil
		})
	}()
	waitInFlight(&g, 1)

	release := make(chan struct{})
	var calls sync.WaitGroup
	calls.Add(burst)
	// Each caller leaves as soon as its call has started, so that only the
	// call's own goroutine stays.
	const callers = 8
	var started sync.WaitGroup
	for c := range callers {
		started.Go(func() {
			for k := c; k < burst; k += callers {
				ctx, cancel := context.WithCancel(context.Background())
				_, _ = g.do(ctx, k, func(context.Context) (int, error) {
					defer calls.Done()
					cancel()
					<-release
					return k, nil
				})
			}
		})
	}
	started.Wait()
	if n, _ := g.inFlight(); n != burst+1 {
		t.Fatalf("%d keys in flight, want %d", n, burst+1)
	}
	close(release)
	calls.Wait()
	waitInFlight(&g, 1)
	drained := heapAfterGC()
	close(slow)
	<-slowDone
	waitInFlight(&g, 0)
	excess := int64(drained) - int64(heapAfterGC())

	// The map of 100,000 keys holds more than 2 MiB.
	const slack = 64 << 10
	if excess > slack {
		t.Fatalf("after a burst of %d keys drained to one, the in-flight map holds %d KiB more than none (allowed: %d KiB)",
			burst, excess>>10, slack>>10)
	}
}

// waitInFlight waits until n keys are in g's in-flight map.
func waitInFlight(g *Group[int, int, errsForMap], n int) {
	for {
		if got, _ := g.inFlight(); got == n {
			return
		}
		runtime.Gosched()
	}
}

// errsForMap makes the errors of the groups of the map tests, which never
// see a panic or a Goexit.
type errsForMap struct{}

func (errsForMap) Panic(p *catch.Panic) error { return fmt.Errorf("panic: %v", p.Value) }
func (errsForMap) Goexit() error              { return errors.New("goexit") }

func (g *Group[K, V, E]) do(ctx context.Context, key K, fn func(context.Context) (V, error)) (V, error) {
	v, _, _, err := g.Do(ctx, key, Task[K, V]{Plain: fn})
	return v, err
}
