package flight

import (
	"context"
	"testing"
	"testing/synctest"
)

// inFlight returns the number of keys in the in-flight map, and whether the
// map is allocated at all.
func (g *Group[K, V]) inFlight() (int, bool) {
	g.mu.Lock()
	defer g.mu.Unlock()
	return len(g.m), g.m != nil
}

func TestInFlightMapHoldsOnlyKeysInFlight(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var g Group[int, int]
		const keys = 10_000
		release := make(chan struct{})
		done := make(chan struct{}, keys)
		for k := range keys {
			go func() {
				_, _ = g.Do(context.Background(), k, func(context.Context) (int, error) {
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
		g := Group[int, int]{CancelWhenAbandoned: true}
		for k := range 100 {
			ctx, cancel := context.WithCancel(context.Background())
			go func() {
				_, _ = g.Do(ctx, k, func(ctx context.Context) (int, error) {
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
