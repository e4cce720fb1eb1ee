package bench

import (
	"context"
	"runtime"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// BenchmarkStampede: 2,000 callers ask for one cold key at once; the loader
// takes 20ms. Reported: loads per stampede (1 is the goal) and the time of
// the whole stampede.
func BenchmarkStampede(b *testing.B) {
	const callers = 2000
	for _, im := range impls {
		b.Run("impl="+im.name, func(b *testing.B) {
			var loads atomic.Int64
			c := im.build(func(ctx context.Context, key string) (int, error) {
				loads.Add(1)
				time.Sleep(20 * time.Millisecond)
				return len(key), nil
			})
			b.Cleanup(c.close)
			ctx := context.Background()
			round := 0
			for b.Loop() {
				key := "cold:" + strconv.Itoa(round)
				round++
				var wg sync.WaitGroup
				start := make(chan struct{})
				for range callers {
					wg.Go(func() {
						<-start
						if _, err := c.get(ctx, key); err != nil {
							b.Error(err)
						}
					})
				}
				close(start)
				wg.Wait()
			}
			b.ReportMetric(float64(loads.Load())/float64(round), "loads/op")
		})
	}
}

// BenchmarkMissCoalescing: GOMAXPROCS goroutines read keys that are each
// missed by several of them at once; the loader is instant, so this is the
// cost of the miss path itself, coalescing included.
func BenchmarkMissCoalescing(b *testing.B) {
	for _, im := range impls {
		b.Run("impl="+im.name, func(b *testing.B) {
			c := im.build(constLoad)
			b.Cleanup(c.close)
			ctx := context.Background()
			var next atomic.Int64
			b.ReportAllocs()
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					// Consecutive operations share a key four at a time.
					k := "miss:" + strconv.FormatInt(next.Add(1)/4, 10)
					if _, err := c.get(ctx, k); err != nil {
						b.Error(err)
						return
					}
				}
			})
		})
	}
}

// BenchmarkMiss: one goroutine reads keys that are not cached yet; the
// loader is instant, so this is the cost of the miss path alone, without
// coalescing: a lookup, the load and the store write.
func BenchmarkMiss(b *testing.B) {
	for _, im := range impls {
		b.Run("impl="+im.name, func(b *testing.B) {
			c := im.build(constLoad)
			b.Cleanup(c.close)
			ctx := context.Background()
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				if _, err := c.get(ctx, "miss:"+strconv.Itoa(i)); err != nil {
					b.Fatal(err)
				}
				i++
			}
		})
	}
}

// BenchmarkMemoryPerEntry loads 1M entries of an int under 16-byte keys and
// reports the live heap they take, per entry.
func BenchmarkMemoryPerEntry(b *testing.B) {
	const entries = 1_000_000
	ks := keys(entries)
	ctx := context.Background()
	for _, im := range impls {
		b.Run("impl="+im.name, func(b *testing.B) {
			for b.Loop() {
				before := liveHeap()
				c := im.build(constLoad)
				for _, k := range ks {
					if _, err := c.get(ctx, k); err != nil {
						b.Fatal(err)
					}
				}
				// Close waits for the loads in flight and their store writes;
				// the entries stay reachable through c.
				c.close()
				after := liveHeap()
				b.ReportMetric(float64(after-before)/entries, "B/entry")
				runtime.KeepAlive(c)
			}
		})
	}
}

func liveHeap() uint64 {
	runtime.GC()
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapAlloc
}
