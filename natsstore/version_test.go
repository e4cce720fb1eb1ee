package natsstore_test

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/herdcache/herd/natsstore"
	"github.com/herdcache/herd/store"
)

// The Versioned contract, case by case, on one bucket.
func TestVersioned(t *testing.T) {
	srv := startServer(t)
	_, js := connect(t, srv.url())
	s := newStore[string](t, js, "versions")
	ctx := context.Background()
	version := func(key string) store.Version {
		t.Helper()
		_, v, _, err := s.GetVersion(ctx, key)
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	entry := store.Entry[string]{Value: "v"}

	if v := version("absent"); v != 0 {
		t.Fatalf("version of a key never written: %d, want 0", v)
	}
	if err := s.SetIf(ctx, "absent", entry, 0); err != nil {
		t.Fatalf("SetIf(0) of a key never written: %v", err)
	}
	v1 := version("absent")
	if v1 == 0 {
		t.Fatal("a write left the version at 0")
	}
	if err := s.SetIf(ctx, "absent", entry, 0); !errors.Is(err, store.ErrConflict) {
		t.Fatalf("SetIf(0) of a written key: %v, want ErrConflict", err)
	}
	// A Set in between: the version read before it no longer matches.
	if err := s.Set(ctx, "absent", store.Entry[string]{Value: "newer"}); err != nil {
		t.Fatal(err)
	}
	if err := s.SetIf(ctx, "absent", entry, v1); !errors.Is(err, store.ErrConflict) {
		t.Fatalf("SetIf after a Set: %v, want ErrConflict", err)
	}
	if err := s.DeleteIf(ctx, "absent", v1); !errors.Is(err, store.ErrConflict) {
		t.Fatalf("DeleteIf after a Set: %v, want ErrConflict", err)
	}
	if e, ok, err := s.Get(ctx, "absent"); err != nil || !ok || e.Value != "newer" {
		t.Fatalf("a refused write wrote: %+v, %v, %v", e, ok, err)
	}
	// Delete of an absent key records a tombstone; GetVersion sees it.
	if err := s.Delete(ctx, "gone"); err != nil {
		t.Fatal(err)
	}
	vd := version("gone")
	if vd == 0 {
		t.Fatal("Delete of an absent key left the version at 0")
	}
	if err := s.SetIf(ctx, "gone", entry, 0); !errors.Is(err, store.ErrConflict) {
		t.Fatalf("SetIf(0) over a tombstone: %v, want ErrConflict", err)
	}
	if err := s.SetIf(ctx, "gone", entry, vd); err != nil {
		t.Fatalf("SetIf with the tombstone's version: %v", err)
	}
	v2 := version("gone")
	if v2 == vd {
		t.Fatal("SetIf left the version unchanged")
	}
	if err := s.DeleteIf(ctx, "gone", v2); err != nil {
		t.Fatalf("DeleteIf with the current version: %v", err)
	}
	if _, v, ok, err := s.GetVersion(ctx, "gone"); ok || err != nil || v == v2 || v == 0 {
		t.Fatalf("after DeleteIf: version %d (was %d), found %v, %v", v, v2, ok, err)
	}
	// A write by a plain client of the bucket changes the version too.
	v3 := version("absent")
	if _, err := s.KeyValue().Put(ctx, "d.kabsent", []byte("raw")); err != nil {
		t.Fatal(err)
	}
	if err := s.SetIf(ctx, "absent", entry, v3); !errors.Is(err, store.ErrConflict) {
		t.Fatalf("SetIf after a raw Put: %v, want ErrConflict", err)
	}
	// Get never changes the version.
	v4 := version("absent")
	for range 3 {
		if _, _, err := s.Get(ctx, "absent"); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.SetIf(ctx, "absent", entry, v4); err != nil {
		t.Fatalf("SetIf after Gets: %v", err)
	}
	// An entry already past its KeepUntil is a conditional delete.
	v5 := version("absent")
	if err := s.SetIf(ctx, "absent", store.Entry[string]{Value: "old", KeepUntil: time.Now().Add(-time.Second)}, v5); err != nil {
		t.Fatal(err)
	}
	if _, v, ok, _ := s.GetVersion(ctx, "absent"); ok || v == v5 {
		t.Fatalf("SetIf of an expired entry: found %v, version %d (was %d)", ok, v, v5)
	}
	if got := s.VersionRetention(); got != store.DefaultVersionRetention {
		t.Fatalf("VersionRetention = %v, want the default marker TTL %v", got, store.DefaultVersionRetention)
	}
}

// Among concurrent conditional writers holding one version, exactly one
// succeeds, over separate connections.
func TestSetIfOneWinner(t *testing.T) {
	srv := startServer(t)
	var stores []*natsstore.Store[int]
	for range 4 {
		_, js := connect(t, srv.url())
		stores = append(stores, newStore[int](t, js, "race"))
	}
	ctx := context.Background()
	for round := range 20 {
		_, v, _, err := stores[0].GetVersion(ctx, "k")
		if err != nil {
			t.Fatal(err)
		}
		var wins, conflicts atomic.Int32
		var wg sync.WaitGroup
		for i, s := range stores {
			for j := range 5 {
				wg.Go(func() {
					var err error
					if j%2 == 0 {
						err = s.SetIf(ctx, "k", store.Entry[int]{Value: i}, v)
					} else {
						err = s.DeleteIf(ctx, "k", v)
					}
					switch {
					case err == nil:
						wins.Add(1)
					case errors.Is(err, store.ErrConflict):
						conflicts.Add(1)
					default:
						t.Error(err)
					}
				})
			}
		}
		wg.Wait()
		if wins.Load() != 1 || conflicts.Load() != 19 {
			t.Fatalf("round %d: %d winners, %d conflicts; want 1 and 19", round, wins.Load(), conflicts.Load())
		}
	}
}

// The marker of a deleted or expired key is kept for the bucket's marker
// TTL, which is VersionRetention: until then a version read before the
// delete or expiry does not match, and afterwards the version is 0 again.
func TestVersionRetention(t *testing.T) {
	srv := startServer(t)
	_, js := connect(t, srv.url())
	s := newStore[string](t, js, "retention", natsstore.MarkerTTL(2*time.Second))
	if got := s.VersionRetention(); got != 2*time.Second {
		t.Fatalf("VersionRetention = %v, want the marker TTL 2s", got)
	}
	ctx := context.Background()
	if err := s.Set(ctx, "deleted", store.Entry[string]{Value: "v"}); err != nil {
		t.Fatal(err)
	}
	if err := s.Set(ctx, "expired", store.Entry[string]{Value: "v", KeepUntil: time.Now().Add(time.Second)}); err != nil {
		t.Fatal(err)
	}
	if err := s.Delete(ctx, "deleted"); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"deleted", "expired"} {
		var seen []store.Version // every version the key goes through, from the marker on
		waitFor(t, 30*time.Second, k+": marker gone, version back to 0", func() bool {
			_, v, ok, err := s.GetVersion(ctx, k)
			if err != nil || ok {
				return false
			}
			if len(seen) == 0 || seen[len(seen)-1] != v {
				seen = append(seen, v)
			}
			return v == 0
		})
		if len(seen) < 2 || seen[0] == 0 {
			t.Fatalf("%s: versions %v; want a marker's version, then 0", k, seen)
		}
	}
	// A bucket bound without markers forgets nothing on its own.
	if _, err := js.CreateKeyValue(ctx, jetstreamConfig("plainversions")); err != nil {
		t.Fatal(err)
	}
	plain := newStore[string](t, js, "plainversions")
	if got := plain.VersionRetention(); got < 100*365*24*time.Hour {
		t.Fatalf("VersionRetention of a bucket without markers or max age: %v", got)
	}
	if _, err := natsstore.New[string](ctx, js, "retention", natsstore.MarkerTTL(time.Minute)); err == nil {
		t.Fatal("New bound a bucket with another marker TTL than the explicit MarkerTTL")
	}
}
