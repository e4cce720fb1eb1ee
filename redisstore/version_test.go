package redisstore_test

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/herdcache/herd/redisstore"
	"github.com/herdcache/herd/store"
	"github.com/herdcache/herd/store/storetest"
)

func mustVersion(t *testing.T, s *redisstore.Store[storetest.Value], key string) store.Version {
	t.Helper()
	_, v, _, err := s.GetVersion(context.Background(), key)
	if err != nil {
		t.Fatalf("GetVersion(%q): %v", key, err)
	}
	return v
}

func value(name string) store.Entry[storetest.Value] {
	return store.Entry[storetest.Value]{Value: storetest.Value{Name: name}, StoredAt: time.Now()}
}

// A write by a plain Redis client, not through the store, makes a version
// read before it fail, on a present and on an absent key; so does a DEL.
func TestForeignWriteChangesTheVersion(t *testing.T) {
	srv := startRedis(t)
	c := srv.client(t)
	ctx := context.Background()
	s := newStore(t, srv)
	good, err := store.Encode[storetest.Value](store.JSON[storetest.Value]{}, value("foreign"))
	if err != nil {
		t.Fatal(err)
	}
	writes := map[string]func(key string) error{
		"SET envelope": func(key string) error { return c.Set(ctx, s.Key(key), good, 0).Err() },
		"SET garbage":  func(key string) error { return c.Set(ctx, s.Key(key), "garbage", 0).Err() },
		"DEL":          func(key string) error { return c.Del(ctx, s.Key(key)).Err() },
	}
	for name, write := range writes {
		for _, present := range []bool{false, true} {
			key := fmt.Sprintf("%s-present=%v", name, present)
			if present {
				if err := s.Set(ctx, key, value("ours")); err != nil {
					t.Fatal(err)
				}
			}
			v := mustVersion(t, s, key)
			if err := write(key); err != nil {
				t.Fatal(err)
			}
			if name == "DEL" && !present {
				// Nothing was there to delete: nothing changed.
				if err := s.SetIf(ctx, key, value("load"), v); err != nil {
					t.Fatalf("%s: SetIf after a DEL of nothing: %v", key, err)
				}
				continue
			}
			if err := s.SetIf(ctx, key, value("stale load"), v); !errors.Is(err, store.ErrConflict) {
				t.Fatalf("%s: SetIf after a plain client's write: %v, want ErrConflict", key, err)
			}
			if err := s.DeleteIf(ctx, key, v); !errors.Is(err, store.ErrConflict) {
				t.Fatalf("%s: DeleteIf after a plain client's write: %v, want ErrConflict", key, err)
			}
			// The version read now matches.
			if err := s.SetIf(ctx, key, value("load"), mustVersion(t, s, key)); err != nil {
				t.Fatalf("%s: SetIf with the version after the write: %v", key, err)
			}
		}
	}
	// The foreign envelope reads back as an entry, with its version.
	if err := c.Set(ctx, s.Key("plain"), good, 0).Err(); err != nil {
		t.Fatal(err)
	}
	e, v, ok, err := s.GetVersion(ctx, "plain")
	if err != nil || !ok || e.Value.Name != "foreign" || v == 0 {
		t.Fatalf("GetVersion of a plain client's envelope = %+v, %d, %v, %v", e.Value, v, ok, err)
	}
}

// An entry passing its KeepUntil is a write: a version read while it was
// live no longer matches, and the version read after it does.
func TestExpiryChangesTheVersion(t *testing.T) {
	srv := startRedis(t)
	c := srv.client(t)
	ctx := context.Background()
	s := newStore(t, srv)
	e := value("short")
	e.KeepUntil = time.Now().Add(50 * time.Millisecond)
	if err := s.Set(ctx, "k", e); err != nil {
		t.Fatal(err)
	}
	v := mustVersion(t, s, "k")
	waitFor(t, "the entry to expire on the server", func() bool { return c.Exists(ctx, s.Key("k")).Val() == 0 })
	if err := s.SetIf(ctx, "k", value("stale load"), v); !errors.Is(err, store.ErrConflict) {
		t.Fatalf("SetIf with a version read before the expiry: %v, want ErrConflict", err)
	}
	after := mustVersion(t, s, "k")
	if after == v || after == 0 {
		t.Fatalf("version after the expiry = %d, before %d", after, v)
	}
	if err := s.SetIf(ctx, "k", value("load"), after); err != nil {
		t.Fatalf("SetIf with the version read after the expiry: %v", err)
	}
}

