package storetest

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/herdcache/herd/store"
)

func versioned(t *testing.T, s store.Store[Value]) store.Versioned[Value] {
	t.Helper()
	v, ok := s.(store.Versioned[Value])
	if !ok {
		t.Fatalf("%T does not implement store.Versioned", s)
	}
	return v
}

func mustVersion(t *testing.T, s store.Versioned[Value], key string) store.Version {
	t.Helper()
	_, v, _, err := s.GetVersion(context.Background(), key)
	if err != nil {
		t.Fatalf("GetVersion(%q): %v", key, err)
	}
	return v
}

// versionedAccepted: a conditional write with the current version lands,
// changes the version, and a second one with the old version is refused.
func (s suite) versionedAccepted(t *testing.T) {
	st := versioned(t, s.newStore(t))
	ctx := context.Background()
	if st.VersionRetention() <= 0 {
		t.Fatalf("VersionRetention() = %v, want positive", st.VersionRetention())
	}
	for _, key := range []string{"absent", "present"} {
		if key == "present" {
			mustSet(t, st, key, entry(Value{Name: "old"}, s.now()))
		}
		v := mustVersion(t, st, key)
		if _, _, err := st.Get(ctx, key); err != nil {
			t.Fatal(err)
		}
		if again := mustVersion(t, st, key); again != v {
			t.Fatalf("%s: a read changed the version from %d to %d", key, v, again)
		}
		want := entry(Value{Name: "loaded", N: 1}, s.now())
		if err := st.SetIf(ctx, key, want, v); err != nil {
			t.Fatalf("%s: SetIf with the current version: %v", key, err)
		}
		got, v2, ok, err := st.GetVersion(ctx, key)
		if err != nil || !ok {
			t.Fatalf("%s: GetVersion after SetIf: %v, %v", key, ok, err)
		}
		sameEntry(t, got, want)
		if v2 == v {
			t.Fatalf("%s: SetIf left the version at %d", key, v)
		}
		if err := st.SetIf(ctx, key, entry(Value{Name: "late"}, s.now()), v); !errors.Is(err, store.ErrConflict) {
			t.Fatalf("%s: SetIf with a version older than its own write: %v, want ErrConflict", key, err)
		}
		if err := st.DeleteIf(ctx, key, v2); err != nil {
			t.Fatalf("%s: DeleteIf with the current version: %v", key, err)
		}
		if _, ok := mustGet(t, st, key); ok {
			t.Fatalf("%s: entry still there after DeleteIf", key)
		}
	}
}

// versionedRefused: a version read before another client's Set or Delete
// (of a present or an absent key) no longer matches.
func (s suite) versionedRefused(t *testing.T) {
	a, b := versioned(t, s.newStore(t)), versioned(t, s.newStore(t))
	ctx := context.Background()
	writes := map[string]func(key string) error{
		"Set":    func(key string) error { return b.Set(ctx, key, entry(Value{Name: "newer"}, s.now())) },
		"Delete": func(key string) error { return b.Delete(ctx, key) },
	}
	for name, write := range writes {
		for _, present := range []bool{false, true} {
			key := fmt.Sprintf("%s-present=%v", name, present)
			if present {
				mustSet(t, a, key, entry(Value{Name: "old"}, s.now()))
			}
			v := mustVersion(t, a, key)
			if err := write(key); err != nil {
				t.Fatalf("%s: %v", key, err)
			}
			if err := a.SetIf(ctx, key, entry(Value{Name: "stale load"}, s.now()), v); !errors.Is(err, store.ErrConflict) {
				t.Fatalf("%s: SetIf after another client's %s: %v, want ErrConflict", key, name, err)
			}
			if err := a.DeleteIf(ctx, key, v); !errors.Is(err, store.ErrConflict) {
				t.Fatalf("%s: DeleteIf after another client's %s: %v, want ErrConflict", key, name, err)
			}
			got, ok := mustGet(t, b, key)
			switch {
			case name == "Set" && (!ok || got.Value.Name != "newer"):
				t.Fatalf("%s: the refused write changed the entry: %+v, %v", key, got, ok)
			case name == "Delete" && ok:
				t.Fatalf("%s: the refused write brought back an entry: %+v", key, got)
			}
		}
	}
}

