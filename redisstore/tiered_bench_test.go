package redisstore_test

import (
	"context"
	"fmt"
	"runtime"
	"testing"
	"time"

	"github.com/herdcache/herd"
	"github.com/herdcache/herd/redisstore"
	"github.com/herdcache/herd/store"
	"github.com/herdcache/herd/store/memory"
	"github.com/herdcache/herd/store/storetest"
	"github.com/herdcache/herd/store/tiered"
)

// benchEntry is an entry fresh for the whole of a benchmark.
func benchEntry(v storetest.Value) store.Entry[storetest.Value] {
	now := time.Now()
	return store.Entry[storetest.Value]{
		Value: v, StoredAt: now,
		RefreshAt: now.Add(time.Hour), ExpiresAt: now.Add(2 * time.Hour), KeepUntil: now.Add(3 * time.Hour),
	}
}

// missLoad fails the benchmark's Get: every Get measured is a hit.
func missLoad(context.Context, string) (storetest.Value, error) {
	return storetest.Value{}, fmt.Errorf("miss in a benchmark of hits")
}

// benchFar returns a redisstore over a new client of srv, closed at the end
// of the benchmark.
func benchFar(b *testing.B, srv *redisServer, prefix string) *redisstore.Store[storetest.Value] {
	b.Helper()
	s := redisstore.New[storetest.Value](srv.client(b), redisstore.Prefix(prefix), redisstore.WithLogger(discard()))
	b.Cleanup(func() { _ = s.Close(context.Background()) })
	return s
}

// benchTiered returns a two-level store over far whose near copies last the
// whole benchmark, closed at the end of the benchmark.
func benchTiered(b *testing.B, far store.Versioned[storetest.Value]) *tiered.VersionedStore[storetest.Value] {
	b.Helper()
	s, err := tiered.NewVersioned[storetest.Value](far, tiered.NearTTL(time.Hour))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() {
		if err := s.Close(context.Background()); err != nil {
			b.Error(err)
		}
	})
	return s
}

// benchCache returns a cache over s, closed at the end of the benchmark.
func benchCache(b *testing.B, s store.Store[storetest.Value]) *herd.Cache[storetest.Value] {
	b.Helper()
	c := herd.New[storetest.Value](s, herd.TTL(time.Hour), herd.WithLogger(discard()))
	b.Cleanup(func() {
		if err := c.Close(context.Background()); err != nil {
			b.Error(err)
		}
	})
	return c
}

// mustHit fails b unless a Get of key on c returns want.
func mustHit(b *testing.B, c *herd.Cache[storetest.Value], key string, want storetest.Value) {
	b.Helper()
	got, err := c.Get(context.Background(), key, missLoad)
	if err != nil || got.Name != want.Name || got.N != want.N {
		b.Fatalf("Get(%q) = %+v, %v; want %+v", key, got, err, want)
	}
}

// BenchmarkFarHit compares a hit through a herd.Cache over redisstore (the
// far tier alone: one round trip and a decode) with a plain go-redis GET of
// the same key on the same server.
func BenchmarkFarHit(b *testing.B) {
	srv := startRedis(b)
	ctx := context.Background()
	far := benchFar(b, srv, "farhit")
	want := storetest.Value{Name: "user 42", N: 42}
	if err := far.Set(ctx, "k", benchEntry(want)); err != nil {
		b.Fatal(err)
	}
	cache := benchCache(b, far)
	mustHit(b, cache, "k", want)
	client := srv.client(b)
	key := far.Key("k")
	if n, err := client.Exists(ctx, key).Result(); err != nil || n != 1 {
		b.Fatalf("EXISTS %q = %d, %v; want 1", key, n, err)
	}

	b.Run("raw_get", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := client.Get(ctx, key).Bytes(); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("herd_redisstore", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := cache.Get(ctx, "k", missLoad); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// BenchmarkNearHit compares a hit through a herd.Cache over the two-level
// store over redisstore (served by the near tier) with a hit through a
// herd.Cache over the memory store.
func BenchmarkNearHit(b *testing.B) {
	srv := startRedis(b)
	ctx := context.Background()
	want := storetest.Value{Name: "user 42", N: 42}

	two := benchTiered(b, benchFar(b, srv, "nearhit"))
	if err := two.Set(ctx, "k", benchEntry(want)); err != nil {
		b.Fatal(err)
	}
	twoCache := benchCache(b, two)
	mustHit(b, twoCache, "k", want)
	farReads := two.Stats().FarReads
	mustHit(b, twoCache, "k", want)
	if got := two.Stats().FarReads; got != farReads {
		b.Fatalf("a second Get read the far tier (%d far reads, was %d): not a near hit", got, farReads)
	}

	mem := memory.New[storetest.Value]()
	b.Cleanup(func() { _ = mem.Close(context.Background()) })
	if err := mem.Set(ctx, "k", benchEntry(want)); err != nil {
		b.Fatal(err)
	}
	memCache := benchCache(b, mem)
	mustHit(b, memCache, "k", want)

	b.Run("memory", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := memCache.Get(ctx, "k", missLoad); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("tiered_redisstore", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := twoCache.Get(ctx, "k", missLoad); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// BenchmarkParallelGet64 measures the throughput of about 64 goroutines
// doing herd.Cache Gets over a warm set of 1,000 keys: over redisstore
// alone, and over the two-level store over redisstore.
func BenchmarkParallelGet64(b *testing.B) {
	const nkeys = 1000
	srv := startRedis(b)
	ctx := context.Background()
	far := benchFar(b, srv, "parallel")
	keys := make([]string, nkeys)
	values := make([]storetest.Value, nkeys)
	for i := range keys {
		keys[i] = fmt.Sprintf("user:%d", i)
		values[i] = storetest.Value{Name: keys[i], N: int64(i)}
		if err := far.Set(ctx, keys[i], benchEntry(values[i])); err != nil {
			b.Fatal(err)
		}
	}
	farCache := benchCache(b, far)
	two := benchTiered(b, benchFar(b, srv, "parallel"))
	twoCache := benchCache(b, two)
	for i, k := range keys {
		mustHit(b, farCache, k, values[i])
		mustHit(b, twoCache, k, values[i]) // fills the near tier
	}
	// At least 64 goroutines: SetParallelism multiplies by GOMAXPROCS.
	procs := runtime.GOMAXPROCS(0)
	parallelism := (64 + procs - 1) / procs

	run := func(b *testing.B, c *herd.Cache[storetest.Value]) {
		b.ReportAllocs()
		b.SetParallelism(parallelism)
		b.ResetTimer()
		b.RunParallel(func(pb *testing.PB) {
			i := 0
			for pb.Next() {
				if _, err := c.Get(ctx, keys[i%nkeys], missLoad); err != nil {
					b.Error(err)
					return
				}
				i += 7 // spread the goroutines over the keys
			}
		})
		b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "gets/s")
	}
	b.Run("redisstore", func(b *testing.B) { run(b, farCache) })
	b.Run("tiered_redisstore", func(b *testing.B) { run(b, twoCache) })
}
