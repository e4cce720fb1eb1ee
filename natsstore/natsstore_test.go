package natsstore_test

import (
	"bytes"
	"context"
	"encoding/gob"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/goleak"

	"github.com/herdcache/herd/natsstore"
	"github.com/herdcache/herd/store"
	"github.com/herdcache/herd/store/storetest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func newStore[T any](t testing.TB, js jetstream.JetStream, bucket string, opts ...natsstore.Option) *natsstore.Store[T] {
	t.Helper()
	// Tests log nowhere unless they ask for a logger of their own.
	opts = append([]natsstore.Option{natsstore.WithLogger(slog.New(slog.DiscardHandler))}, opts...)
	s, err := natsstore.New[T](context.Background(), js, bucket, opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close(context.Background()) })
	return s
}

// The conformance suite. Every store of one subtest is a new connection to
// the subtest's own bucket, through a proxy of its own, so that the lock and
// notification tests see three clients of one backend, the other tests an
// empty store, and the suite's Cut cuts one store's connection alone. The
// failing server comes last: the server shut down.
func TestConformance(t *testing.T) {
	srv := startServer(t)
	var (
		mu      sync.Mutex
		buckets = map[string]string{}
		proxies = map[store.Store[storetest.Value]]proxy{}
	)
	opts := storetest.Options{
		LockTTL:        time.Second,
		Break:          func(*testing.T) { srv.stop() },
		ChangeVersions: true,
		Resumes:        true,
		Cut: func(t *testing.T, s store.Store[storetest.Value]) func() {
			mu.Lock()
			p := proxies[s]
			mu.Unlock()
			p.Cut()
			return p.Restore
		},
	}
	storetest.RunWith(t, opts, func(t *testing.T) store.Store[storetest.Value] {
		mu.Lock()
		b, ok := buckets[t.Name()]
		if !ok {
			b = fmt.Sprintf("conformance-%d", len(buckets))
			buckets[t.Name()] = b
		}
		mu.Unlock()
		p := startProxy(t, fmt.Sprintf("127.0.0.1:%d", srv.port))
		_, js := connect(t, p.url())
		s := newStore[storetest.Value](t, js, b, natsstore.WithCodec[storetest.Value](gobCodec[storetest.Value]{}))
		mu.Lock()
		proxies[s] = p
		mu.Unlock()
		return s
	})
}

// gobCodec keeps strings byte for byte. The suite's odd keys include invalid
// UTF-8 stored as a value too, which encoding/json (the default codec)
// replaces with U+FFFD; the key encoding is byte-exact either way (see
// TestOddKeysLockAndNotify, which runs on the default codec).
type gobCodec[T any] struct{}

func (gobCodec[T]) ID() byte { return 16 }

func (gobCodec[T]) Marshal(v T) ([]byte, error) {
	var b bytes.Buffer
	err := gob.NewEncoder(&b).Encode(v)
	return b.Bytes(), err
}

func (gobCodec[T]) Unmarshal(data []byte, v *T) error {
	return gob.NewDecoder(bytes.NewReader(data)).Decode(v)
}

// An extended lock whose owner stops renewing it still expires: the renewal
// keeps a per-key TTL (a KeyValue.Update would not).
func TestExtendedLockStillExpires(t *testing.T) {
	srv := startServer(t)
	_, js := connect(t, srv.url())
	s := newStore[string](t, js, "locks")
	ctx := context.Background()
	l, err := s.TryLock(ctx, "k", time.Second)
	if err != nil {
		t.Fatal(err)
	}
	for range 3 {
		if err := l.Extend(ctx, time.Second); err != nil {
			t.Fatalf("Extend: %v", err)
		}
	}
	if _, err := s.TryLock(ctx, "k", time.Second); !errors.Is(err, store.ErrLocked) {
		t.Fatalf("TryLock while held: %v, want ErrLocked", err)
	}
	// Abandoned: no Unlock, no more Extend. The lease must run out.
	var next store.Lock
	waitFor(t, 20*time.Second, "abandoned extended lock expires", func() bool {
		next, err = s.TryLock(ctx, "k", time.Minute)
		return err == nil
	})
	if next.Token() <= l.Token() {
		t.Fatalf("takeover token %d not above %d", next.Token(), l.Token())
	}
	if err := l.Extend(ctx, time.Minute); !errors.Is(err, store.ErrNotHeld) {
		t.Fatalf("Extend of the abandoned lease: %v, want ErrNotHeld", err)
	}
	if err := next.Unlock(ctx); err != nil {
		t.Fatal(err)
	}
}

