package bench

import (
	"context"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/viccon/sturdyc"

	"github.com/herdcache/herd"
	"github.com/herdcache/herd/store/memory"
)

// batchKeys is how many keys one bulk read asks for.
const batchKeys = 100

// BenchmarkGetMany100: one bulk read of 100 keys, herd's GetMany against
// sturdyc's GetOrFetchBatch, in memory. hit: every key cached; miss: every
// key cold, loaded by one instant batch loader call. Reported: batch
// loader calls per bulk read (1 is the goal on a miss).
func BenchmarkGetMany100(b *testing.B) {
	type impl struct {
		name  string
		build func(load sturdyc.BatchFetchFn[int]) (getMany func(ctx context.Context, ids []string) (map[string]int, error), close func())
	}
	impls := []impl{
		{"herd", func(load sturdyc.BatchFetchFn[int]) (func(context.Context, []string) (map[string]int, error), func()) {
			c := herd.New[int](memory.New[int](memory.MaxEntries(capacity)), herd.TTL(ttl))
			getMany := func(ctx context.Context, ids []string) (map[string]int, error) {
				return c.GetMany(ctx, ids, herd.BatchLoader[int](load))
			}
			return getMany, func() { _ = c.Close(context.Background()) }
		}},
		{"sturdyc", func(load sturdyc.BatchFetchFn[int]) (func(context.Context, []string) (map[string]int, error), func()) {
			c := sturdyc.New[int](capacity, 64, ttl, 10, sturdyc.WithNoContinuousEvictions())
			keyFn := c.BatchKeyFn("k")
			getMany := func(ctx context.Context, ids []string) (map[string]int, error) {
				return c.GetOrFetchBatch(ctx, ids, keyFn, load)
			}
			return getMany, func() {}
		}},
	}
	for _, mode := range []string{"hit", "miss"} {
		for _, im := range impls {
			b.Run("mode="+mode+"/impl="+im.name, func(b *testing.B) {
				var calls atomic.Int64
				getMany, closeCache := im.build(func(_ context.Context, ids []string) (map[string]int, error) {
					calls.Add(1)
					out := make(map[string]int, len(ids))
					for _, id := range ids {
						out[id] = len(id)
					}
					return out, nil
				})
				b.Cleanup(closeCache)
				ctx := context.Background()
				ids := make([]string, batchKeys)
				fill := func(round int) {
					for i := range ids {
						ids[i] = "user:" + strconv.Itoa(round*batchKeys+i)
					}
				}
				fill(0)
				if mode == "hit" {
					if _, err := getMany(ctx, ids); err != nil {
						b.Fatal(err)
					}
					calls.Store(0)
				}
				round := 0
				b.ReportAllocs()
				for b.Loop() {
					if mode == "miss" {
						round++
						fill(round)
					}
					got, err := getMany(ctx, ids)
					if err != nil || len(got) != batchKeys {
						b.Fatalf("got %d values, %v", len(got), err)
					}
				}
				b.ReportMetric(float64(calls.Load())/float64(max(round, 1)), "calls/op")
			})
		}
	}
}

