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
	"github.com/herdcache/herd/store/storetest"
)

// locker is an in-process store.Locker with real leases, standing in for the
// lock of a shared backend so that several caches in one test behave like
// several processes.
type locker struct {
	mu     sync.Mutex
	leases map[string]*lease
	tokens map[string]uint64
}

type lease struct {
	owner   *locker
	key     string
	token   uint64
	expires time.Time
}

func newLocker() *locker {
	return &locker{leases: make(map[string]*lease), tokens: make(map[string]uint64)}
}

func (l *locker) TryLock(_ context.Context, key string, ttl time.Duration) (store.Lock, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if cur, ok := l.leases[key]; ok && time.Now().Before(cur.expires) {
		return nil, store.ErrLocked
	}
	l.tokens[key]++
	le := &lease{owner: l, key: key, token: l.tokens[key], expires: time.Now().Add(ttl)}
	l.leases[key] = le
	return le, nil
}

func (le *lease) held() bool {
	cur, ok := le.owner.leases[le.key]
	return ok && cur == le && time.Now().Before(le.expires)
}

func (le *lease) Unlock(context.Context) error {
	le.owner.mu.Lock()
	defer le.owner.mu.Unlock()
	if !le.held() {
		return store.ErrNotHeld
	}
	delete(le.owner.leases, le.key)
	return nil
}

func (le *lease) Extend(_ context.Context, ttl time.Duration) error {
	le.owner.mu.Lock()
	defer le.owner.mu.Unlock()
	if !le.held() {
		return store.ErrNotHeld
	}
	le.expires = time.Now().Add(ttl)
	return nil
}

func (le *lease) Token() uint64 { return le.token }

// sharedStore is one "client" of a backend shared by several caches: a
// common memory store and a common locker.
type sharedStore[T any] struct {
	*memory.Store[T]
	*locker
}

// The test locker passes the lock part of the conformance suite, so the
// cache's lock tests below stand on a locker that behaves like the real ones.
func TestLockerConformance(t *testing.T) {
	mem := memory.New[storetest.Value]()
	defer mem.Close(context.Background())
	lk := newLocker()
	storetest.Run(t, func(*testing.T) store.Store[storetest.Value] {
		return sharedStore[storetest.Value]{mem, lk}
	})
}

// Three caches sharing a store and a locker, 300 callers each on one cold
// key: the loader runs once across all three.
func TestLockerMakesOneLoadAcrossInstances(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		mem := memory.New[string]()
		lk := newLocker()
		var caches []*herd.Cache[string]
		for range 3 {
			c := herd.New[string](sharedStore[string]{mem, lk}, herd.TTL(time.Minute),
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
		lk := newLocker()
		c := herd.New[string](sharedStore[string]{mem, lk}, herd.RefreshAfter(time.Minute),
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
		lk := newLocker()
		c := herd.New[string](sharedStore[string]{mem, lk}, herd.WithLocker(lk, 2*time.Second), herd.WithLogger(discard))
		defer func() { _ = c.Close(context.Background()); _ = mem.Close(context.Background()) }()
		if _, err := lk.TryLock(context.Background(), "k", time.Hour); err != nil { // the crashed holder
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
