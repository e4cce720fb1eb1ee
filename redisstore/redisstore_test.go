package redisstore_test

import (
	"bytes"
	"context"
	"encoding/gob"
	"errors"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"go.uber.org/goleak"

	"github.com/herdcache/herd"
	"github.com/herdcache/herd/internal/herdtest"
	"github.com/herdcache/herd/redisstore"
	"github.com/herdcache/herd/store"
	"github.com/herdcache/herd/store/storetest"
)

func TestMain(m *testing.M) {
	// go-redis logs every failed dial; the fault tests make many on purpose.
	redis.SetLogger(quietLogger{})
	goleak.VerifyTestMain(m)
}

type quietLogger struct{}

func (quietLogger) Printf(context.Context, string, ...any) {}

// newStore returns a store on a new client of srv, with t's name as prefix:
// the stores of one test share their keys, locks and channel, like the
// processes of a fleet.
func newStore(t *testing.T, srv *redisServer, opts ...redisstore.Option) *redisstore.Store[storetest.Value] {
	t.Helper()
	s := redisstore.New[storetest.Value](srv.client(t), append([]redisstore.Option{redisstore.Prefix(prefixOf(t)), redisstore.WithLogger(discard())}, opts...)...)
	return s
}

// gobCodec keeps strings as bytes, where encoding/json replaces invalid
// UTF-8: the suite stores each odd key, "\xff\xfe" included, as a value.
type gobCodec struct{}

func (gobCodec) ID() byte { return 16 }

func (gobCodec) Marshal(v storetest.Value) ([]byte, error) {
	var b bytes.Buffer
	err := gob.NewEncoder(&b).Encode(v)
	return b.Bytes(), err
}

func (gobCodec) Unmarshal(data []byte, v *storetest.Value) error {
	return gob.NewDecoder(bytes.NewReader(data)).Decode(v)
}

var withGob = redisstore.WithCodec[storetest.Value](gobCodec{})

// The conformance suite. Each store reaches the server through a proxy of
// its own, which the suite's Cut cuts: the store's watch loses its
// connection while the other stores go on.
func TestConformance(t *testing.T) {
	srv := startRedis(t)
	var (
		mu      sync.Mutex
		proxies = make(map[store.Store[storetest.Value]]*herdtest.Proxy)
	)
	opts := storetest.Options{
		Break: func(*testing.T) { srv.stop() },
		Cut: func(t *testing.T, s store.Store[storetest.Value]) func() {
			mu.Lock()
			p := proxies[s]
			mu.Unlock()
			p.Cut()
			return p.Restore
		},
	}
	storetest.RunWith(t, opts, func(t *testing.T) store.Store[storetest.Value] {
		p := herdtest.NewProxy(t, srv.addr())
		s := redisstore.New[storetest.Value](newClient(t, p.Addr()), redisstore.Prefix(prefixOf(t)), redisstore.WithLogger(discard()), withGob)
		mu.Lock()
		proxies[s] = p
		mu.Unlock()
		return s
	})
}

// With the default JSON codec, everything but values holding invalid UTF-8
// (which encoding/json replaces) round-trips; the suite's odd-keys test
// stores such a value, so it runs here on keys and values apart.
func TestJSONCodecOddKeys(t *testing.T) {
	srv := startRedis(t)
	ctx := context.Background()
	s := newStore(t, srv)
	keys := storetest.OddKeys(4096)
	for i, k := range keys {
		if err := s.Set(ctx, k, store.Entry[storetest.Value]{Value: storetest.Value{N: int64(i)}}); err != nil {
			t.Fatal(err)
		}
	}
	for i, k := range keys {
		e, ok, err := s.Get(ctx, k)
		if err != nil || !ok || e.Value.N != int64(i) {
			t.Fatalf("Get(%q) = %+v, %v, %v; want N=%d", k, e.Value, ok, err, i)
		}
	}
}

