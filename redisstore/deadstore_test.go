package redisstore_test

import (
	"context"
	"fmt"
	"net"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/herdcache/herd"
	"github.com/herdcache/herd/internal/herdtest"
	"github.com/herdcache/herd/redisstore"
)

// closedAddr returns a loopback address where nothing listens.
func closedAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	return addr
}

// With a go-redis client at its defaults and nothing listening, the first
// Get costs its one failed read, and the Gets after it no call to Redis at
// all while the store is down (but for one probe per StoreBackoff window):
// each is a load, without the version read, lock and write-back it cannot
// make.
func TestDeadRedisCostsOnlyTheFirstCall(t *testing.T) {
	for _, locked := range []bool{false, true} {
		t.Run(fmt.Sprintf("locked=%v", locked), func(t *testing.T) {
			var trips roundTrips
			client := redis.NewClient(&redis.Options{Addr: closedAddr(t)}) // the defaults, as the README's first snippet
			t.Cleanup(func() { _ = client.Close() })
			client.AddHook(trips.hook("redis"))
			s := redisstore.New[string](client, redisstore.Prefix("dead"), redisstore.WithLogger(discard()))
			opts := []herd.Option{herd.TTL(time.Minute), herd.StoreBackoff(time.Hour, time.Hour), herd.WithLogger(discard())}
			if locked {
				opts = append(opts, herd.WithLocker(s, 10*time.Second))
			}
			c := herd.New[string](s, opts...)
			defer c.Close(context.Background())
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			load := func(context.Context, string) (string, error) { return "from the source", nil }

			start := time.Now()
			if v, err := c.Get(ctx, "first", load); err != nil || v != "from the source" {
				t.Fatalf("first Get = %q, %v", v, err)
			}
			first := time.Since(start)
			if by, sent := trips.take(); by["redis"] != 1 {
				t.Fatalf("the first Get made %d calls, want its one read:%s", by["redis"], sent)
			}
			start = time.Now()
			for i := range 100 {
				if v, err := c.Get(ctx, fmt.Sprint("k", i), load); err != nil || v != "from the source" {
					t.Fatalf("Get = %q, %v", v, err)
				}
			}
			after := time.Since(start) / 100
			if by, sent := trips.take(); by["redis"] != 0 {
				t.Fatalf("100 Gets while Redis is down made %d calls, want none:%s", by["redis"], sent)
			}
			st := c.Stats()
			if st.StoreDowns != 1 || st.Loads != 101 {
				t.Fatalf("stats %+v, want the store down once and 101 loads", st)
			}
			t.Logf("dead Redis, client defaults, locked=%v: first Get %v, then %v per Get", locked, first.Round(time.Millisecond), after)
		})
	}
}

// A server that accepts connections and never answers (frozen, or cut by a
// partition that drops packets), with a go-redis client that ignores its
// calls' deadlines, as it does at its defaults (where it waits out its
// ReadTimeout, 3s); here it waits without end (ReadTimeout -1), so that
// only the store can end a call: it ends each at its context's deadline,
// so the first Get returns after one StoreTimeout with its load, and the
// Gets after it make no call.
func TestHungRedisCostsOneStoreTimeout(t *testing.T) {
	const storeTimeout = 200 * time.Millisecond
	client := redis.NewClient(&redis.Options{Addr: silentListener(t), ReadTimeout: -1})
	t.Cleanup(func() { _ = client.Close() })
	s := redisstore.New[string](client, redisstore.Prefix("hung"), redisstore.WithLogger(discard()))
	c := herd.New[string](s, herd.TTL(time.Minute), herd.StoreTimeout(storeTimeout),
		herd.StoreBackoff(time.Hour, time.Hour), herd.WithLocker(s, 10*time.Second), herd.WithLogger(discard()))
	defer c.Close(context.Background())
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	load := func(context.Context, string) (string, error) { return "from the source", nil }

	start := time.Now()
	herdtest.Returns(t, "the first Get against a hung server", func() error {
		v, err := c.Get(ctx, "first", load)
		if err != nil {
			return fmt.Errorf("first Get: %w", err)
		}
		if v != "from the source" {
			return fmt.Errorf("first Get = %q, want the source's value", v)
		}
		return nil
	})
	first := time.Since(start)
	start = time.Now()
	for i := range 100 {
		if v, err := c.Get(ctx, fmt.Sprint("k", i), load); err != nil || v != "from the source" {
			t.Fatalf("Get = %q, %v", v, err)
		}
	}
	after := time.Since(start) / 100
	if st := c.Stats(); st.StoreDowns != 1 || st.Loads != 101 || st.StoreSkipped < 100 {
		t.Fatalf("stats %+v, want the store down once, 101 loads and the later reads skipped", st)
	}
	t.Logf("hung Redis, client without a read timeout, WithLocker: first Get %v, then %v per Get", first.Round(time.Millisecond), after)
}
