package natsstore_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/herdcache/herd/natsstore"
	"github.com/herdcache/herd/store"
)

// changes collects what a watch reports.
type changes chan store.Change

func watchChanges(t *testing.T, s store.ChangeStream) changes {
	t.Helper()
	c := make(changes, 10000)
	w, err := s.Watch(context.Background(), func(ch store.Change) { c <- ch })
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = w.Close() })
	return c
}

// next returns the next change, failing the test if none comes within.
func (c changes) next(t *testing.T, within time.Duration, what string) store.Change {
	t.Helper()
	select {
	case ch := <-c:
		return ch
	case <-time.After(within):
		t.Fatalf("%s: no change within %v", what, within)
		return store.Change{}
	}
}

// key waits for a change of key, failing on All or a timeout.
func (c changes) key(t *testing.T, key string) {
	t.Helper()
	for {
		ch := c.next(t, 20*time.Second, "change of "+key)
		if ch.All {
			t.Fatalf("All while waiting for %q", key)
		}
		if ch.Key == key {
			return
		}
	}
}

// A write of the bucket by a plain KV client, its delete and purge, and the
// server's own expiry of an entry each reach a watch as the herd key.
func TestWatchEveryWriter(t *testing.T) {
	srv := startServer(t)
	_, js := connect(t, srv.url())
	_, rawJS := connect(t, srv.url())
	s := newStore[string](t, js, "every", natsstore.MarkerTTL(time.Second))
	got := watchChanges(t, s)
	ctx := context.Background()
	raw, err := rawJS.KeyValue(ctx, "every")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := raw.Put(ctx, "d.kuser=3A42", []byte("not an envelope")); err != nil {
		t.Fatal(err)
	}
	got.key(t, "user:42")
	if err := raw.Delete(ctx, "d.kuser=3A42"); err != nil {
		t.Fatal(err)
	}
	got.key(t, "user:42")
	if err := raw.Purge(ctx, "d.kuser=3A43"); err != nil {
		t.Fatal(err)
	}
	got.key(t, "user:43")
	if _, err := raw.Put(ctx, "other.key", []byte("x")); err != nil { // not a herd key: nothing
		t.Fatal(err)
	}

	if err := s.Set(ctx, "short", store.Entry[string]{Value: "v", KeepUntil: time.Now().Add(time.Second)}); err != nil {
		t.Fatal(err)
	}
	got.key(t, "short") // the write
	got.key(t, "short") // the server's expiry marker
	if _, v, ok, err := s.GetVersion(ctx, "short"); ok || err != nil || v == 0 {
		t.Fatalf("after the expiry: version %d, found %v, %v; want a miss with the marker's version", v, ok, err)
	}
}

// Long keys are hashed; a watch still reports them by their key: values and
// deletes name it, and an expiry is mapped through the keys the watch saw
// written. An expiry of a hashed key it never saw written is All.
func TestWatchHashedKeys(t *testing.T) {
	srv := startServer(t)
	_, js := connect(t, srv.url())
	s := newStore[string](t, js, "hashed", natsstore.MarkerTTL(time.Second))
	ctx := context.Background()
	unseen := strings.Repeat("u", 2000)
	if err := s.Set(ctx, unseen, store.Entry[string]{Value: "v", KeepUntil: time.Now().Add(2 * time.Second)}); err != nil {
		t.Fatal(err)
	}
	got := watchChanges(t, s)
	long := strings.Repeat("x", 2000)
	if err := s.Set(ctx, long, store.Entry[string]{Value: "v", KeepUntil: time.Now().Add(time.Second)}); err != nil {
		t.Fatal(err)
	}
	got.key(t, long)
	var all, expired bool
	for !all || !expired {
		ch := got.next(t, 20*time.Second, "expiries of the hashed keys")
		switch {
		case ch.All:
			all = true
		case ch.Key == long:
			expired = true
		default:
			t.Fatalf("unexpected change %+v", ch)
		}
	}
	if err := s.Delete(ctx, unseen); err != nil {
		t.Fatal(err)
	}
	got.key(t, unseen)
}

// The server restarts under a watch: the watch reports All, and changes
// made after it vouches again arrive, by every writer.
func TestWatchServerRestart(t *testing.T) {
	srv := startServer(t)
	pubNC, pubJS := connect(t, srv.url())
	_, subJS := connect(t, srv.url())
	pub := newStore[string](t, pubJS, "restart")
	sub := newStore[string](t, subJS, "restart")
	got := watchChanges(t, sub)
	ctx := context.Background()
	if err := pub.Set(ctx, "before", store.Entry[string]{Value: "v"}); err != nil {
		t.Fatal(err)
	}
	got.key(t, "before")

	srv.stop()
	if c := got.next(t, 10*time.Second, "All when the server goes"); !c.All {
		t.Fatalf("got %+v, want All", c)
	}
	srv.start()
	waitFor(t, 20*time.Second, "publisher reconnected", pubNC.IsConnected)
	// The watch reports All again once its new consumer runs; every change
	// after that arrives.
	if c := got.next(t, 20*time.Second, "All when the watch resumes"); !c.All {
		t.Fatalf("got %+v, want All", c)
	}
	// A server just restarted may make the watch lose its footing once more
	// (a missed heartbeat on a loaded machine): that is another All, which
	// covers the key; the key is then written again. A stream that keeps
	// failing fails the test.
	alls := 0
	for i := range 100 {
		k := fmt.Sprintf("key-%d", i)
		for delivered := false; !delivered; {
			waitFor(t, 20*time.Second, "write after the restart", func() bool {
				wctx, cancel := context.WithTimeout(ctx, time.Second)
				defer cancel()
				return pub.Set(wctx, k, store.Entry[string]{Value: "v"}) == nil
			})
			for {
				c := got.next(t, 20*time.Second, k)
				if c.All {
					if alls++; alls > 3 {
						t.Fatalf("the watch reported All %d times after it resumed", alls)
					}
					break // write k again
				}
				if c.Key == k {
					delivered = true
					break
				}
			}
		}
	}
}