func TestOptionsAreValidated(t *testing.T) {
	c := redis.NewClient(&redis.Options{Addr: "127.0.0.1:1"}) // never dialled
	defer func() { _ = c.Close() }()
	for name, tc := range map[string]struct {
		call func()
		want string
	}{
		"no prefix":         {func() { redisstore.New[storetest.Value](c) }, "Prefix option is required"},
		"empty prefix":      {func() { redisstore.Prefix("") }, "Prefix must be"},
		"prefix with colon": {func() { redisstore.Prefix("app:users") }, "Prefix must be"},
		"prefix with brace": {func() { redisstore.Prefix("{app}") }, "Prefix must be"},
		"codec of a type": {func() {
			redisstore.New[storetest.Value](c, redisstore.Prefix("p"), redisstore.WithCodec[[]byte](store.Bytes{}))
		}, "WithCodec must be"},
		"nil codec":          {func() { redisstore.WithCodec[[]byte](nil) }, "WithCodec must be"},
		"nil client":         {func() { redisstore.New[storetest.Value](nil, redisstore.Prefix("p")) }, "needs a client"},
		"zero retention":     {func() { redisstore.VersionRetention(0) }, "VersionRetention must be positive"},
		"negative retention": {func() { redisstore.VersionRetention(-time.Second) }, "VersionRetention must be positive"},
		"nil logger":         {func() { redisstore.WithLogger(nil) }, "WithLogger must be"},
		"zero ping":          {func() { redisstore.WatchPing(0) }, "WatchPing must be positive"},
		"nil context":        {func() { _, _, _ = redisstore.New[storetest.Value](c, redisstore.Prefix("p")).Get(nil, "k") }, "nil Context"}, //nolint:staticcheck // on purpose
		"nil watch function": {func() {
			_, _ = redisstore.New[storetest.Value](c, redisstore.Prefix("p")).Watch(context.Background(), nil)
		}, "needs a function"},
	} {
		t.Run(name, func(t *testing.T) {
			defer func() {
				r := recover()
				if msg, _ := r.(string); !strings.Contains(msg, tc.want) {
					t.Fatalf("panic %v, want one saying %q", r, tc.want)
				}
			}()
			tc.call()
		})
	}
	s := redisstore.New[[]byte](c, redisstore.Prefix("p"), redisstore.WithCodec[[]byte](store.Bytes{}), redisstore.VersionRetention(time.Second))
	if got := s.VersionRetention(); got != time.Second {
		t.Fatalf("VersionRetention() = %v, want 1s", got)
	}
	if got := redisstore.New[int](c, redisstore.Prefix("p")).VersionRetention(); got != store.DefaultVersionRetention {
		t.Fatalf("default VersionRetention() = %v, want %v", got, store.DefaultVersionRetention)
	}
}

// Two prefixes never share a key, whatever the keys: the first ':' of a Redis
// key ends its prefix.
func TestPrefixesDoNotCollide(t *testing.T) {
	srv := startRedis(t)
	c := srv.client(t)
	ctx := context.Background()
	a := redisstore.New[storetest.Value](c, redisstore.Prefix("a"))
	ae := redisstore.New[storetest.Value](c, redisstore.Prefix("a-e"))
	if err := a.Set(ctx, "x", store.Entry[storetest.Value]{Value: storetest.Value{Name: "a"}}); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"x", ":x", "e:x", ""} {
		if _, ok, err := ae.Get(ctx, k); err != nil || ok {
			t.Fatalf("prefix a-e sees key %q of prefix a: %v, %v", k, ok, err)
		}
	}
	if got := a.Key("x"); got != "a:e:x" {
		t.Fatalf("Key(x) = %q, want a:e:x", got)
	}
}