// Data written with a KeepUntil is dropped by the server itself (per-key
// TTL), not only hidden by the read-side check.
func TestKeepUntilIsAServerTTL(t *testing.T) {
	srv := startServer(t)
	_, js := connect(t, srv.url())
	s := newStore[string](t, js, "ttl")
	ctx := context.Background()
	if err := s.Set(ctx, "k", store.Entry[string]{Value: "v", KeepUntil: time.Now().Add(time.Second)}); err != nil {
		t.Fatal(err)
	}
	if _, ok, err := s.Get(ctx, "k"); !ok || err != nil {
		t.Fatalf("Get right after Set: %v, %v", ok, err)
	}
	waitFor(t, 20*time.Second, "server drops the entry", func() bool {
		_, err := s.KeyValue().Get(ctx, "d.kk")
		return errors.Is(err, jetstream.ErrKeyNotFound)
	})
}

// Foreign bytes, corrupt envelopes and bytes of another codec under the
// bucket are misses, counted, never errors.
func TestForeignAndCorruptBytes(t *testing.T) {
	srv := startServer(t)
	_, js := connect(t, srv.url())
	s := newStore[string](t, js, "bad")
	ctx := context.Background()
	good, err := store.Encode[string](store.JSON[string]{}, store.Entry[string]{Value: "v"})
	if err != nil {
		t.Fatal(err)
	}
	otherCodec, err := store.Encode[[]byte](store.Bytes{}, store.Entry[[]byte]{Value: []byte("v")})
	if err != nil {
		t.Fatal(err)
	}
	badJSON := append([]byte(nil), good...)
	badJSON[len(badJSON)-1] = '{'
	cases := map[string][]byte{
		"empty":       {},
		"foreign":     []byte("hello from another writer"),
		"truncated":   good[:20],
		"version":     append([]byte{good[0], 99}, good[2:]...),
		"other-codec": otherCodec,
		"bad-payload": badJSON,
	}
	for name, b := range cases {
		// "k" + key is the key's token; "d." is the data namespace.
		if _, err := s.KeyValue().Put(ctx, "d.k"+name, b); err != nil {
			t.Fatal(err)
		}
	}
	for name := range cases {
		e, ok, err := s.Get(ctx, name)
		if err != nil || ok {
			t.Fatalf("Get(%s) = %+v, %v, %v; want a miss", name, e, ok, err)
		}
	}
	if got := s.Corrupt(); got != uint64(len(cases)) {
		t.Fatalf("Corrupt() = %d, want %d", got, len(cases))
	}
	// Keys written by others in the bucket do not disturb the store.
	if _, err := s.KeyValue().Put(ctx, "some.other.key", []byte("x")); err != nil {
		t.Fatal(err)
	}
	if err := s.Set(ctx, "k", store.Entry[string]{Value: "v"}); err != nil {
		t.Fatal(err)
	}
	if e, ok, err := s.Get(ctx, "k"); err != nil || !ok || e.Value != "v" {
		t.Fatalf("Get = %+v, %v, %v", e, ok, err)
	}
}

// A value over the server's max payload is refused with ErrTooLarge and
// nothing is written: the previous entry stays.
func TestValueOverMaxPayload(t *testing.T) {
	srv := startServer(t)
	nc, js := connect(t, srv.url())
	s := newStore[[]byte](t, js, "large", natsstore.WithCodec[[]byte](store.Bytes{}))
	ctx := context.Background()
	if err := s.Set(ctx, "k", store.Entry[[]byte]{Value: []byte("small")}); err != nil {
		t.Fatal(err)
	}
	huge := make([]byte, nc.MaxPayload()+1)
	err := s.Set(ctx, "k", store.Entry[[]byte]{Value: huge})
	if !errors.Is(err, natsstore.ErrTooLarge) {
		t.Fatalf("Set of %d bytes: %v, want ErrTooLarge", len(huge), err)
	}
	if e, ok, err := s.Get(ctx, "k"); err != nil || !ok || string(e.Value) != "small" {
		t.Fatalf("after the refused Set: %q, %v, %v; want the old value", e.Value, ok, err)
	}
	// Just under the limit with the header still fits or is refused clearly.
	if err := s.Set(ctx, "k", store.Entry[[]byte]{Value: huge[:nc.MaxPayload()-1024]}); err != nil {
		t.Fatalf("Set just under max payload: %v", err)
	}
}

