package redisstore_test

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/herdcache/herd/internal/herdtest"
	"github.com/herdcache/herd/redisstore"
	"github.com/herdcache/herd/store"
	"github.com/herdcache/herd/store/tiered"
)

// behind returns a two-level store of strings over a server, reached through
// the proxy p (so that the test can cut or stall this instance alone),
// with t's prefix.
func behind(t *testing.T, p *herdtest.Proxy, opts ...tiered.Option) *tiered.VersionedStore[string] {
	t.Helper()
	far := redisstore.New[string](newClient(t, p.Addr()), redisstore.Prefix(prefixOf(t)), redisstore.WithLogger(discard()))
	t.Cleanup(func() { _ = far.Close(context.Background()) })
	s, err := tiered.NewVersioned[string](far, opts...)
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

// holdKeys writes n keys through w and reads each through every store of
// rs until it holds it near.
func holdKeys(t *testing.T, w store.Store[string], n int, rs ...*tiered.VersionedStore[string]) {
	t.Helper()
	ctx := context.Background()
	for i := range n {
		if err := w.Set(ctx, fmt.Sprint(i), store.Entry[string]{Value: "v0"}); err != nil {
			t.Fatal(err)
		}
	}
	for _, s := range rs {
		for i := range n {
			eventually(t, s, fmt.Sprint(i), "v0")
		}
	}
}

// An instance whose far tier becomes unreachable (the server killed, its
// connection frozen, or the instance partitioned away) serves the near
// copies it holds, without a far read, until their NearTTL; past it, a read
// goes to the far tier and fails.
func TestTieredServesThroughOutage(t *testing.T) {
	const nearTTL = 5 * time.Second
	for _, fault := range []string{"kill", "freeze", "partition"} {
		t.Run(fault, func(t *testing.T) {
			t.Parallel()
			srv := startRedis(t)
			p := herdtest.NewProxy(t, srv.addr())
			s := behind(t, p, tiered.NearTTL(nearTTL))
			start := time.Now()
			holdKeys(t, s, 100, s)
			switch fault {
			case "kill":
				srv.stop()
			case "freeze":
				p.Stall()
				defer p.Resume()
			case "partition":
				p.Cut()
			}
			reads := s.Stats().FarReads
			waitFor(t, "the stream reported Down", func() bool { return s.Stats().Downs > 0 })
			for i := range 100 {
				e, ok, err := s.Get(context.Background(), fmt.Sprint(i))
				if err != nil || !ok || e.Value != "v0" {
					t.Fatalf("Get(%d) in the outage = %+v, %v, %v; want the near copy", i, e, ok, err)
				}
			}
			if st := s.Stats(); st.FarReads != reads || st.Flushes != 0 {
				t.Fatalf("in the outage: %+v; want no far read (%d before) and no flush", st, reads)
			}
			time.Sleep(time.Until(start.Add(nearTTL)))
			ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
			defer cancel()
			if e, ok, err := s.Get(ctx, "0"); err == nil {
				t.Fatalf("Get past NearTTL in the outage = %+v, %v; want the far tier's error", e, ok)
			}
		})
	}
}

// A write through an instance cut from the server fails and leaves no near
// copy.
func TestTieredWriteInOutageFails(t *testing.T) {
	srv := startRedis(t)
	p := herdtest.NewProxy(t, srv.addr())
	s := behind(t, p)
	holdKeys(t, s, 1, s)
	p.Cut()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if err := s.Set(ctx, "0", store.Entry[string]{Value: "v1"}); err == nil {
		t.Fatal("Set through a cut connection succeeded")
	}
	if e, ok, err := s.Get(ctx, "0"); err == nil || errors.Is(err, context.Canceled) {
		t.Fatalf("Get after the failed Set = %+v, %v, %v; want the far tier's error", e, ok, err)
	}
}