// Bytes that are not an entry of this store are a miss, counted, and
// overwritten by the next load through a cache.
func TestUndecodableBytesAreACountedMiss(t *testing.T) {
	srv := startRedis(t)
	c := srv.client(t)
	ctx := context.Background()
	s := newStore(t, srv)
	good, err := store.Encode[storetest.Value](store.JSON[storetest.Value]{}, store.Entry[storetest.Value]{Value: storetest.Value{Name: "v"}})
	if err != nil {
		t.Fatal(err)
	}
	newVersion := append([]byte(nil), good...)
	newVersion[1] = 99
	otherCodec := append([]byte(nil), good...)
	otherCodec[2] = store.BytesCodecID
	cases := map[string][]byte{
		"foreign":     []byte("written by another program"),
		"empty":       {},
		"version":     newVersion,
		"codec":       otherCodec,
		"truncated":   good[:20],
		"bad payload": append(append([]byte(nil), good[:36]...), "{not json"...),
	}
	cache := herd.New[storetest.Value](s, herd.TTL(time.Hour), herd.WithLogger(discard()))
	defer func() { _ = cache.Close(ctx) }()
	var want uint64
	for key, b := range cases {
		if err := c.Set(ctx, s.Key(key), b, 0).Err(); err != nil {
			t.Fatal(err)
		}
		if e, ok, err := s.Get(ctx, key); ok || err != nil {
			t.Fatalf("%s: Get = %+v, %v, %v; want a miss", key, e, ok, err)
		}
		want++
		if got := s.Corrupt(); got != want {
			t.Fatalf("%s: Corrupt() = %d, want %d", key, got, want)
		}
		v, err := cache.Get(ctx, key, func(context.Context, string) (storetest.Value, error) {
			return storetest.Value{Name: "loaded " + key}, nil
		})
		if err != nil || v.Name != "loaded "+key {
			t.Fatalf("%s: cache.Get = %+v, %v", key, v, err)
		}
		if got := s.Corrupt(); got <= want {
			t.Fatalf("%s: the cache read the bad bytes, and Corrupt() stayed at %d", key, got)
		}
		// The cache writes the loaded value after it returns it.
		waitFor(t, "the loaded value to overwrite the bad bytes", func() bool {
			e, ok, err := s.Get(ctx, key)
			return ok && err == nil && e.Value.Name == "loaded "+key
		})
		want = s.Corrupt()
	}
	if got := s.Corrupt(); got != want {
		t.Fatalf("Corrupt() = %d, want %d", got, want)
	}
}

func TestTTLFollowsKeepUntil(t *testing.T) {
	srv := startRedis(t)
	c := srv.client(t)
	ctx := context.Background()
	s := newStore(t, srv)
	now := time.Now()
	if err := s.Set(ctx, "kept", store.Entry[storetest.Value]{StoredAt: now, KeepUntil: now.Add(time.Hour)}); err != nil {
		t.Fatal(err)
	}
	if ttl := c.PTTL(ctx, s.Key("kept")).Val(); ttl <= 59*time.Minute || ttl > time.Hour+time.Millisecond {
		t.Fatalf("PTTL of an entry kept an hour = %v", ttl)
	}
	if err := s.Set(ctx, "forever", store.Entry[storetest.Value]{StoredAt: now}); err != nil {
		t.Fatal(err)
	}
	if ttl := c.PTTL(ctx, s.Key("forever")).Val(); ttl != -1 {
		t.Fatalf("PTTL of an entry without KeepUntil = %v, want none (-1)", ttl)
	}
	// Overwriting a kept entry with a past KeepUntil deletes it.
	if err := s.Set(ctx, "kept", store.Entry[storetest.Value]{StoredAt: now, KeepUntil: now.Add(-time.Second)}); err != nil {
		t.Fatal(err)
	}
	if n := c.Exists(ctx, s.Key("kept")).Val(); n != 0 {
		t.Fatal("an entry past its KeepUntil is still in Redis")
	}
}

