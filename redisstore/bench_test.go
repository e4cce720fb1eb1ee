package redisstore_test

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/herdcache/herd"
	"github.com/herdcache/herd/redisstore"
	"github.com/herdcache/herd/store"
	"github.com/herdcache/herd/store/storetest"
)

// BenchmarkGet compares a hit through a herd.Cache over a Store with a plain
// go-redis GET of the same bytes, on one client of one local server: what
// the store and the cache add to a round trip.
func BenchmarkGet(b *testing.B) {
	srv := startRedis(b)
	client := srv.client(b)
	ctx := context.Background()
	s := redisstore.New[storetest.Value](client, redisstore.Prefix("bench"))
	now := time.Now()
	e := store.Entry[storetest.Value]{
		Value: storetest.Value{Name: "user 42", N: 42}, StoredAt: now,
		RefreshAt: now.Add(time.Hour), ExpiresAt: now.Add(2 * time.Hour), KeepUntil: now.Add(3 * time.Hour),
	}
	if err := s.Set(ctx, "k", e); err != nil {
		b.Fatal(err)
	}
	// Each sub-benchmark builds its cache over a store of its own, as it
	// runs once per -count and the cache's Close closes its store.
	b.Run("herd", func(b *testing.B) {
		s := redisstore.New[storetest.Value](client, redisstore.Prefix("bench"))
		cache := herd.New[storetest.Value](s, herd.TTL(time.Hour), herd.WithLogger(discard()))
		defer func() { _ = cache.Close(ctx) }()
		load := func(context.Context, string) (storetest.Value, error) {
			return storetest.Value{}, fmt.Errorf("miss in a benchmark of hits")
		}
		b.ReportAllocs()
		for b.Loop() {
			if _, err := cache.Get(ctx, "k", load); err != nil {
				b.Fatal(err)
			}
		}
	})
	// The same through the Bytes codec: what the store and the cache cost
	// without a JSON decode.
	bytesStore := func() *redisstore.Store[[]byte] {
		return redisstore.New[[]byte](client, redisstore.Prefix("bench-bytes"), redisstore.WithCodec[[]byte](store.Bytes{}))
	}
	raw := bytesStore()
	payload, err := store.JSON[storetest.Value]{}.Marshal(e.Value)
	if err != nil {
		b.Fatal(err)
	}
	if err := raw.Set(ctx, "k", store.Entry[[]byte]{Value: payload, StoredAt: e.StoredAt, RefreshAt: e.RefreshAt, ExpiresAt: e.ExpiresAt, KeepUntil: e.KeepUntil}); err != nil {
		b.Fatal(err)
	}
	b.Run("herd-bytes", func(b *testing.B) {
		cache := herd.New[[]byte](bytesStore(), herd.TTL(time.Hour), herd.WithLogger(discard()))
		defer func() { _ = cache.Close(ctx) }()
		load := func(context.Context, string) ([]byte, error) {
			return nil, fmt.Errorf("miss in a benchmark of hits")
		}
		b.ReportAllocs()
		for b.Loop() {
			if _, err := cache.Get(ctx, "k", load); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("go-redis", func(b *testing.B) {
		key := s.Key("k")
		b.ReportAllocs()
		for b.Loop() {
			if _, err := client.Get(ctx, key).Bytes(); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// BenchmarkGetRatio is BenchmarkGet with the two reads interleaved: each
// iteration times a hit through a herd.Cache and a plain go-redis GET of the
// same bytes back to back, so that the drift of a shared machine's load
// falls on both alike. It reports the time of each per operation and their
// ratio (herd/raw), for the default JSON codec and for the Bytes codec,
// from a caller without a deadline and from one with a request deadline
// (which spares the cache its StoreTimeout timer). Without a deadline, it
// also times a GET bounded as the cache bounds its reads, with a
// context.WithTimeout per call, and reports herd/bounded.
func BenchmarkGetRatio(b *testing.B) {
	srv := startRedis(b)
	client := srv.client(b)
	now := time.Now()
	times := store.Entry[storetest.Value]{
		StoredAt: now, RefreshAt: now.Add(time.Hour), ExpiresAt: now.Add(2 * time.Hour), KeepUntil: now.Add(3 * time.Hour),
	}
	value := storetest.Value{Name: "user 42", N: 42}
	payload, err := store.JSON[storetest.Value]{}.Marshal(value)
	if err != nil {
		b.Fatal(err)
	}
	for _, deadline := range []bool{false, true} {
		b.Run(fmt.Sprintf("codec=json/deadline=%v", deadline), func(b *testing.B) {
			s := redisstore.New[storetest.Value](client, redisstore.Prefix("ratio-json"))
			e := times
			e.Value = value
			interleave(b, client, s, e, deadline)
		})
		b.Run(fmt.Sprintf("codec=bytes/deadline=%v", deadline), func(b *testing.B) {
			s := redisstore.New[[]byte](client, redisstore.Prefix("ratio-bytes"), redisstore.WithCodec[[]byte](store.Bytes{}))
			e := store.Entry[[]byte]{Value: payload, StoredAt: times.StoredAt, RefreshAt: times.RefreshAt, ExpiresAt: times.ExpiresAt, KeepUntil: times.KeepUntil}
			interleave(b, client, s, e, deadline)
		})
	}
}

func interleave[T any](b *testing.B, client *redis.Client, s *redisstore.Store[T], e store.Entry[T], deadline bool) {
	b.Helper()
	ctx := context.Background()
	if deadline {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, time.Hour)
		defer cancel()
	}
	if err := s.Set(ctx, "k", e); err != nil {
		b.Fatal(err)
	}
	const storeTimeout = 2 * time.Hour // later than the caller's deadline, when it has one
	cache := herd.New[T](s, herd.TTL(time.Hour), herd.StoreTimeout(storeTimeout), herd.WithLogger(discard()))
	defer func() { _ = cache.Close(context.Background()) }()
	load := func(context.Context, string) (T, error) {
		var zero T
		return zero, fmt.Errorf("miss in a benchmark of hits")
	}
	key := s.Key("k")
	var inHerd, inRaw, inBounded time.Duration
	for b.Loop() {
		t0 := time.Now()
		if _, err := cache.Get(ctx, "k", load); err != nil {
			b.Fatal(err)
		}
		t1 := time.Now()
		if _, err := client.Get(ctx, key).Bytes(); err != nil {
			b.Fatal(err)
		}
		t2 := time.Now()
		inHerd += t1.Sub(t0)
		inRaw += t2.Sub(t1)
		if !deadline {
			bctx, cancel := context.WithTimeout(ctx, storeTimeout)
			_, err := client.Get(bctx, key).Bytes()
			cancel()
			if err != nil {
				b.Fatal(err)
			}
			inBounded += time.Since(t2)
		}
	}
	b.ReportMetric(float64(inHerd.Nanoseconds())/float64(b.N), "herd-ns/op")
	b.ReportMetric(float64(inRaw.Nanoseconds())/float64(b.N), "raw-ns/op")
	b.ReportMetric(float64(inHerd)/float64(inRaw), "herd/raw")
	if !deadline {
		b.ReportMetric(float64(inHerd)/float64(inBounded), "herd/bounded")
	}
}

// BenchmarkGetMany100 reads 100 keys in one round trip, against a plain
// MGET of the same keys.
func BenchmarkGetMany100(b *testing.B) {
	srv := startRedis(b)
	client := srv.client(b)
	ctx := context.Background()
	s := redisstore.New[storetest.Value](client, redisstore.Prefix("bench"))
	keys := make([]string, 100)
	rkeys := make([]string, 100)
	for i := range keys {
		keys[i] = fmt.Sprintf("user:%d", i)
		rkeys[i] = s.Key(keys[i])
		if err := s.Set(ctx, keys[i], store.Entry[storetest.Value]{Value: storetest.Value{Name: keys[i], N: int64(i)}}); err != nil {
			b.Fatal(err)
		}
	}
	b.Run("redisstore", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			got, err := s.GetMany(ctx, keys)
			if err != nil || len(got) != len(keys) {
				b.Fatalf("GetMany: %d entries, %v", len(got), err)
			}
		}
	})
	b.Run("go-redis", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := client.MGet(ctx, rkeys...).Result(); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// BenchmarkWrite compares the store's writes with a plain go-redis SET of
// the same bytes with the same TTL, on one client of one local server: what
// the version check and bump cost. SetIf is the write-back of a load: the
// GetVersion that precedes it is measured apart.
func BenchmarkWrite(b *testing.B) {
	srv := startRedis(b)
	client := srv.client(b)
	ctx := context.Background()
	s := redisstore.New[storetest.Value](client, redisstore.Prefix("bench"))
	e := store.Entry[storetest.Value]{Value: storetest.Value{Name: "user 42", N: 42}, StoredAt: time.Now(), KeepUntil: time.Now().Add(time.Hour)}
	bytes, err := store.Encode[storetest.Value](store.JSON[storetest.Value]{}, e)
	if err != nil {
		b.Fatal(err)
	}
	b.Run("go-redis-SET", func(b *testing.B) {
		key := s.Key("plain")
		b.ReportAllocs()
		reset(b, client)
		for b.Loop() {
			if err := client.Set(ctx, key, bytes, time.Hour).Err(); err != nil {
				b.Fatal(err)
			}
		}
		reportServerTime(b, client, "set")
	})
	b.Run("Set", func(b *testing.B) {
		b.ReportAllocs()
		reset(b, client)
		for b.Loop() {
			if err := s.Set(ctx, "set", e); err != nil {
				b.Fatal(err)
			}
		}
		reportServerTime(b, client, "evalsha")
	})
	b.Run("SetIf", func(b *testing.B) {
		_, v, _, err := s.GetVersion(ctx, "setif")
		if err != nil {
			b.Fatal(err)
		}
		b.ReportAllocs()
		reset(b, client)
		for b.Loop() {
			// The first SetIf with v is accepted, the others refused:
			// both run the whole check.
			if err := s.SetIf(ctx, "setif", e, v); err != nil && !errors.Is(err, store.ErrConflict) {
				b.Fatal(err)
			}
		}
		reportServerTime(b, client, "evalsha")
	})
	b.Run("GetVersion+SetIf", func(b *testing.B) {
		b.ReportAllocs()
		reset(b, client)
		for b.Loop() {
			_, v, _, err := s.GetVersion(ctx, "cycle")
			if err != nil {
				b.Fatal(err)
			}
			if err := s.SetIf(ctx, "cycle", e, v); err != nil {
				b.Fatal(err)
			}
		}
		reportServerTime(b, client, "evalsha") // both scripts
	})
}

func reset(b *testing.B, c *redis.Client) {
	b.Helper()
	if err := c.ConfigResetStat(context.Background()).Err(); err != nil {
		b.Fatal(err)
	}
}

// reportServerTime reports the server's own time per operation for cmd
// (INFO commandstats), which the round trip and a busy client machine do
// not blur.
func reportServerTime(b *testing.B, c *redis.Client, cmd string) {
	b.Helper()
	info, err := c.Info(context.Background(), "commandstats").Result()
	if err != nil {
		b.Fatal(err)
	}
	for line := range strings.Lines(info) {
		rest, ok := strings.CutPrefix(line, "cmdstat_"+cmd+":")
		if !ok {
			continue
		}
		for field := range strings.SplitSeq(strings.TrimSpace(rest), ",") {
			if v, ok := strings.CutPrefix(field, "usec="); ok {
				usec, err := strconv.ParseFloat(v, 64)
				if err != nil {
					b.Fatal(err)
				}
				b.ReportMetric(usec/float64(b.N), "server-µs/op")
				return
			}
		}
	}
	b.Fatalf("no %s in INFO commandstats", cmd)
}

// BenchmarkBulk100 times each bulk step of a batch of 100 keys against the
// same step made of 100 single calls, one after the other, on one local
// server: reads of entries and versions, conditional write-backs, and the
// locks of the batch taken and released.
func BenchmarkBulk100(b *testing.B) {
	srv := startRedis(b)
	ctx := context.Background()
	s := redisstore.New[storetest.Value](srv.client(b), redisstore.Prefix("bench-bulk"), redisstore.WithLogger(discard()))
	keys := make([]string, 100)
	for i := range keys {
		keys[i] = "user:" + strconv.Itoa(i)
	}
	e := store.Entry[storetest.Value]{Value: storetest.Value{Name: "user", N: 42}, KeepUntil: time.Now().Add(time.Hour)}
	writes := func() []store.ConditionalWrite[storetest.Value] {
		ws := make([]store.ConditionalWrite[storetest.Value], len(keys))
		for i, r := range s.GetVersions(ctx, keys) {
			ws[i] = store.ConditionalWrite[storetest.Value]{Key: keys[i], Version: r.Version, Entry: e}
		}
		return ws
	}
	must := func(errs []error) {
		for _, err := range errs {
			if err != nil {
				b.Fatal(err)
			}
		}
	}
	must(s.WriteIf(ctx, writes()))
	b.Run("GetVersions/bulk", func(b *testing.B) {
		for b.Loop() {
			for _, r := range s.GetVersions(ctx, keys) {
				if r.Err != nil {
					b.Fatal(r.Err)
				}
			}
		}
	})
	b.Run("GetVersions/single", func(b *testing.B) {
		for b.Loop() {
			for _, k := range keys {
				if _, _, _, err := s.GetVersion(ctx, k); err != nil {
					b.Fatal(err)
				}
			}
		}
	})
	b.Run("WriteIf/bulk", func(b *testing.B) {
		for b.Loop() {
			b.StopTimer()
			ws := writes()
			b.StartTimer()
			must(s.WriteIf(ctx, ws))
		}
	})
	b.Run("WriteIf/single", func(b *testing.B) {
		for b.Loop() {
			b.StopTimer()
			ws := writes()
			b.StartTimer()
			for _, w := range ws {
				if err := s.SetIf(ctx, w.Key, w.Entry, w.Version); err != nil {
					b.Fatal(err)
				}
			}
		}
	})
	b.Run("Locks/bulk", func(b *testing.B) {
		for b.Loop() {
			locks := make([]store.Lock, 0, len(keys))
			for _, r := range s.TryLockMany(ctx, keys, time.Minute) {
				if r.Err != nil {
					b.Fatal(r.Err)
				}
				locks = append(locks, r.Lock)
			}
			must(s.UnlockMany(ctx, locks))
		}
	})
	b.Run("Locks/single", func(b *testing.B) {
		for b.Loop() {
			for _, k := range keys {
				l, err := s.TryLock(ctx, k, time.Minute)
				if err != nil {
					b.Fatal(err)
				}
				if err := l.Unlock(ctx); err != nil {
					b.Fatal(err)
				}
			}
		}
	})
}
