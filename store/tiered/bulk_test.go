package tiered_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/herdcache/herd/store"
	"github.com/herdcache/herd/store/memory"
	"github.com/herdcache/herd/store/tiered"
)

// GetVersions reads versions from the far tier and fills the near tier with
// the entries it found, as GetVersion does.
func TestGetVersionsFillsTheNearTier(t *testing.T) {
	f := newFar()
	ctx := context.Background()
	_ = f.Set(ctx, "a", store.Entry[int]{Value: 1})
	_ = f.Set(ctx, "b", store.Entry[int]{Value: 2})
	_ = f.Delete(ctx, "gone")
	s := fleet(t, f, 1)[0]
	keys := []string{"a", "b", "gone", "never"}
	got := s.GetVersions(ctx, keys)
	for i, k := range keys {
		_, v, ok, err := f.GetVersion(ctx, k)
		r := got[i]
		if err != nil || r.Err != nil || r.Found != ok || r.Version != v {
			t.Fatalf("%s: GetVersions = %+v, far GetVersion = %d, %v, %v", k, r, v, ok, err)
		}
		if _, _, near := tiered.PeekNear(s.Store, k); near != ok {
			t.Fatalf("%s: near copy %v after GetVersions, want %v", k, near, ok)
		}
	}
	if got[0].Entry.Value != 1 || got[1].Entry.Value != 2 {
		t.Fatalf("GetVersions = %+v", got)
	}
	if st := s.Stats(); st.FarReads != 4 || st.InFlight != 0 {
		t.Fatalf("stats %+v, want 4 far reads and nothing in flight", st)
	}
}

// The fill race of a bulk read: GetVersions read the old value of k, and is
// held until the change of a newer write of k has been delivered; the near
// tier keeps the other keys it read, not that old value.
func TestRegressionGetVersionsFillRace(t *testing.T) {
	f := newFar()
	ctx := context.Background()
	_ = f.Set(ctx, "k", store.Entry[int]{Value: 1}) // before any watch
	_ = f.Set(ctx, "other", store.Entry[int]{Value: 7})
	s := fleet(t, f, 1)[0]
	f.holdGet("k")
	first := make(chan []store.VersionedRead[int])
	go func() { first <- s.GetVersions(ctx, []string{"other", "k"}) }()
	<-f.reading // the far read has read 1 and waits for the change
	_ = f.Set(ctx, "k", store.Entry[int]{Value: 2})
	if got := <-first; got[1].Entry.Value != 1 || got[0].Entry.Value != 7 {
		t.Fatalf("the held read returned %+v, want the values it read", got)
	}
	if _, _, ok := tiered.PeekNear(s.Store, "k"); ok {
		t.Fatal("the near tier kept the value of a read that began before a newer write")
	}
	if e, _, ok := tiered.PeekNear(s.Store, "other"); !ok || e.Value != 7 {
		t.Fatalf("near copy of the other key: %+v, %v", e, ok)
	}
	mustValue(t, s, "k", 2)
	if st := s.Stats(); st.DiscardedFills != 1 || st.InFlight != 0 {
		t.Fatalf("stats %+v, want 1 discarded fill and nothing in flight", st)
	}
}

// WriteIf makes the near tier agree with each write: a set that landed is
// read near at once, a delete or a refused write drops the near copy.
func TestWriteIfNearTier(t *testing.T) {
	f := newFar()
	ctx := context.Background()
	for _, k := range []string{"set", "delete", "refused"} {
		_ = f.Set(ctx, k, store.Entry[int]{Value: 1})
	}
	s, other := func() (*tiered.VersionedStore[int], *tiered.VersionedStore[int]) {
		ss := fleet(t, f, 2)
		return ss[0], ss[1]
	}()
	keys := []string{"set", "delete", "refused"}
	reads := s.GetVersions(ctx, keys) // and near copies of all three
	f.swallow.Store(true)             // only the writes themselves update s's near tier
	if err := other.Set(ctx, "refused", store.Entry[int]{Value: 9}); err != nil {
		t.Fatal(err)
	}
	errs := s.WriteIf(ctx, []store.ConditionalWrite[int]{
		{Key: "set", Entry: store.Entry[int]{Value: 2}, Version: reads[0].Version},
		{Key: "delete", Delete: true, Version: reads[1].Version},
		{Key: "refused", Entry: store.Entry[int]{Value: 3}, Version: reads[2].Version},
	})
	if errs[0] != nil || errs[1] != nil || !errors.Is(errs[2], store.ErrConflict) {
		t.Fatalf("WriteIf = %v; want nil, nil, ErrConflict", errs)
	}
	if e, _, ok := tiered.PeekNear(s.Store, "set"); !ok || e.Value != 2 {
		t.Fatalf("near copy after a set: %+v, %v; want 2", e, ok)
	}
	for _, k := range []string{"delete", "refused"} {
		if _, _, ok := tiered.PeekNear(s.Store, k); ok {
			t.Fatalf("%s: near copy kept after WriteIf", k)
		}
	}
	mustValue(t, s, "refused", 9)
	if _, ok := value(t, s, "delete"); ok {
		t.Fatal("deleted key still read")
	}
}

// Over a far store without locks, every bulk lock call says so, per key;
// after Close, every bulk call returns ErrClosed.
func TestBulkWithoutLockerAndAfterClose(t *testing.T) {
	far := memory.New[int]()
	defer far.Close(context.Background())
	s, err := tiered.New[int](streamOnly{plainStore{far}})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	for _, r := range s.TryLockMany(ctx, []string{"a", "b"}, time.Second) {
		if !errors.Is(r.Err, tiered.ErrNoLocker) {
			t.Fatalf("TryLockMany without a far locker: %v, want ErrNoLocker", r.Err)
		}
	}
	lock, err := far.TryLock(ctx, "a", time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	for _, err := range append(s.ExtendMany(ctx, []store.Lock{lock}, time.Minute), s.UnlockMany(ctx, []store.Lock{lock})...) {
		if !errors.Is(err, tiered.ErrNoLocker) {
			t.Fatalf("ExtendMany or UnlockMany without a far locker: %v, want ErrNoLocker", err)
		}
	}
	if err := s.Close(ctx); err != nil {
		t.Fatal(err)
	}

	f := newFar()
	vs := fleet(t, f, 1)[0]
	if err := vs.Close(ctx); err != nil {
		t.Fatal(err)
	}
	for _, r := range vs.GetVersions(ctx, []string{"a"}) {
		if !errors.Is(r.Err, tiered.ErrClosed) {
			t.Fatalf("GetVersions after Close: %v", r.Err)
		}
	}
	for _, err := range vs.WriteIf(ctx, []store.ConditionalWrite[int]{{Key: "a"}}) {
		if !errors.Is(err, tiered.ErrClosed) {
			t.Fatalf("WriteIf after Close: %v", err)
		}
	}
	for _, r := range vs.TryLockMany(ctx, []string{"a"}, time.Second) {
		if !errors.Is(r.Err, tiered.ErrClosed) {
			t.Fatalf("TryLockMany after Close: %v", r.Err)
		}
	}
	// Locks taken before Close are still extended and released, as a lock's
	// own methods would.
	held, err := f.TryLock(ctx, "held", time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	if errs := vs.ExtendMany(ctx, []store.Lock{held}, time.Minute); errs[0] != nil {
		t.Fatalf("ExtendMany after Close: %v", errs[0])
	}
	if errs := vs.UnlockMany(ctx, []store.Lock{held}); errs[0] != nil {
		t.Fatalf("UnlockMany after Close: %v", errs[0])
	}
}
