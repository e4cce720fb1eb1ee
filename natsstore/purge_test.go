package natsstore_test

import (
	"context"
	"fmt"
	"log/slog"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/herdcache/herd/natsstore"
	"github.com/herdcache/herd/store"
)

func isAll(c store.Change) bool { return c.All }

// lost fails t unless cs, what came from a Down to its Up, holds an All.
func lost(t *testing.T, cs []store.Change, what string) {
	t.Helper()
	for _, c := range cs {
		if c.All {
			return
		}
	}
	t.Fatalf("%s: no All before Up: %+v", what, cs)
}

// A purge through the JetStream API leaves no marker in the stream: the
// watch sees its request and reports Down at once, then All and Up; for a
// purge of the whole stream and of one key's subject. Changes arrive after
// each. (A KV bucket refuses the deletion of a message.)
func TestWatchPurgeIsAll(t *testing.T) {
	srv := startServer(t)
	_, js := connect(t, srv.url())
	_, admin := connect(t, srv.url())
	ctx := context.Background()
	s := newStore[string](t, js, "purged")
	got := watchChanges(t, s)
	stream, err := admin.Stream(ctx, "KV_purged")
	if err != nil {
		t.Fatal(err)
	}
	for _, purge := range []struct {
		name string
		do   func() error
	}{
		{"the whole stream", func() error { return stream.Purge(ctx) }},
		{"one subject", func() error { return stream.Purge(ctx, jetstream.WithPurgeSubject("$KV.purged.d.kk")) }},
	} {
		if err := s.Set(ctx, "k", store.Entry[string]{Value: "v"}); err != nil {
			t.Fatal(err)
		}
		got.key(t, "k")
		if err := purge.do(); err != nil {
			t.Fatalf("purge %s: %v", purge.name, err)
		}
		if c := got.next(t, 10*time.Second, "Down at the purge of "+purge.name); !c.Down {
			t.Fatalf("purge of %s: got %+v, want Down", purge.name, c)
		}
		lost(t, got.until(t, 10*time.Second, "Up after the purge of "+purge.name, isUp), "purge of "+purge.name)
		if _, ok, err := s.Get(ctx, "k"); ok || err != nil {
			t.Fatalf("after the purge of %s: Get found %v, %v; want a miss", purge.name, ok, err)
		}
		if err := s.Set(ctx, "after", store.Entry[string]{Value: "v"}); err != nil {
			t.Fatal(err)
		}
		got.key(t, "after")
	}
}

// A watch cut while the stream cannot keep what it would replay reports
// All before its Up: the stream purged meanwhile (its first message is now
// past the watch's position, and the purge's request went unseen), the
// bucket deleted and created again, and a cut longer than the bucket keeps
// the markers of deletes.
func TestWatchCannotResume(t *testing.T) {
	for _, tc := range []struct {
		name   string
		opts   []natsstore.Option
		during func(t *testing.T, ctx context.Context, js jetstream.JetStream, bucket string)
	}{
		{"purged", nil, func(t *testing.T, ctx context.Context, js jetstream.JetStream, bucket string) {
			stream, err := js.Stream(ctx, "KV_"+bucket)
			if err != nil {
				t.Fatal(err)
			}
			if err := stream.Purge(ctx); err != nil {
				t.Fatal(err)
			}
		}},
		{"recreated", nil, func(t *testing.T, ctx context.Context, js jetstream.JetStream, bucket string) {
			if err := js.DeleteKeyValue(ctx, bucket); err != nil {
				t.Fatal(err)
			}
			newStore[string](t, js, bucket)
		}},
		{"markers outlived", []natsstore.Option{natsstore.MarkerTTL(time.Second)}, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := startServer(t)
			p := startProxy(t, fmt.Sprintf("127.0.0.1:%d", srv.port))
			_, pubJS := connect(t, srv.url())
			subNC, subJS := connect(t, p.url())
			ctx := context.Background()
			const bucket = "resume"
			pub := newStore[string](t, pubJS, bucket, tc.opts...)
			sub := newStore[string](t, subJS, bucket, tc.opts...)
			got := watchChanges(t, sub)
			if err := pub.Set(ctx, "before", store.Entry[string]{Value: "v"}); err != nil {
				t.Fatal(err)
			}
			got.key(t, "before")
			p.Cut()
			waitFor(t, 10*time.Second, "watcher disconnected", func() bool { return !subNC.IsConnected() })
			if c := got.next(t, 20*time.Second, "Down"); !c.Down {
				t.Fatalf("got %+v, want Down", c)
			}
			if err := pub.Set(ctx, "away", store.Entry[string]{Value: "v"}); err != nil {
				t.Fatal(err)
			}
			if tc.during != nil {
				tc.during(t, ctx, pubJS, bucket)
			}
			p.Restore()
			lost(t, got.until(t, 20*time.Second, "Up", isUp), tc.name)
			pub = newStore[string](t, pubJS, bucket, tc.opts...) // the bucket may be a new one
			if err := pub.Set(ctx, "after", store.Entry[string]{Value: "v"}); err != nil {
				t.Fatal(err)
			}
			got.key(t, "after")
		})
	}
}

