package herd_test

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/herdcache/herd"
	"github.com/herdcache/herd/store"
	"github.com/herdcache/herd/store/memory"
)

// lockedStore is one "client" of a backend shared by several caches: a
// common memory store, with a lock given apart from it.
type lockedStore[T any] struct {
	*memory.Store[T]
	*memory.Locker
}

// TryLock resolves the choice between the store's own locker and the given
// one: the given one, as in the tests a test takes its lock from it.
func (s lockedStore[T]) TryLock(ctx context.Context, key string, ttl time.Duration) (store.Lock, error) {
	return s.Locker.TryLock(ctx, key, ttl)
}

// Three caches sharing a store and a locker, 300 callers each on one cold
// key: the loader runs once across all three.
func TestLockerMakesOneLoadAcrossInstances(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		mem := memory.New[string]()
		lk := &memory.Locker{}
		var caches []*herd.Cache[string]
		for range 3 {
			c := herd.New[string](lockedStore[string]{mem, lk}, herd.TTL(time.Minute),
				herd.WithLocker(lk, 5*time.Second), herd.WithLogger(discard))
			caches = append(caches, c)
		}
		var calls atomic.Int32
		load := func(context.Context, string) (string, error) {
			calls.Add(1)
			time.Sleep(50 * time.Millisecond)
			return "v", nil
		}
		var wg sync.WaitGroup
		for _, c := range caches {
			for range 300 {
				wg.Go(func() {
					if v, err := c.Get(context.Background(), "k", load); err != nil || v != "v" {
						t.Errorf("Get = %q, %v", v, err)
					}
				})
			}
		}
		wg.Wait()
		if n := calls.Load(); n != 1 {
			t.Fatalf("loader ran %d times across 3 instances, want 1", n)
		}
		var lockWaits uint64
		for _, c := range caches {
			lockWaits += c.Stats().LockWaits
		}
		if lockWaits != 2 {
			t.Fatalf("%d lock waits, want 2 (one per instance that did not hold the lock)", lockWaits)
		}
		for _, c := range caches {
			_ = c.Close(context.Background())
		}
		_ = mem.Close(context.Background())
	})
}

// A refresh that finds the key locked by another instance is skipped, and
// the instance keeps serving its stale value.
func TestRefreshSkipsALockedKey(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		mem := memory.New[string]()
		lk := &memory.Locker{}
		c := herd.New[string](lockedStore[string]{mem, lk}, herd.RefreshAfter(time.Minute),
			herd.WithLocker(lk, time.Hour), herd.WithLogger(discard))
		defer func() { _ = c.Close(context.Background()); _ = mem.Close(context.Background()) }()
		src := &source{value: "v"}
		mustGet(t, c, "k", src.load)
		time.Sleep(2 * time.Minute)
		other, err := lk.TryLock(context.Background(), "k", time.Hour) // another instance refreshes
		if err != nil {
			t.Fatal(err)
		}
		for range 10 {
			if r := mustGet(t, c, "k", src.load); r.Status != herd.StatusStale {
				t.Fatalf("%+v", r)
			}
			synctest.Wait()
		}
		if n := src.calls.Load(); n != 1 {
			t.Fatalf("%d loads while another instance held the lock, want 1", n)
		}
		if st := c.Stats(); st.RefreshesFailed != 0 {
			t.Fatalf("a skipped refresh was counted as failed: %+v", st)
		}
		_ = other.Unlock(context.Background())
	})
}

// A holder that never stores a value (it crashed) costs the waiters the lock
// TTL, after which they load themselves.
func TestLockHolderThatNeverDelivers(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		mem := memory.New[string]()
		lk := &memory.Locker{}
		c := herd.New[string](lockedStore[string]{mem, lk}, herd.WithLocker(lk, 2*time.Second), herd.WithLogger(discard))
		defer func() { _ = c.Close(context.Background()); _ = mem.Close(context.Background()) }()
		if _, err := lk.TryLock(context.Background(), "k", 2*time.Second); err != nil { // the crashed holder's lease
			t.Fatal(err)
		}
		start := time.Now()
		r := mustGet(t, c, "k", func(context.Context, string) (string, error) { return "mine", nil })
		if r.Value != "mine" {
			t.Fatalf("%+v", r)
		}
		if waited := time.Since(start); waited < 2*time.Second || waited > 3*time.Second {
			t.Fatalf("waited %v for a holder that never delivered, want the 2s lock TTL", waited)
		}
	})
}