// A tombstone, and the record of an expired entry, are kept for the
// retention and then forgotten; versions after that are still new.
func TestVersionsAreForgottenAfterRetention(t *testing.T) {
	srv := startRedis(t)
	c := srv.client(t)
	ctx := context.Background()
	const retention = 100 * time.Millisecond
	s := newStore(t, srv, redisstore.VersionRetention(retention))
	seen := make(map[store.Version]bool)
	fresh := func(v store.Version) {
		t.Helper()
		if v == 0 || seen[v] {
			t.Fatalf("version %d repeats or is zero", v)
		}
		seen[v] = true
	}
	for round := range 3 {
		if err := s.Set(ctx, "k", value("v")); err != nil {
			t.Fatal(err)
		}
		fresh(mustVersion(t, s, "k"))
		if err := s.Delete(ctx, "k"); err != nil {
			t.Fatal(err)
		}
		fresh(mustVersion(t, s, "k"))
		if ttl := c.PTTL(ctx, mustVersionKey(t, c)).Val(); ttl <= 0 || ttl > retention {
			t.Fatalf("round %d: the tombstone's TTL is %v, want up to %v", round, ttl, retention)
		}
		waitFor(t, "the tombstone to be forgotten", func() bool { return c.DBSize(ctx).Val() == 0 })
		if v := mustVersion(t, s, "k"); v != 0 {
			t.Fatalf("round %d: version %d after the retention, want 0", round, v)
		}
	}
	// An entry with a KeepUntil: entry and record gone by KeepUntil plus
	// the retention.
	e := value("kept")
	e.KeepUntil = time.Now().Add(50 * time.Millisecond)
	if err := s.Set(ctx, "kept", e); err != nil {
		t.Fatal(err)
	}
	if n := c.DBSize(ctx).Val(); n != 2 {
		t.Fatalf("%d keys for one entry, want the entry and its record", n)
	}
	waitFor(t, "the entry and its record to be forgotten", func() bool { return c.DBSize(ctx).Val() == 0 })
}

// mustVersionKey returns the one version record on the server.
func mustVersionKey(t *testing.T, c *redis.Client) string {
	t.Helper()
	keys, err := c.Keys(context.Background(), "*:v:*").Result()
	if err != nil || len(keys) != 1 {
		t.Fatalf("version records: %v, %v", keys, err)
	}
	return keys[0]
}

// A hit is one GET and a GetMany one MGET: the version records cost reads
// nothing.
func TestReadsStayOneCommand(t *testing.T) {
	srv := startRedis(t)
	c := srv.client(t)
	ctx := context.Background()
	s := newStore(t, srv)
	if err := s.Set(ctx, "k", value("v")); err != nil {
		t.Fatal(err)
	}
	if err := c.ConfigResetStat(ctx).Err(); err != nil {
		t.Fatal(err)
	}
	for range 100 {
		if _, ok, err := s.Get(ctx, "k"); err != nil || !ok {
			t.Fatalf("Get: %v, %v", ok, err)
		}
		if got, err := s.GetMany(ctx, []string{"k", "absent", "k"}); err != nil || len(got) != 1 {
			t.Fatalf("GetMany: %v, %v", got, err)
		}
	}
	stats := commandStats(t, c)
	delete(stats, "config|resetstat")
	delete(stats, "info")
	want := map[string]int{"get": 100, "mget": 100}
	if fmt.Sprint(stats) != fmt.Sprint(want) {
		t.Fatalf("commands for 100 hits and 100 GetMany: %v, want %v", stats, want)
	}
}

