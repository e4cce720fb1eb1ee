package redisstore_test

import (
	"context"
	"fmt"
	"strconv"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/herdcache/herd/redisstore"
	"github.com/herdcache/herd/store"
	"github.com/herdcache/herd/store/storetest"
	"github.com/herdcache/herd/store/tiered"
)

// overRedis returns a two-level store over far, closed with far at the end
// of the test.
func overRedis[T any](t *testing.T, far *redisstore.Store[T]) *tiered.VersionedStore[T] {
	t.Helper()
	t.Cleanup(func() { _ = far.Close(context.Background()) })
	s, err := tiered.NewVersioned[T](far)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := s.Close(context.Background()); err != nil {
			t.Error(err)
		}
	})
	return s
}

// The conformance suite on the two-level store over one server: within a
// subtest, every store is a near tier of its own over a client of its own,
// sharing the subtest's prefix, like a fleet.
func TestTieredConformance(t *testing.T) {
	srv := startRedis(t)
	storetest.Run(t, func(t *testing.T) store.Store[storetest.Value] {
		return overRedis(t, newStore(t, srv, withGob))
	})
}

// The same over a three-master Cluster: keys spread over the masters, and
// each master's tracking connection is followed.
func TestTieredClusterConformance(t *testing.T) {
	srvs := startCluster3(t)
	storetest.Run(t, func(t *testing.T) store.Store[storetest.Value] {
		far := redisstore.New[storetest.Value](clusterClient(t, srvs[0]), redisstore.Prefix(prefixOf(t)), withGob, redisstore.WithLogger(discard()))
		return overRedis(t, far)
	})
}

// tieredFleet returns n two-level stores of strings over srv, each over a
// client of its own, sharing t's prefix.
func tieredFleet(t *testing.T, newClient func() redis.UniversalClient, n int) []*tiered.VersionedStore[string] {
	t.Helper()
	fl := make([]*tiered.VersionedStore[string], n)
	for i := range fl {
		far := redisstore.New[string](newClient(), redisstore.Prefix(prefixOf(t)), redisstore.WithLogger(discard()))
		fl[i] = overRedis(t, far)
	}
	return fl
}

// eventually polls a Get of key on s until it returns want (ok false for
// ""), and returns how long that took.
func eventually(t *testing.T, s store.Store[string], key, want string) time.Duration {
	t.Helper()
	start := time.Now()
	deadline := start.Add(30 * time.Second)
	for {
		e, ok, err := s.Get(context.Background(), key)
		if err == nil && ok == (want != "") && e.Value == want {
			return time.Since(start)
		}
		if time.Now().After(deadline) {
			t.Fatalf("Get(%q) = %q, %v, %v after 30s; want %q", key, e.Value, ok, err, want)
		}
	}
}

// Writes by a plain Redis client, not through herd, reach every near tier:
// a SET, a DEL, and the server's own expiry of an entry.
func TestTieredInvalidatedByEveryWriter(t *testing.T) {
	srv := startRedis(t)
	fl := tieredFleet(t, func() redis.UniversalClient { return srv.client(t) }, 3)
	plain := srv.client(t)
	ctx := context.Background()
	raw := redisstore.New[string](plain, redisstore.Prefix(prefixOf(t))).Key("user:42")
	if err := fl[0].Set(ctx, "user:42", store.Entry[string]{Value: "herd"}); err != nil {
		t.Fatal(err)
	}
	for _, s := range fl {
		eventually(t, s, "user:42", "herd") // each holds a near copy
	}
	data, err := store.Encode[string](store.JSON[string]{}, store.Entry[string]{Value: "plain"})
	if err != nil {
		t.Fatal(err)
	}
	if err := plain.Set(ctx, raw, data, 0).Err(); err != nil {
		t.Fatal(err)
	}
	for _, s := range fl {
		eventually(t, s, "user:42", "plain")
	}
	if err := plain.Del(ctx, raw).Err(); err != nil {
		t.Fatal(err)
	}
	for _, s := range fl {
		eventually(t, s, "user:42", "")
	}
	// An expiry on the server, shorter than the entry's KeepUntil: only
	// the change stream can tell the near tiers.
	if err := fl[0].Set(ctx, "user:42", store.Entry[string]{Value: "expiring"}); err != nil {
		t.Fatal(err)
	}
	for _, s := range fl {
		eventually(t, s, "user:42", "expiring")
	}
	if err := plain.PExpire(ctx, raw, 50*time.Millisecond).Err(); err != nil {
		t.Fatal(err)
	}
	for _, s := range fl {
		eventually(t, s, "user:42", "")
	}
}

