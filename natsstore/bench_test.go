package natsstore_test

import (
	"context"
	"testing"
	"time"

	"github.com/herdcache/herd"
	"github.com/herdcache/herd/store"
)

// A hit through herd.Cache over natsstore against a raw KeyValue.Get of the
// same bytes, in one run on one server.
func BenchmarkGetHit(b *testing.B) {
	srv := startServer(b)
	_, js := connect(b, srv.url())
	ctx := context.Background()
	s := newStore[string](b, js, "bench")
	c := herd.New[string](s, herd.TTL(time.Hour))
	defer c.Close(ctx)
	if err := s.Set(ctx, "user:42", store.Entry[string]{Value: "Ada", ExpiresAt: time.Now().Add(time.Hour)}); err != nil {
		b.Fatal(err)
	}
	load := func(context.Context, string) (string, error) {
		b.Fatal("loader called on a hit")
		return "", nil
	}
	b.Run("impl=herd", func(b *testing.B) {
		for b.Loop() {
			if v, err := c.Get(ctx, "user:42", load); err != nil || v != "Ada" {
				b.Fatal(v, err)
			}
		}
	})
	b.Run("impl=kv", func(b *testing.B) {
		for b.Loop() {
			if _, err := s.KeyValue().Get(ctx, "d.kuser=3A42"); err != nil {
				b.Fatal(err)
			}
		}
	})
}
