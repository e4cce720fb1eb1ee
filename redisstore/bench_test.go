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
	b.Run("herd", func(b *testing.B) {
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
	raw := redisstore.New[[]byte](client, redisstore.Prefix("bench-bytes"), redisstore.WithCodec[[]byte](store.Bytes{}))
	payload, err := store.JSON[storetest.Value]{}.Marshal(e.Value)
	if err != nil {
		b.Fatal(err)
	}
	if err := raw.Set(ctx, "k", store.Entry[[]byte]{Value: payload, StoredAt: e.StoredAt, RefreshAt: e.RefreshAt, ExpiresAt: e.ExpiresAt, KeepUntil: e.KeepUntil}); err != nil {
		b.Fatal(err)
	}
	b.Run("herd-bytes", func(b *testing.B) {
		cache := herd.New[[]byte](raw, herd.TTL(time.Hour), herd.WithLogger(discard()))
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