// Odd keys, long keys beyond the plain form included, are kept apart in
// every namespace (data and locks), and a watch reports each by its key.
func TestOddKeysLockAndWatch(t *testing.T) {
	srv := startServer(t)
	_, js := connect(t, srv.url())
	s := newStore[int](t, js, "odd")
	ctx := context.Background()
	keys := append(storetest.OddKeys(4096), strings.Repeat("k", 1023), strings.Repeat("k", 1024), strings.Repeat(".", 600))
	got := make(chan store.Change, 2*len(keys))
	w, err := s.Watch(ctx, func(c store.Change) { got <- c })
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	for i, k := range keys {
		if err := s.Set(ctx, k, store.Entry[int]{Value: i}); err != nil {
			t.Fatalf("Set(%q): %v", k, err)
		}
		l, err := s.TryLock(ctx, k, time.Minute)
		if err != nil {
			t.Fatalf("TryLock(%q): %v", k, err)
		}
		defer l.Unlock(ctx) //nolint:errcheck // best effort at test end
	}
	for i, k := range keys {
		if e, ok, err := s.Get(ctx, k); err != nil || !ok || e.Value != i {
			t.Fatalf("Get(%q) = %d, %v, %v; want %d", k, e.Value, ok, err, i)
		}
	}
	seen := map[string]bool{}
	timeout := time.After(10 * time.Second)
	for len(seen) < len(keys) {
		select {
		case c := <-got:
			if c.All {
				t.Fatal("watch reported All on a healthy connection")
			}
			seen[c.Key] = true
		case <-timeout:
			t.Fatalf("%d of %d changes", len(seen), len(keys))
		}
	}
	for _, k := range keys {
		if !seen[k] {
			t.Fatalf("change of %q missing", k)
		}
	}
}

// On a bucket bound without per-key TTL, KeepUntil is still enforced on
// read, and TryLock refuses with ErrNoTTL rather than hand out a lease that
// could never expire.
func TestBucketWithoutTTL(t *testing.T) {
	srv := startServer(t)
	_, js := connect(t, srv.url())
	ctx := context.Background()
	if _, err := js.CreateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: "plain"}); err != nil {
		t.Fatal(err)
	}
	s := newStore[string](t, js, "plain")
	if _, err := s.TryLock(ctx, "k", time.Minute); !errors.Is(err, natsstore.ErrNoTTL) {
		t.Fatalf("TryLock on a bucket without TTL: %v, want ErrNoTTL", err)
	}
	if err := s.Set(ctx, "k", store.Entry[string]{Value: "v", KeepUntil: time.Now().Add(300 * time.Millisecond)}); err != nil {
		t.Fatal(err)
	}
	if _, ok, err := s.Get(ctx, "k"); !ok || err != nil {
		t.Fatalf("Get before KeepUntil: %v, %v", ok, err)
	}
	waitFor(t, 5*time.Second, "entry past KeepUntil reads as a miss", func() bool {
		_, ok, err := s.Get(ctx, "k")
		return err == nil && !ok
	})
	if _, err := s.KeyValue().Get(ctx, "d.kk"); err != nil {
		t.Fatalf("the bytes are still in the bucket (no server TTL), yet: %v", err)
	}
}

// The capabilities a Store implements, checked when the tests compile.
var (
	_ store.Store[int]      = (*natsstore.Store[int])(nil)
	_ store.Locker          = (*natsstore.Store[int])(nil)
	_ store.Versioned[int]  = (*natsstore.Store[int])(nil)
	_ store.ChangeStream    = (*natsstore.Store[int])(nil)
	_ store.BulkGetter[int] = (*natsstore.Store[int])(nil)

	_ store.BulkVersioned[int] = (*natsstore.Store[int])(nil)
	_ store.BulkLocker         = (*natsstore.Store[int])(nil)
)