// commandStats returns the calls of each command since the last reset.
func commandStats(t *testing.T, c *redis.Client) map[string]int {
	t.Helper()
	info, err := c.Info(context.Background(), "commandstats").Result()
	if err != nil {
		t.Fatal(err)
	}
	stats := make(map[string]int)
	for line := range strings.Lines(info) {
		name, rest, ok := strings.Cut(strings.TrimPrefix(line, "cmdstat_"), ":calls=")
		if !ok {
			continue
		}
		calls, _, _ := strings.Cut(rest, ",")
		n, err := strconv.Atoi(calls)
		if err != nil {
			t.Fatalf("commandstats line %q: %v", line, err)
		}
		stats[name] = n
	}
	return stats
}

// 10,000 keys locked, half released and half left to expire, and 10,000
// entries set with a KeepUntil or deleted: once leases, KeepUntils and the
// retention have passed, nothing is left on the server.
func TestNoResidueOnTheServer(t *testing.T) {
	srv := startRedis(t)
	c := srv.client(t)
	ctx := context.Background()
	s := newStore(t, srv, redisstore.VersionRetention(200*time.Millisecond))
	const keys, workers = 10000, 16
	var wg sync.WaitGroup
	errs := make(chan error, workers)
	for w := range workers {
		wg.Go(func() {
			for i := w; i < keys; i += workers {
				key := fmt.Sprintf("key-%d", i)
				l, err := s.TryLock(ctx, key, 300*time.Millisecond)
				if err != nil {
					errs <- fmt.Errorf("TryLock(%q): %w", key, err)
					return
				}
				e := value("v")
				e.KeepUntil = time.Now().Add(100 * time.Millisecond)
				switch i % 3 {
				case 0:
					err = s.Set(ctx, key, e)
				case 1:
					err = s.Delete(ctx, key)
				default:
					err = s.SetIf(ctx, key, e, 0)
				}
				if err != nil {
					errs <- fmt.Errorf("write %q: %w", key, err)
					return
				}
				if i%2 == 0 {
					// A lease may have expired on a slow machine: fine here.
					if err := l.Unlock(ctx); err != nil && !errors.Is(err, store.ErrNotHeld) {
						errs <- fmt.Errorf("Unlock(%q): %w", key, err)
						return
					}
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	waitFor(t, "every lock, fence, entry and version record to expire", func() bool { return c.DBSize(ctx).Val() == 0 })
	// Each key left a fence and a version record at least, which expired
	// rather than being deleted.
	if n := expiredKeys(t, c); n < 2*keys {
		t.Fatalf("the server expired %d keys; the test wrote fewer than it meant to", n)
	}
}

// expiredKeys returns the expired_keys counter of the server.
func expiredKeys(t *testing.T, c *redis.Client) int {
	t.Helper()
	info, err := c.Info(context.Background(), "stats").Result()
	if err != nil {
		t.Fatal(err)
	}
	for line := range strings.Lines(info) {
		if v, ok := strings.CutPrefix(line, "expired_keys:"); ok {
			n, err := strconv.Atoi(strings.TrimSpace(v))
			if err != nil {
				t.Fatal(err)
			}
			return n
		}
	}
	t.Fatal("no expired_keys in INFO stats")
	return 0
}

// Fencing tokens grow per key across acquisitions, releases and expiries,
// though the fence expires with the lease.
func TestFenceGrowsAfterExpiry(t *testing.T) {
	srv := startRedis(t)
	c := srv.client(t)
	ctx := context.Background()
	s := newStore(t, srv)
	var last uint64
	for i := range 20 {
		l, err := s.TryLock(ctx, "k", 20*time.Millisecond)
		if err != nil {
			waitFor(t, "the lease to expire", func() bool { return c.DBSize(ctx).Val() == 0 })
			if l, err = s.TryLock(ctx, "k", 20*time.Millisecond); err != nil {
				t.Fatal(err)
			}
		}
		if l.Token() <= last {
			t.Fatalf("acquisition %d: token %d after %d", i, l.Token(), last)
		}
		last = l.Token()
		if i%2 == 0 {
			_ = l.Unlock(ctx)
		}
	}
}
