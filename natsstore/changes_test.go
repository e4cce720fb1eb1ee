package natsstore_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
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

// until returns the changes delivered until one for which stop holds,
// that one included, failing the test if none comes within.
func (c changes) until(t *testing.T, within time.Duration, what string, stop func(store.Change) bool) []store.Change {
	t.Helper()
	var got []store.Change
	for {
		ch := c.next(t, within, what)
		got = append(got, ch)
		if stop(ch) {
			return got
		}
	}
}

func isUp(c store.Change) bool { return c.Up }

// replayed fails t unless cs (what came after a Down) holds a change of
// every key of want, and no loss.
func replayed(t *testing.T, cs []store.Change, want ...string) {
	t.Helper()
	seen := make(map[string]bool)
	for _, c := range cs {
		if c.All || c.Gap || c.Down {
			t.Fatalf("a loss while resuming: %+v", cs)
		}
		seen[c.Key] = true
	}
	for _, k := range want {
		if !seen[k] {
			t.Fatalf("%q, changed while the watch was cut, not replayed before Up: %+v", k, cs)
		}
	}
}

// The server restarts under a watch: the watch reports Down, then, as the
// stream survived (it is on disk), replays what it missed and reports Up;
// changes made after that arrive, by every writer.
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
	if c := got.next(t, 10*time.Second, "Down when the server goes"); !c.Down {
		t.Fatalf("got %+v, want Down", c)
	}
	srv.start()
	waitFor(t, 20*time.Second, "publisher reconnected", pubNC.IsConnected)
	replayed(t, got.until(t, 20*time.Second, "Up when the watch resumes", isUp))
	// A server just restarted may make the watch lose its footing once more
	// (a missed heartbeat on a loaded machine): that is another Down, and an
	// Up after the replay of what it missed. A stream that keeps failing
	// fails the test.
	downs := 0
	for i := range 100 {
		k := fmt.Sprintf("key-%d", i)
		waitFor(t, 20*time.Second, "write after the restart", func() bool {
			wctx, cancel := context.WithTimeout(ctx, time.Second)
			defer cancel()
			return pub.Set(wctx, k, store.Entry[string]{Value: "v"}) == nil
		})
		for delivered := false; !delivered; {
			c := got.next(t, 20*time.Second, k)
			switch {
			case c.All || c.Gap:
				t.Fatalf("%+v after the restart", c)
			case c.Down:
				if downs++; downs > 3 {
					t.Fatalf("the watch reported Down %d times after it resumed", downs)
				}
			case c.Key == k:
				delivered = true
			}
		}
	}
}

// A watcher whose own connection drops and comes back (the server and the
// writers go on) reports Down, replays the changes made while it was away,
// with their versions, and reports Up before any later change.
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
	if c := got.next(t, 20*time.Second, "Down"); !c.Down {
		t.Fatalf("got %+v, want Down", c)
	}
	var away []string
	versions := make(map[string]store.Version)
	for i := range 10 { // missed while away
		k := fmt.Sprintf("away-%d", i)
		away = append(away, k)
		if err := pub.Set(ctx, k, store.Entry[string]{Value: "v"}); err != nil {
			t.Fatal(err)
		}
		_, v, _, err := pub.GetVersion(ctx, k)
		if err != nil {
			t.Fatal(err)
		}
		versions[k] = v
	}
	p.Restore()
	waitFor(t, 10*time.Second, "watcher reconnected", subNC.IsConnected)
	cs := got.until(t, 20*time.Second, "Up", isUp)
	replayed(t, cs, away...)
	for _, c := range cs {
		if v, ok := versions[c.Key]; ok && c.Version != v {
			t.Fatalf("%q replayed at version %d, want %d", c.Key, c.Version, v)
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

// A watch whose function falls more than 16,384 changes behind gets one
// All in place of what was queued, instead of buffering without bound;
// later changes arrive.
func TestWatchFallsBehind(t *testing.T) {
	srv := startServer(t)
	_, js := connect(t, srv.url())
	s := newStore[string](t, js, "behind")
	release := make(chan struct{})
	got := make(chan store.Change, 30000)
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
	var once sync.Once
	unblock := func() { once.Do(func() { close(release) }) }
	defer unblock() // before Close, which waits for fn
	ctx := context.Background()
	if err := s.Set(ctx, "block", store.Entry[string]{Value: "v"}); err != nil {
		t.Fatal(err)
	}
	// Published in batches without waiting for each acknowledgement, so
	// that they pile up quickly.
	const writes = 20_000
	for i := range writes {
		if _, err := js.PublishAsync(fmt.Sprintf("$KV.behind.d.k%d", i), []byte("x")); err != nil {
			t.Fatal(err)
		}
		if i%1000 == 999 {
			select {
			case <-js.PublishAsyncComplete():
			case <-time.After(30 * time.Second):
				t.Fatal("publishes not acknowledged within 30s")
			}
		}
	}
	if err := s.Set(ctx, "last", store.Entry[string]{Value: "v"}); err != nil {
		t.Fatal(err)
	}
	// The server has sent the watch's consumer every message: the client
	// asks for more only once it handled most of what it was sent, so the
	// queue of the blocked fn overflowed.
	stream, err := js.Stream(ctx, "KV_behind")
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, 30*time.Second, "every message sent to the watch", func() bool {
		sent := false
		for info := range stream.ListConsumers(ctx).Info() {
			sent = info.Delivered.Stream >= writes+2
		}
		return sent
	})
	unblock()
	cs := changes(got).until(t, 20*time.Second, "the last change", func(c store.Change) bool { return c.Key == "last" })
	alls := 0
	for _, c := range cs {
		if c.All {
			alls++
		}
	}
	if alls != 1 || len(cs) > 16_384+3 {
		t.Fatalf("%d changes with %d All after falling %d behind, want one All in place of the queue", len(cs), alls, writes)
	}
}

// The watch's consumer deleted on the server (an operator, a server that
// lost it) is a cut the watch reports as Down; it starts a new consumer from
// where the old one left off, reports Up, and changes arrive again.
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
	if c := got.next(t, 20*time.Second, "Down after the consumer was deleted"); !c.Down {
		t.Fatalf("got %+v, want Down", c)
	}
	replayed(t, got.until(t, 20*time.Second, "Up once the new consumer runs", isUp))
	if err := s.Set(ctx, "after", store.Entry[string]{Value: "v"}); err != nil {
		t.Fatal(err)
	}
	got.key(t, "after")
}
