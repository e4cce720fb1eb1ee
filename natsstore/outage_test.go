package natsstore_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/herdcache/herd/internal/herdtest"
	"github.com/herdcache/herd/natsstore"
	"github.com/herdcache/herd/store"
)

// One instance partitioned away (its connection cut through a proxy) while
// another changes 5 of the 400 keys it holds and deletes 5: it serves its
// near copies through the partition; once it heals, the watch resumes from
// the last sequence it delivered and replays the 10 changes, so the
// instance serves the 390 unchanged keys near, with no repair read and no
// far read but for the 10 keys the replay dropped. (The deletes' markers
// outlive the cut: a watch cut for longer than the bucket's MarkerTTL cannot
// replay, and reports All.)
func TestTieredPartitionResumes(t *testing.T) {
	srv := startServer(t)
	p := startProxy(t, fmt.Sprintf("127.0.0.1:%d", srv.port))
	anc, ajs := connect(t, p.url())
	a := newTiered(t, newStore[string](t, ajs, "partition", natsstore.MarkerTTL(time.Minute)))
	_, bjs := connect(t, srv.url())
	b := newTiered(t, newStore[string](t, bjs, "partition", natsstore.MarkerTTL(time.Minute)))
	ctx := context.Background()
	for i := range 400 {
		if err := b.Set(ctx, fmt.Sprint(i), store.Entry[string]{Value: "v0"}); err != nil {
			t.Fatal(err)
		}
	}
	in := &instance{nc: anc, js: ajs, near: a}
	for i := range 400 {
		in.eventually(t, fmt.Sprint(i), "v0")
	}

	p.Cut()
	waitFor(t, 20*time.Second, "A's stream reported Down", func() bool { return a.Stats().Downs > 0 })
	reads := a.Stats().FarReads
	for i := range 400 { // served through the partition
		if e, ok, err := a.Get(ctx, fmt.Sprint(i)); err != nil || !ok || e.Value != "v0" {
			t.Fatalf("Get(%d) while partitioned = %+v, %v, %v; want the near copy", i, e, ok, err)
		}
	}
	if got := a.Stats().FarReads; got != reads {
		t.Fatalf("%d far reads while partitioned, want none", got-reads)
	}
	herdtest.ChangeWhileAway(t, b)
	changes := a.Stats().Changes
	p.Restore()
	waitFor(t, 20*time.Second, "the replay of the 10 changes", func() bool { return a.Stats().Changes >= changes+10 })
	before := a.Stats()
	herdtest.CheckBack(t, a, 400, "after the partition")
	after := a.Stats()
	t.Logf("after the partition: %d far reads to serve 400 keys, %d repair reads, %d flushes", after.FarReads-before.FarReads, after.RepairReads, after.Flushes)
	if reads := after.FarReads - before.FarReads; reads != 10 || after.RepairReads != 0 || after.Flushes != 0 {
		t.Fatalf("after the partition: %d far reads to serve 400 keys (want 10, the keys changed), %+v", reads, after)
	}
}

// The writer keeps its own writes near through their echoes (the bucket's
// revisions): 1,000 writes read back at once cost no far read, and a later
// write by another instance replaces them.
func TestTieredWriterKeepsItsOwnWrites(t *testing.T) {
	srv := startServer(t)
	fleet := newTieredFleet(t, srv, "own", 2)
	a, b := fleet[0], fleet[1]
	ctx := context.Background()
	for i := range 1000 {
		k, v := fmt.Sprint(i%10), fmt.Sprint(i)
		if err := a.near.Set(ctx, k, store.Entry[string]{Value: v}); err != nil {
			t.Fatal(err)
		}
		if e, ok, err := a.near.Get(ctx, k); err != nil || !ok || e.Value != v {
			t.Fatalf("A's own write of %q read back: %+v, %v, %v; want %q", k, e, ok, err, v)
		}
	}
	for i := range 10 {
		b.eventually(t, fmt.Sprint(i), fmt.Sprint(990+i))
	}
	waitFor(t, 20*time.Second, "A's echoes", func() bool { return a.near.Stats().Echoes >= 900 })
	st := a.near.Stats()
	t.Logf("1,000 own writes read back: %d far reads, %d echoes kept", st.FarReads, st.Echoes)
	if st.FarReads != 0 {
		t.Fatalf("%d far reads for 1,000 own writes read back, want 0", st.FarReads)
	}
	if err := b.near.Set(ctx, "0", store.Entry[string]{Value: "b"}); err != nil {
		t.Fatal(err)
	}
	a.eventually(t, "0", "b")
}