// versionedConcurrent: conditional writers over three clients holding the
// same version: exactly one wins.
func (s suite) versionedConcurrent(t *testing.T) {
	stores := []store.Versioned[Value]{versioned(t, s.newStore(t)), versioned(t, s.newStore(t)), versioned(t, s.newStore(t))}
	ctx := context.Background()
	for round := range 5 {
		key := fmt.Sprintf("contended-%d", round)
		if round%2 == 1 {
			mustSet(t, stores[0], key, entry(Value{Name: "old"}, s.now()))
		}
		v := mustVersion(t, stores[0], key)
		const writers = 30
		var (
			wg     sync.WaitGroup
			mu     sync.Mutex
			wins   []int
			others []error
		)
		start := make(chan struct{})
		for i := range writers {
			wg.Go(func() {
				<-start
				err := stores[i%len(stores)].SetIf(ctx, key, entry(Value{Name: "writer", N: int64(i)}, s.now()), v)
				mu.Lock()
				defer mu.Unlock()
				switch {
				case err == nil:
					wins = append(wins, i)
				case !errors.Is(err, store.ErrConflict):
					others = append(others, err)
				}
			})
		}
		close(start)
		wg.Wait()
		if len(others) > 0 {
			t.Fatalf("round %d: conditional writes failed: %v", round, others)
		}
		if len(wins) != 1 {
			t.Fatalf("round %d: %d conditional writers with one version won, want exactly 1", round, len(wins))
		}
		got, ok := mustGet(t, stores[1], key)
		if !ok || got.Value.N != int64(wins[0]) {
			t.Fatalf("round %d: store holds %+v, want the winner %d's value", round, got.Value, wins[0])
		}
	}
}

func bulk(t *testing.T, s store.Store[Value]) store.BulkGetter[Value] {
	t.Helper()
	b, ok := s.(store.BulkGetter[Value])
	if !ok {
		t.Fatalf("%T does not implement store.BulkGetter", s)
	}
	return b
}

// bulkGet: GetMany returns exactly the live entries, once per key, for odd
// keys, duplicates, an empty list and a thousand keys.
func (s suite) bulkGet(t *testing.T) {
	st := s.newStore(t)
	b := bulk(t, st)
	ctx := context.Background()
	now := s.now()
	keys := OddKeys(s.opts.LongKey)
	for i, k := range keys {
		if i%2 == 0 {
			mustSet(t, st, k, entry(Value{Name: "v", N: int64(i)}, now))
		}
	}
	mustSet(t, st, "past", store.Entry[Value]{Value: Value{Name: "gone"}, KeepUntil: now.Add(-time.Second)})
	ask := append(append([]string{"past", "absent"}, keys...), keys...)
	got, err := b.GetMany(ctx, ask)
	if err != nil {
		t.Fatalf("GetMany: %v", err)
	}
	for i, k := range keys {
		e, ok := got[k]
		if ok != (i%2 == 0) {
			t.Fatalf("GetMany: key %q found=%v, want %v", k, ok, i%2 == 0)
		}
		if ok && e.Value.N != int64(i) {
			t.Fatalf("GetMany: key %q holds the value of key %d", k, e.Value.N)
		}
	}
	if len(got) != (len(keys)+1)/2 {
		t.Fatalf("GetMany returned %d entries, want %d", len(got), (len(keys)+1)/2)
	}
	if none, nerr := b.GetMany(ctx, nil); nerr != nil || len(none) != 0 {
		t.Fatalf("GetMany(nil) = %v, %v; want empty", none, nerr)
	}
	many := make([]string, 1000)
	for i := range many {
		many[i] = fmt.Sprintf("many-%d", i)
		if i%3 == 0 {
			mustSet(t, st, many[i], entry(Value{N: int64(i)}, now))
		}
	}
	got, err = b.GetMany(ctx, many)
	if err != nil {
		t.Fatalf("GetMany of 1000 keys: %v", err)
	}
	if len(got) != 334 {
		t.Fatalf("GetMany of 1000 keys found %d, want 334", len(got))
	}
}