// A watcher whose own connection drops and comes back (the server and the
// writers go on) reports All before any further change.
func TestWatchReconnect(t *testing.T) {
	srv := startServer(t)
	p := startProxy(t, fmt.Sprintf("127.0.0.1:%d", srv.port))
	_, pubJS := connect(t, srv.url())
	subNC, subJS := connect(t, p.url())
	pub := newStore[string](t, pubJS, "reconnect")
	sub := newStore[string](t, subJS, "reconnect")
	got := watchChanges(t, sub)
	ctx := context.Background()
	if err := pub.Set(ctx, "before", store.Entry[string]{Value: "v"}); err != nil {
		t.Fatal(err)
	}
	got.key(t, "before")
	p.Cut()
	waitFor(t, 10*time.Second, "watcher disconnected", func() bool { return !subNC.IsConnected() })
	for i := range 10 { // missed while away
		if err := pub.Set(ctx, fmt.Sprintf("away-%d", i), store.Entry[string]{Value: "v"}); err != nil {
			t.Fatal(err)
		}
	}
	p.Restore()
	waitFor(t, 10*time.Second, "watcher reconnected", subNC.IsConnected)
	// All at the loss and again at the resumption; then changes.
	for range 2 {
		if c := got.next(t, 20*time.Second, "All"); !c.All {
			t.Fatalf("got %+v before All", c)
		}
	}
	if err := pub.Set(ctx, "after", store.Entry[string]{Value: "v"}); err != nil {
		t.Fatal(err)
	}
	got.key(t, "after")
}

// Watch after Close is ErrClosed; Close ends the store's watches, so fn is
// not called after it (goleak checks the goroutines).
func TestWatchClose(t *testing.T) {
	srv := startServer(t)
	_, js := connect(t, srv.url())
	s, err := natsstore.New[string](context.Background(), js, "wclose")
	if err != nil {
		t.Fatal(err)
	}
	var calls atomic.Int32
	w, err := s.Watch(context.Background(), func(store.Change) { calls.Add(1) })
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	before := calls.Load()
	kv, err := js.KeyValue(context.Background(), "wclose")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := kv.Put(context.Background(), "d.kafter", []byte("x")); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil { // already closed by the store: idempotent
		t.Fatal(err)
	}
	if calls.Load() != before {
		t.Fatal("fn called after Close")
	}
	if _, err := s.Watch(context.Background(), func(store.Change) {}); !errors.Is(err, natsstore.ErrClosed) {
		t.Fatalf("Watch after Close: %v, want ErrClosed", err)
	}
}

// A watch whose function falls thousands of changes behind reports All and
// starts again, instead of buffering without bound; later changes arrive.
func TestWatchFallsBehind(t *testing.T) {
	srv := startServer(t)
	_, js := connect(t, srv.url())
	s := newStore[string](t, js, "behind")
	release := make(chan struct{})
	got := make(chan store.Change, 20000)
	w, err := s.Watch(context.Background(), func(c store.Change) {
		if c.Key == "block" {
			<-release
		}
		got <- c
	})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	ctx := context.Background()
	if err := s.Set(ctx, "block", store.Entry[string]{Value: "v"}); err != nil {
		t.Fatal(err)
	}
	for i := range 6000 {
		if err := s.Set(ctx, fmt.Sprint(i), store.Entry[string]{Value: "v"}); err != nil {
			t.Fatal(err)
		}
	}
	close(release)
	n := 0
	for {
		c := changes(got).next(t, 20*time.Second, "All after falling behind")
		if c.All {
			break
		}
		n++
	}
	if n > 4100 {
		t.Fatalf("%d changes delivered before All, want at most the buffer", n)
	}
	for {
		if c := changes(got).next(t, 20*time.Second, "All at the new start"); c.All {
			break
		}
	}
	if err := s.Set(ctx, "after", store.Entry[string]{Value: "v"}); err != nil {
		t.Fatal(err)
	}
	changes(got).key(t, "after")
}

// The watch's consumer deleted on the server (an operator, a server that
// lost it) is a loss the watch reports as All; it starts a new consumer and
// changes arrive again.
func TestWatchConsumerDeleted(t *testing.T) {
	srv := startServer(t)
	_, js := connect(t, srv.url())
	s := newStore[string](t, js, "lostconsumer")
	got := watchChanges(t, s)
	ctx := context.Background()
	stream, err := js.Stream(ctx, "KV_lostconsumer")
	if err != nil {
		t.Fatal(err)
	}
	names := stream.ConsumerNames(ctx)
	var deleted int
	for name := range names.Name() {
		if err := stream.DeleteConsumer(ctx, name); err != nil {
			t.Fatal(err)
		}
		deleted++
	}
	if names.Err() != nil || deleted != 1 {
		t.Fatalf("deleted %d consumers (%v), want the watch's one", deleted, names.Err())
	}
	for range 2 { // at the loss, and once the new consumer runs
		if c := got.next(t, 20*time.Second, "All after the consumer was deleted"); !c.All {
			t.Fatalf("got %+v, want All", c)
		}
	}
	if err := s.Set(ctx, "after", store.Entry[string]{Value: "v"}); err != nil {
		t.Fatal(err)
	}
	got.key(t, "after")
}