// The tracking connections killed (CLIENT KILL TYPE pubsub): every near
// tier is flushed, nothing stale is read afterwards, and invalidations
// resume.
func TestTieredTrackingConnectionKilled(t *testing.T) {
	srv := startRedis(t)
	fl := tieredFleet(t, func() redis.UniversalClient { return srv.client(t) }, 3)
	admin := srv.client(t)
	ctx := context.Background()
	if err := fl[0].Set(ctx, "k", store.Entry[string]{Value: "before"}); err != nil {
		t.Fatal(err)
	}
	for _, s := range fl {
		eventually(t, s, "k", "before")
	}
	if n, err := admin.ClientKillByFilter(ctx, "TYPE", "pubsub").Result(); err != nil || n != 3 {
		t.Fatalf("CLIENT KILL TYPE pubsub: %d, %v; want the 3 tracking connections", n, err)
	}
	for i, s := range fl {
		waitFor(t, fmt.Sprintf("instance %d repaired", i), func() bool { return s.Stats().Repairs > 0 })
	}
	// A write made while the watches reconnect is read everywhere.
	if err := fl[1].Set(ctx, "k", store.Entry[string]{Value: "during"}); err != nil {
		t.Fatal(err)
	}
	for _, s := range fl {
		eventually(t, s, "k", "during")
	}
	// Invalidations resume: a write once every instance holds a near copy
	// reaches them all.
	for round := range 3 {
		want := fmt.Sprintf("after-%d", round)
		if err := fl[round%3].Set(ctx, "k", store.Entry[string]{Value: want}); err != nil {
			t.Fatal(err)
		}
		for _, s := range fl {
			eventually(t, s, "k", want)
		}
	}
}

// On a three-master Cluster, writes of keys on every master invalidate
// every near tier; one master's tracking connection killed has them revalidated.
func TestTieredClusterThreeMasters(t *testing.T) {
	srvs := startCluster3(t)
	fl := tieredFleet(t, func() redis.UniversalClient { return clusterClient(t, srvs[0]) }, 3)
	ctx := context.Background()
	keyOf := redisstore.New[string](clusterClient(t, srvs[0]), redisstore.Prefix(prefixOf(t))).Key
	onMaster := make([]string, 3)
	for i := 0; onMaster[0] == "" || onMaster[1] == "" || onMaster[2] == ""; i++ {
		key := fmt.Sprintf("key-%d", i)
		if m := clusterSlot(t, srvs[0], keyOf(key)) * 3 / 16384; onMaster[m] == "" {
			onMaster[m] = key
		}
	}
	for round := range 3 {
		want := strconv.Itoa(round)
		for _, key := range onMaster {
			if err := fl[round].Set(ctx, key, store.Entry[string]{Value: want}); err != nil {
				t.Fatal(err)
			}
		}
		for _, s := range fl {
			for _, key := range onMaster {
				eventually(t, s, key, want)
			}
		}
	}
	for m, srv := range srvs {
		before := make([]uint64, len(fl))
		for i, s := range fl {
			before[i] = s.Stats().Repairs
		}
		if n, err := srv.client(t).ClientKillByFilter(ctx, "TYPE", "pubsub").Result(); err != nil || n != 3 {
			t.Fatalf("CLIENT KILL TYPE pubsub on master %d: %d, %v; want 3", m, n, err)
		}
		for i, s := range fl {
			waitFor(t, fmt.Sprintf("instance %d repaired after master %d's kill", i, m), func() bool { return s.Stats().Repairs > before[i] })
		}
		want := fmt.Sprintf("after-kill-%d", m)
		if err := fl[0].Set(ctx, onMaster[m], store.Entry[string]{Value: want}); err != nil {
			t.Fatal(err)
		}
		for _, s := range fl {
			eventually(t, s, onMaster[m], want)
		}
	}
}

// heldStore holds its next Get, once it has read, until released.
type heldStore struct {
	*redisstore.Store[string]
	reading, release chan struct{}
}

func (h *heldStore) Get(ctx context.Context, key string) (store.Entry[string], bool, error) {
	e, ok, err := h.Store.Get(ctx, key)
	if h.reading != nil {
		close(h.reading)
		h.reading = nil
		<-h.release
	}
	return e, ok, err
}

// The fill race on a real server: a far read that read the old value is
// held until a plain client's write of the key has been delivered; the
// near tier must not keep the old value.
func TestTieredFillRace(t *testing.T) {
	srv := startRedis(t)
	plain := srv.client(t)
	ctx := context.Background()
	rs := redisstore.New[string](srv.client(t), redisstore.Prefix(prefixOf(t)), redisstore.WithLogger(discard()))
	if err := rs.Set(ctx, "k", store.Entry[string]{Value: "old"}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = rs.Close(context.Background()) })
	far := &heldStore{Store: rs, reading: make(chan struct{}), release: make(chan struct{})}
	s, err := tiered.NewVersioned[string](far)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close(context.Background()) })
	reading := far.reading
	first := make(chan string)
	go func() {
		e, _, err := s.Get(ctx, "k")
		if err != nil {
			t.Error(err)
		}
		first <- e.Value
	}()
	<-reading
	data, err := store.Encode[string](store.JSON[string]{}, store.Entry[string]{Value: "new"})
	if err != nil {
		t.Fatal(err)
	}
	before := s.Stats().Changes
	if err := plain.Set(ctx, rs.Key("k"), data, 0).Err(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the change delivered", func() bool { return s.Stats().Changes > before })
	close(far.release)
	if got := <-first; got != "old" {
		t.Fatalf("the held read returned %q, want the old value it read", got)
	}
	if e, ok, err := s.Get(ctx, "k"); err != nil || !ok || e.Value != "new" {
		t.Fatalf("Get after the change = %q, %v, %v; want new: the near tier kept the held read's old value", e.Value, ok, err)
	}
	if st := s.Stats(); st.DiscardedFills != 1 {
		t.Fatalf("stats %+v, want 1 discarded fill", st)
	}
}