// A bucket that discards messages without markers makes the watch look at
// its stream's first message every second, and report All once the oldest
// messages went: a max age without a marker TTL, and a stream made to
// discard old messages at its MaxBytes.
func TestWatchSilentDiscardsAreAll(t *testing.T) {
	for _, tc := range []struct {
		name   string
		adjust func(*jetstream.KeyValueConfig)
		writes int
	}{
		{"max age", func(c *jetstream.KeyValueConfig) { c.TTL = time.Second }, 1},
		{"max bytes", func(c *jetstream.KeyValueConfig) { c.MaxBytes = 16 << 10 }, 64},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := startServer(t)
			_, js := connect(t, srv.url())
			ctx := context.Background()
			cfg := jetstreamConfig("limited")
			tc.adjust(&cfg)
			if _, err := js.CreateKeyValue(ctx, cfg); err != nil {
				t.Fatal(err)
			}
			stream, err := js.Stream(ctx, "KV_limited")
			if err != nil {
				t.Fatal(err)
			}
			scfg := stream.CachedInfo().Config
			scfg.Discard = jetstream.DiscardOld // a KV bucket's is DiscardNew
			if _, err := js.UpdateStream(ctx, scfg); err != nil {
				t.Fatal(err)
			}
			s := newStore[[]byte](t, js, "limited", natsstore.WithCodec[[]byte](store.Bytes{}))
			got := watchChanges(t, s)
			for i := range tc.writes { // 64 KiB into 16
				if err := s.Set(ctx, fmt.Sprint(i), store.Entry[[]byte]{Value: make([]byte, 1024)}); err != nil {
					t.Fatal(err)
				}
			}
			waitFor(t, 20*time.Second, "the first key discarded", func() bool {
				_, ok, err := s.Get(ctx, "0")
				return !ok && err == nil
			})
			got.until(t, 20*time.Second, "All after the discards", isAll)
		})
	}
}

// On a bucket with a max age and a marker TTL, the server replaces an
// entry past the max age by a marker: the watch reports its key, at the
// marker's version.
func TestWatchMaxAgeMarker(t *testing.T) {
	srv := startServer(t)
	_, js := connect(t, srv.url())
	ctx := context.Background()
	if _, err := js.CreateKeyValue(ctx, jetstream.KeyValueConfig{
		Bucket: "aged", History: 1, TTL: time.Second, LimitMarkerTTL: time.Second,
	}); err != nil {
		t.Fatal(err)
	}
	s := newStore[string](t, js, "aged")
	got := watchChanges(t, s)
	if err := s.Set(ctx, "k", store.Entry[string]{Value: "v"}); err != nil {
		t.Fatal(err)
	}
	written := got.next(t, 10*time.Second, "the write")
	aged := got.next(t, 20*time.Second, "the entry aged out")
	if aged.Key != "k" || aged.Version <= written.Version {
		t.Fatalf("after the write %+v: %+v, want a later change of k", written, aged)
	}
	if _, v, ok, err := s.GetVersion(ctx, "k"); ok || err != nil || v != aged.Version {
		t.Fatalf("GetVersion after the max age: version %d, found %v, %v; want a miss at %d", v, ok, err, aged.Version)
	}
}

// A bucket deleted and created again at once opens: the server may refuse
// the new bucket's storage for a moment while it moves the old one's files
// away (JetStream's 10049), and New tries again.
func TestNewAfterDelete(t *testing.T) {
	srv := startServer(t)
	_, js := connect(t, srv.url())
	ctx := context.Background()
	for round := range 100 {
		s, err := natsstore.New[string](ctx, js, "again", natsstore.WithLogger(slog.New(slog.DiscardHandler)))
		if err != nil {
			t.Fatalf("round %d: %v", round, err)
		}
		if err := s.Set(ctx, "k", store.Entry[string]{Value: "v"}); err != nil {
			t.Fatalf("round %d: %v", round, err)
		}
		if err := s.Close(ctx); err != nil {
			t.Fatal(err)
		}
		if err := js.DeleteKeyValue(ctx, "again"); err != nil {
			t.Fatal(err)
		}
	}
}
