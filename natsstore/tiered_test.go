package natsstore_test

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/herdcache/herd/natsstore"
	"github.com/herdcache/herd/store"
	"github.com/herdcache/herd/store/storetest"
	"github.com/herdcache/herd/store/tiered"
)

// The conformance suite on the two-level store over NATS: each store of a
// subtest is a near tier of its own over a new connection to the subtest's
// bucket.
func TestTieredConformance(t *testing.T) {
	srv := startServer(t)
	var (
		mu      sync.Mutex
		buckets = map[string]string{}
	)
	storetest.RunWith(t, storetest.Options{LockTTL: time.Second}, func(t *testing.T) store.Store[storetest.Value] {
		mu.Lock()
		b, ok := buckets[t.Name()]
		if !ok {
			b = fmt.Sprintf("tiered-%d", len(buckets))
			buckets[t.Name()] = b
		}
		mu.Unlock()
		_, js := connect(t, srv.url())
		far := newStore[storetest.Value](t, js, b, natsstore.WithCodec[storetest.Value](gobCodec[storetest.Value]{}))
		return newTiered(t, far)
	})
}

func newTiered[T any](t *testing.T, far *natsstore.Store[T]) *tiered.VersionedStore[T] {
	t.Helper()
	s, err := tiered.NewVersioned[T](far)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close(context.Background()) }) // before the far store's
	return s
}

// instance is one process of a two-level fleet: its near tier over its own
// connection to the shared bucket.
type instance struct {
	nc   *nats.Conn
	js   jetstream.JetStream
	far  *natsstore.Store[string]
	near *tiered.VersionedStore[string]
}

func newTieredFleet(t *testing.T, srv *natsServer, bucket string, n int) []*instance {
	t.Helper()
	fleet := make([]*instance, n)
	for i := range fleet {
		nc, js := connect(t, srv.url())
		far := newStore[string](t, js, bucket, natsstore.MarkerTTL(time.Second))
		fleet[i] = &instance{nc: nc, js: js, far: far, near: newTiered(t, far)}
	}
	return fleet
}

// eventually polls a Get of key on in until it returns want, and returns
// how long that took.
func (in *instance) eventually(t *testing.T, key, want string) time.Duration {
	t.Helper()
	start := time.Now()
	deadline := start.Add(20 * time.Second)
	for {
		e, ok, err := in.near.Get(context.Background(), key)
		if err == nil && ok && e.Value == want {
			return time.Since(start)
		}
		if time.Now().After(deadline) {
			t.Fatalf("Get(%q) = %q, %v, %v after 20s; want %q", key, e.Value, ok, err, want)
		}
	}
}

// Writes by anything but herd reach every near tier: a plain KV client's
// Put, its Delete, and the server's own expiry of an entry.
func TestTieredInvalidatedByEveryWriter(t *testing.T) {
	srv := startServer(t)
	fleet := newTieredFleet(t, srv, "writers", 3)
	ctx := context.Background()
	if err := fleet[0].near.Set(ctx, "user:42", store.Entry[string]{Value: "herd"}); err != nil {
		t.Fatal(err)
	}
	for _, in := range fleet {
		in.eventually(t, "user:42", "herd") // each holds a near copy
	}
	raw, err := fleet[0].js.KeyValue(ctx, "writers")
	if err != nil {
		t.Fatal(err)
	}
	data, err := store.Encode[string](store.JSON[string]{}, store.Entry[string]{Value: "raw"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := raw.Put(ctx, "d.kuser=3A42", data); err != nil {
		t.Fatal(err)
	}
	for _, in := range fleet {
		in.eventually(t, "user:42", "raw")
	}
	if err := raw.Delete(ctx, "d.kuser=3A42"); err != nil {
		t.Fatal(err)
	}
	for i, in := range fleet {
		waitFor(t, 20*time.Second, fmt.Sprintf("instance %d drops the deleted key", i), func() bool {
			_, ok, err := in.near.Get(ctx, "user:42")
			return err == nil && !ok
		})
	}
	// The server's expiry is a change too: every instance counts it.
	before := make([]uint64, len(fleet))
	for i, in := range fleet {
		before[i] = in.near.Stats().Changes
	}
	if err := fleet[0].near.Set(ctx, "short", store.Entry[string]{Value: "v", KeepUntil: time.Now().Add(time.Second)}); err != nil {
		t.Fatal(err)
	}
	for i, in := range fleet {
		// The write, then the server's expiry marker.
		waitFor(t, 20*time.Second, fmt.Sprintf("instance %d sees the write and the expiry", i), func() bool {
			return in.near.Stats().Changes >= before[i]+2
		})
	}
}

// The NATS server restarts: while it is down, every instance serves its
// near copies; after, no instance serves a value older than a write made
// after the restart, and invalidations resume.
func TestTieredServerRestart(t *testing.T) {
	srv := startServer(t)
	fleet := newTieredFleet(t, srv, "restart", 3)
	ctx := context.Background()
	if err := fleet[0].near.Set(ctx, "k", store.Entry[string]{Value: "before"}); err != nil {
		t.Fatal(err)
	}
	for _, in := range fleet {
		in.eventually(t, "k", "before")
	}
	srv.stop()
	for i, in := range fleet {
		waitFor(t, 20*time.Second, fmt.Sprintf("instance %d sees the stream Down", i), func() bool { return in.near.Stats().Downs > 0 })
		// The near copy is served through the outage, without the server.
		reads := in.near.Stats().FarReads
		if e, ok, err := in.near.Get(ctx, "k"); err != nil || !ok || e.Value != "before" {
			t.Fatalf("instance %d with the server stopped: %+v, %v, %v; want its near copy (%+v)", i, e, ok, err, in.near.Stats())
		}
		if st := in.near.Stats(); st.FarReads != reads || st.Flushes != 0 {
			t.Fatalf("instance %d with the server stopped: %+v, want no far read and no flush", i, st)
		}
	}
	srv.start()
	for _, in := range fleet {
		waitFor(t, 20*time.Second, "reconnected", in.nc.IsConnected)
	}
	waitFor(t, 20*time.Second, "write after the restart", func() bool {
		wctx, cancel := context.WithTimeout(ctx, time.Second)
		defer cancel()
		return fleet[0].near.Set(wctx, "k", store.Entry[string]{Value: "after"}) == nil
	})
	for _, in := range fleet {
		in.eventually(t, "k", "after")
	}
	// Each instance holds "after" near; a write now must reach them all.
	if err := fleet[1].near.Set(ctx, "k", store.Entry[string]{Value: "resumed"}); err != nil {
		t.Fatal(err)
	}
	for _, in := range fleet {
		in.eventually(t, "k", "resumed")
	}
}
