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

// behind returns a two-level store of strings over srv, reached through
// the proxy p when it is not nil (so that the test can cut or stall this
// instance alone), with t's prefix.
func behind(t *testing.T, srv *redisServer, p *herdtest.Proxy, opts ...tiered.Option) *tiered.VersionedStore[string] {
	t.Helper()
	addr := srv.addr()
	if p != nil {
		addr = p.Addr()
	}
	far := redisstore.New[string](newClient(t, addr), redisstore.Prefix(prefixOf(t)), redisstore.WithLogger(discard()))
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
			s := behind(t, srv, p, tiered.NearTTL(nearTTL))
			w := behind(t, srv, nil) // another instance writes: s's copies come from its far reads
			holdKeys(t, w, 100, s)
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
			// NearTTL still bounds the copies: once it has passed, a Get
			// goes to the far tier and fails.
			waitFor(t, "a Get past NearTTL to fail on the far tier", func() bool {
				ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
				defer cancel()
				_, _, err := s.Get(ctx, "0")
				return err != nil
			})
		})
	}
}

// One instance partitioned away while another changes 5 of the 400 keys it
// holds and deletes 5: once the partition heals, the instance revalidates
// its near tier in a few bulk reads, and then serves the 390 unchanged keys
// near, the 5 changed ones at their new value, with no far read but for
// the 5 deleted keys.
func TestTieredPartitionRepairs(t *testing.T) {
	srv := startRedis(t)
	p := herdtest.NewProxy(t, srv.addr())
	a := behind(t, srv, p)
	b := behind(t, srv, nil)
	holdKeys(t, b, 400, a)

	p.Cut()
	waitFor(t, "A's stream reported Down", func() bool { return a.Stats().Downs > 0 })
	herdtest.ChangeWhileAway(t, b)
	p.Restore()
	waitFor(t, "A repaired its near tier", func() bool {
		st := a.Stats()
		return st.Repairs > 0 && st.RepairReads >= 400 && st.InFlight == 0
	})
	before := a.Stats()
	herdtest.CheckBack(t, a, 400, "after the repair")
	after := a.Stats()
	t.Logf("repair: %d keys read in bulk, %d dropped; %d far reads to serve the 400 keys after it", after.RepairReads, after.RepairDrops, after.FarReads-before.FarReads)
	if reads := after.FarReads - before.FarReads; reads != 5 {
		t.Fatalf("%d far reads to serve 400 keys after the repair, want 5 (the deleted keys)", reads)
	}
	if after.Flushes != 0 {
		t.Fatalf("%d flushes, want none", after.Flushes)
	}
}

// The writer keeps its own writes near through their echoes: 1,000 writes
// read back at once cost almost no far read (each echo has its key read
// again in the background, as Redis may report a later write with it), and
// the other instance sees each last write.
func TestTieredWriterKeepsItsOwnWrites(t *testing.T) {
	srv := startRedis(t)
	a := behind(t, srv, nil)
	b := behind(t, srv, nil)
	ctx := context.Background()
	for i := range 1000 {
		k, v := fmt.Sprint(i%10), fmt.Sprint(i)
		if err := a.Set(ctx, k, store.Entry[string]{Value: v}); err != nil {
			t.Fatal(err)
		}
		if e, ok, err := a.Get(ctx, k); err != nil || !ok || e.Value != v {
			t.Fatalf("A's own write of %q read back: %+v, %v, %v; want %q", k, e, ok, err, v)
		}
	}
	for i := range 10 {
		eventually(t, b, fmt.Sprint(i), fmt.Sprint(990+i))
	}
	waitFor(t, "A's echoes", func() bool { return a.Stats().Echoes+a.Stats().Changes >= 1000 })
	st := a.Stats()
	t.Logf("1,000 own writes read back: %d far reads, %d echoes kept, %d keys read again after their echo, %d changes", st.FarReads, st.Echoes, st.EchoChecks, st.Changes)
	if st.FarReads > 50 {
		t.Fatalf("%d far reads for 1,000 own writes read back, want at most 5%%", st.FarReads)
	}
	// A later write by B is not taken for an echo of A's.
	if err := b.Set(ctx, "0", store.Entry[string]{Value: "b"}); err != nil {
		t.Fatal(err)
	}
	eventually(t, a, "0", "b")
}

// A write through an instance cut from the server fails and leaves no near
// copy.
func TestTieredWriteInOutageFails(t *testing.T) {
	srv := startRedis(t)
	p := herdtest.NewProxy(t, srv.addr())
	s := behind(t, srv, p)
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