func TestGetMany(t *testing.T) {
	srv := startRedis(t)
	c := srv.client(t)
	ctx := context.Background()
	s := newStore(t, srv, withGob)
	keys := storetest.OddKeys(1000)
	for i, k := range keys {
		if i%3 == 0 {
			continue // left absent
		}
		if err := s.Set(ctx, k, store.Entry[storetest.Value]{Value: storetest.Value{Name: k, N: int64(i)}}); err != nil {
			t.Fatal(err)
		}
	}
	if err := c.Set(ctx, s.Key(keys[1]), "garbage", 0).Err(); err != nil {
		t.Fatal(err)
	}
	got, err := s.GetMany(ctx, append(keys, "never-set"))
	if err != nil {
		t.Fatal(err)
	}
	for i, k := range keys {
		e, ok := got[k]
		switch {
		case i%3 == 0 || i == 1:
			if ok {
				t.Errorf("GetMany returned %q, which is absent or corrupt", k)
			}
		case !ok:
			t.Errorf("GetMany missed %q", k)
		case e.Value.Name != k || e.Value.N != int64(i):
			t.Errorf("GetMany(%q) = %+v", k, e.Value)
		}
	}
	if s.Corrupt() != 1 {
		t.Errorf("Corrupt() = %d, want 1", s.Corrupt())
	}
	if got, err := s.GetMany(ctx, nil); err != nil || len(got) != 0 {
		t.Errorf("GetMany(nil) = %v, %v", got, err)
	}
}

func TestLockKeysShareASlotAndFenceGrows(t *testing.T) {
	srv := startRedis(t)
	ctx := context.Background()
	s := newStore(t, srv)
	for _, k := range storetest.OddKeys(100) {
		var last uint64
		for range 3 {
			l, err := s.TryLock(ctx, k, time.Minute)
			if err != nil {
				t.Fatalf("TryLock(%q): %v", k, err)
			}
			if _, err := s.TryLock(ctx, k, time.Minute); !errors.Is(err, store.ErrLocked) {
				t.Fatalf("second TryLock(%q) = %v, want ErrLocked", k, err)
			}
			if l.Token() == 0 {
				t.Fatalf("TryLock(%q): zero fencing token", k)
			}
			if err := l.Unlock(ctx); err != nil {
				t.Fatal(err)
			}
			if l.Token() <= last {
				t.Fatalf("TryLock(%q): token %d after %d: fencing tokens must grow", k, l.Token(), last)
			}
			last = l.Token()
		}
	}
	if _, err := s.TryLock(ctx, "k", 0); err == nil {
		t.Fatal("TryLock with a zero lease returned no error")
	}
}

// The lock scripts still run after the server forgot them (SCRIPT FLUSH, a
// restart, a failover): EVALSHA falls back to EVAL.
func TestLockAfterScriptFlush(t *testing.T) {
	srv := startRedis(t)
	c := srv.client(t)
	ctx := context.Background()
	s := newStore(t, srv)
	l, err := s.TryLock(ctx, "k", time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.ScriptFlush(ctx).Err(); err != nil {
		t.Fatal(err)
	}
	if err := l.Extend(ctx, time.Minute); err != nil {
		t.Fatalf("Extend after SCRIPT FLUSH: %v", err)
	}
	if err := c.ScriptFlush(ctx).Err(); err != nil {
		t.Fatal(err)
	}
	if err := l.Unlock(ctx); err != nil {
		t.Fatalf("Unlock after SCRIPT FLUSH: %v", err)
	}
}

func discard() *slog.Logger { return slog.New(slog.DiscardHandler) }

// GetMany on a server that is down: an error, and an empty map, not nil.
func TestGetManyServerDown(t *testing.T) {
	srv := startRedis(t)
	s := newStore(t, srv)
	srv.stop()
	got, err := s.GetMany(context.Background(), []string{"a", "b"})
	if err == nil || got == nil || len(got) != 0 {
		t.Fatalf("GetMany with the server down = %v, %v; want an empty map and an error", got, err)
	}
}
