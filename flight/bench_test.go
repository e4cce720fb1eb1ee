package flight_test

import (
	"context"
	"strconv"
	"sync"
	"testing"

	"golang.org/x/sync/singleflight"

	"github.com/herdcache/herd/flight"
)

// The benchmarks run herd's flight and x/sync's singleflight on the same work,
// so that `go test -bench . ./flight | benchstat` shows their ratio.

func BenchmarkUncontended(b *testing.B) {
	ctx := context.Background()
	b.Run("impl=flight", func(b *testing.B) {
		var g flight.Group[string, int]
		fn := func(context.Context) (int, error) { return 1, nil }
		b.ReportAllocs()
		for b.Loop() {
			if _, err := g.Do(ctx, "k", fn); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("impl=x-sync", func(b *testing.B) {
		var g singleflight.Group
		fn := func() (any, error) { return 1, nil }
		b.ReportAllocs()
		for b.Loop() {
			if _, err, _ := g.Do("k", fn); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// BenchmarkOneKeyThousandCallers measures one round of 1000 callers on one
// key whose function waits until every caller has arrived.
func BenchmarkOneKeyThousandCallers(b *testing.B) {
	const callers = 1000
	ctx := context.Background()
	round := func(b *testing.B, do func(key string, fn func() int)) {
		b.Helper()
		b.ReportAllocs()
		i := 0
		for b.Loop() {
			key := strconv.Itoa(i)
			i++
			var arrived, wg sync.WaitGroup
			arrived.Add(callers)
			fn := func() int { arrived.Wait(); return 1 }
			for range callers {
				wg.Go(func() {
					arrived.Done()
					do(key, fn)
				})
			}
			wg.Wait()
		}
	}
	b.Run("impl=flight", func(b *testing.B) {
		var g flight.Group[string, int]
		round(b, func(key string, fn func() int) {
			_, _ = g.Do(ctx, key, func(context.Context) (int, error) { return fn(), nil })
		})
	})
	b.Run("impl=x-sync", func(b *testing.B) {
		var g singleflight.Group
		round(b, func(key string, fn func() int) {
			_, _, _ = g.Do(key, func() (any, error) { return fn(), nil })
		})
	})
}