// BenchmarkBatchWindow: 1,000 goroutines each Get a distinct cold key at
// once; the source takes 5ms per call, whatever the number of keys. window:
// the Gets go through herd.Batch(MaxBatch(100), MaxWait(2ms)); none: a plain
// Loader, one call per key. Reported: source calls per round (the goal with
// the window: ⌈1000/100⌉ = 10, plus a few), against 1,000 without it.
func BenchmarkBatchWindow(b *testing.B) {
	const (
		callers  = 1000
		maxBatch = 100
	)
	for _, mode := range []string{"window", "none"} {
		b.Run("mode="+mode, func(b *testing.B) {
			var calls, keysAsked atomic.Int64
			batchLoad := func(_ context.Context, ids []string) (map[string]int, error) {
				calls.Add(1)
				keysAsked.Add(int64(len(ids)))
				time.Sleep(5 * time.Millisecond)
				out := make(map[string]int, len(ids))
				for _, id := range ids {
					out[id] = len(id)
				}
				return out, nil
			}
			load := herd.Loader[int](func(ctx context.Context, id string) (int, error) {
				vs, err := batchLoad(ctx, []string{id})
				return vs[id], err
			})
			if mode == "window" {
				load = herd.Batch(batchLoad, herd.MaxBatch(maxBatch), herd.MaxWait(2*time.Millisecond),
					herd.MaxConcurrentBatches(callers/maxBatch))
			}
			c := herd.New[int](memory.New[int](memory.MaxEntries(capacity)), herd.TTL(ttl))
			b.Cleanup(func() { _ = c.Close(context.Background()) })
			ctx := context.Background()
			round := 0
			for b.Loop() {
				round++
				var wg sync.WaitGroup
				start := make(chan struct{})
				for i := range callers {
					key := "cold:" + strconv.Itoa(round) + ":" + strconv.Itoa(i)
					wg.Go(func() {
						<-start
						if _, err := c.Get(ctx, key, load); err != nil {
							b.Error(err)
						}
					})
				}
				close(start)
				wg.Wait()
			}
			b.ReportMetric(float64(calls.Load())/float64(round), "calls/op")
			b.ReportMetric(float64(keysAsked.Load())/float64(calls.Load()), "keys/call")
		})
	}
}

// BenchmarkGetMany100Ratio is BenchmarkGetMany100 for herd and sturdyc in
// alternating blocks of 64 bulk reads, each block timed on its own, so that
// the drift of a shared machine's load falls on both alike. It reports the
// time of each per bulk read and their ratio (herd/sturdyc): the target is
// at most 1.
func BenchmarkGetMany100Ratio(b *testing.B) {
	const block = 64
	for _, mode := range []string{"hit", "miss"} {
		b.Run("mode="+mode, func(b *testing.B) {
			load := func(_ context.Context, ids []string) (map[string]int, error) {
				out := make(map[string]int, len(ids))
				for _, id := range ids {
					out[id] = len(id)
				}
				return out, nil
			}
			h := herd.New[int](memory.New[int](memory.MaxEntries(capacity)), herd.TTL(ttl))
			b.Cleanup(func() { _ = h.Close(context.Background()) })
			s := sturdyc.New[int](capacity, 64, ttl, 10, sturdyc.WithNoContinuousEvictions())
			keyFn := s.BatchKeyFn("k")
			ctx := context.Background()
			ids := func(round int) [][]string {
				all := make([][]string, block)
				for r := range all {
					all[r] = make([]string, batchKeys)
					for i := range all[r] {
						n := i
						if mode == "miss" {
							n += (round*block + r) * batchKeys
						}
						all[r][i] = "user:" + strconv.Itoa(n)
					}
				}
				return all
			}
			timed := func(get func([]string) (map[string]int, error), reads [][]string) time.Duration {
				start := time.Now()
				for _, ks := range reads {
					if got, err := get(ks); err != nil || len(got) != batchKeys {
						b.Fatalf("got %d values, %v", len(got), err)
					}
				}
				return time.Since(start)
			}
			getHerd := func(ks []string) (map[string]int, error) { return h.GetMany(ctx, ks, load) }
			getSturdyc := func(ks []string) (map[string]int, error) { return s.GetOrFetchBatch(ctx, ks, keyFn, load) }
			if mode == "hit" {
				warm := ids(0)
				timed(getHerd, warm)
				timed(getSturdyc, warm)
			}
			var inHerd, inSturdyc time.Duration
			reads, round := 0, 0
			for b.Loop() {
				b.StopTimer()
				reads1 := ids(round)
				round++
				b.StartTimer()
				inHerd += timed(getHerd, reads1)
				inSturdyc += timed(getSturdyc, reads1)
				reads += block
			}
			b.ReportMetric(float64(inHerd.Nanoseconds())/float64(reads), "herd-ns/read")
			b.ReportMetric(float64(inSturdyc.Nanoseconds())/float64(reads), "sturdyc-ns/read")
			b.ReportMetric(float64(inHerd)/float64(inSturdyc), "herd/sturdyc")
		})
	}
}
