package bench

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/maypok86/otter/v2"
	"github.com/viccon/sturdyc"

	"github.com/herdcache/herd"
	"github.com/herdcache/herd/store/memory"
)

// BenchmarkStaleHit reads keys that are all stale while their refreshes
// block in the loader: the latency of serving stale-while-revalidate while
// each key's refresh is queued or running (herd's queue holds every key, as
// otter's and sturdyc's refreshes are unbounded). Only the caches with a
// background refresh take part: herd (RefreshAfter), otter
// (RefreshCalculator) and sturdyc (early refreshes).
func BenchmarkStaleHit(b *testing.B) {
	ks := keys(hotKeys)
	ctx := context.Background()
	type staleCache struct {
		get   func(key string) (int, error)
		close func()
	}
	builds := []struct {
		name  string
		build func(load loadFunc) staleCache
	}{
		{"herd", func(load loadFunc) staleCache {
			c := herd.New(memory.New[int](memory.MaxEntries(capacity)),
				herd.TTL(time.Hour), herd.RefreshAfter(time.Millisecond), herd.Workers(4), herd.QueueSize(hotKeys))
			return staleCache{
				get:   func(k string) (int, error) { return c.Get(ctx, k, herd.Loader[int](load)) },
				close: func() { _ = c.Close(context.Background()) },
			}
		}},
		{"otter", func(load loadFunc) staleCache {
			c := otter.Must(&otter.Options[string, int]{
				MaximumSize:       capacity,
				ExpiryCalculator:  otter.ExpiryWriting[string, int](time.Hour),
				RefreshCalculator: otter.RefreshWriting[string, int](time.Millisecond),
			})
			l := otter.LoaderFunc[string, int](load)
			return staleCache{
				get:   func(k string) (int, error) { return c.Get(ctx, k, l) },
				close: func() { c.StopAllGoroutines() },
			}
		}},
		{"sturdyc", func(load loadFunc) staleCache {
			c := sturdyc.New[int](capacity, 64, time.Hour, 10, sturdyc.WithNoContinuousEvictions(),
				sturdyc.WithEarlyRefreshes(time.Millisecond, 2*time.Millisecond, time.Hour, time.Second))
			return staleCache{
				get: func(k string) (int, error) {
					return c.GetOrFetch(context.WithValue(ctx, keyInContext{}, k), k, func(ctx context.Context) (int, error) {
						return load(ctx, k)
					})
				},
				close: func() {},
			}
		}},
	}
	for _, bc := range builds {
		b.Run("impl="+bc.name, func(b *testing.B) {
			block := make(chan struct{})
			var warm atomic.Bool
			c := bc.build(func(ctx context.Context, key string) (int, error) {
				if warm.Load() {
					<-block // refreshes hang: every read is served stale
				}
				return len(key), nil
			})
			for _, k := range ks {
				if _, err := c.get(k); err != nil {
					b.Fatal(err)
				}
			}
			time.Sleep(10 * time.Millisecond) // every entry is now stale
			warm.Store(true)
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				if _, err := c.get(ks[i&(hotKeys-1)]); err != nil {
					b.Fatal(err)
				}
				i++
			}
			b.StopTimer()
			close(block)
			c.close()
		})
	}
}

// BenchmarkStaleHitRatio measures a herd stale hit against a herd fresh hit
// in alternating blocks of 1,024 reads, timed block by block, so that the
// drift of a shared machine's load falls on both alike. It reports the
// time of each per read and their ratio (stale/fresh): the target is at
// most 1.2.
func BenchmarkStaleHitRatio(b *testing.B) {
	ks := keys(hotKeys)
	ctx := context.Background()
	fresh := herd.New(memory.New[int](memory.MaxEntries(capacity)), herd.TTL(time.Hour))
	defer func() { _ = fresh.Close(context.Background()) }()
	block := make(chan struct{})
	var warm atomic.Bool
	staleLoad := func(ctx context.Context, key string) (int, error) {
		if warm.Load() {
			<-block // refreshes hang: every read is served stale
		}
		return len(key), nil
	}
	stale := herd.New(memory.New[int](memory.MaxEntries(capacity)),
		herd.TTL(time.Hour), herd.RefreshAfter(time.Millisecond), herd.Workers(4), herd.QueueSize(hotKeys))
	defer func() { _ = stale.Close(context.Background()) }()
	defer close(block)
	for _, k := range ks {
		if _, err := fresh.Get(ctx, k, constLoad); err != nil {
			b.Fatal(err)
		}
		if _, err := stale.Get(ctx, k, staleLoad); err != nil {
			b.Fatal(err)
		}
	}
	time.Sleep(10 * time.Millisecond) // every entry of stale is now stale
	warm.Store(true)
	for _, k := range ks { // queues every refresh
		if _, err := stale.Get(ctx, k, staleLoad); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportAllocs()
	var inFresh, inStale time.Duration
	reads := 0
	for b.Loop() {
		t0 := time.Now()
		for _, k := range ks {
			if _, err := fresh.Get(ctx, k, constLoad); err != nil {
				b.Fatal(err)
			}
		}
		t1 := time.Now()
		for _, k := range ks {
			if _, err := stale.Get(ctx, k, staleLoad); err != nil {
				b.Fatal(err)
			}
		}
		inFresh += t1.Sub(t0)
		inStale += time.Since(t1)
		reads += len(ks)
	}
	if st := stale.Stats(); st.Hits != 0 {
		b.Fatalf("%d fresh hits on the stale cache", st.Hits)
	}
	b.ReportMetric(float64(inFresh.Nanoseconds())/float64(reads), "fresh-ns/read")
	b.ReportMetric(float64(inStale.Nanoseconds())/float64(reads), "stale-ns/read")
	b.ReportMetric(float64(inStale)/float64(inFresh), "stale/fresh")
}
