package storetest

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/herdcache/herd/store"
)

func locker(t *testing.T, s store.Store[Value]) store.Locker {
	t.Helper()
	l, ok := s.(store.Locker)
	if !ok {
		t.Fatalf("%T does not implement store.Locker", s)
	}
	return l
}

// lockExclusion: 100 contenders over three store instances (three clients of
// one backend, where newStore shares one) try one key at once; exactly one wins.
func (s suite) lockExclusion(t *testing.T) {
	stores := []store.Locker{locker(t, s.newStore(t)), locker(t, s.newStore(t)), locker(t, s.newStore(t))}
	ctx := context.Background()
	const contenders = 100
	var (
		wg      sync.WaitGroup
		mu      sync.Mutex
		winners []store.Lock
		start   = make(chan struct{})
	)
	errs := make(chan error, contenders)
	for i := range contenders {
		wg.Go(func() {
			<-start
			l, err := stores[i%len(stores)].TryLock(ctx, "contended", time.Minute)
			switch {
			case err == nil:
				mu.Lock()
				winners = append(winners, l)
				mu.Unlock()
			case !errors.Is(err, store.ErrLocked):
				errs <- err
			}
		})
	}
	close(start)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatalf("TryLock: %v", err)
	}
	if len(winners) != 1 {
		t.Fatalf("%d contenders won the lock, want exactly 1", len(winners))
	}
	if err := winners[0].Unlock(ctx); err != nil {
		t.Fatalf("Unlock by the owner: %v", err)
	}
	// Released: the next contender wins, with a larger fencing token.
	next, err := stores[1].TryLock(ctx, "contended", time.Minute)
	if err != nil {
		t.Fatalf("TryLock after Unlock: %v", err)
	}
	if next.Token() <= winners[0].Token() {
		t.Fatalf("fencing token went from %d to %d, want it to grow", winners[0].Token(), next.Token())
	}
	if err := next.Unlock(ctx); err != nil {
		t.Fatal(err)
	}
}

// waitForLock tries key every tenth of expiring until it gets a one-minute
// lease or 50 times expiring have passed; it is how the suite waits for a
// backend's lease of expiring to run out.
func waitForLock(t *testing.T, l store.Locker, key string, expiring time.Duration) store.Lock {
	t.Helper()
	within := 50 * expiring
	deadline := time.After(within)
	tick := time.NewTicker(expiring / 10)
	defer tick.Stop()
	for {
		lock, err := l.TryLock(context.Background(), key, time.Minute)
		if err == nil {
			return lock
		}
		if !errors.Is(err, store.ErrLocked) {
			t.Fatalf("TryLock: %v", err)
		}
		select {
		case <-tick.C:
		case <-deadline:
			t.Fatalf("lock of %q not free within %v of a %v lease", key, within, expiring)
		}
	}
}

// lockForeignUnlock: A's lease expires and B takes the lock; A's Unlock and
// Extend report ErrNotHeld and leave B's lock alone.
func (s suite) lockForeignUnlock(t *testing.T) {
	st := locker(t, s.newStore(t))
	ctx := context.Background()
	ttl := s.opts.LockTTL
	a, err := st.TryLock(ctx, "lease", ttl)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := st.TryLock(ctx, "lease", ttl); !errors.Is(err, store.ErrLocked) {
		t.Fatalf("second TryLock while held: %v, want ErrLocked", err)
	}
	b := waitForLock(t, st, "lease", ttl)
	if b.Token() <= a.Token() {
		t.Fatalf("takeover token %d not above the expired owner's %d", b.Token(), a.Token())
	}
	if err := a.Unlock(ctx); !errors.Is(err, store.ErrNotHeld) {
		t.Fatalf("Unlock of an expired lease: %v, want ErrNotHeld", err)
	}
	if err := a.Extend(ctx, time.Minute); !errors.Is(err, store.ErrNotHeld) {
		t.Fatalf("Extend of an expired lease: %v, want ErrNotHeld", err)
	}
	if _, err := st.TryLock(ctx, "lease", ttl); !errors.Is(err, store.ErrLocked) {
		t.Fatalf("the expired owner's Unlock released the new owner's lock: TryLock = %v", err)
	}
	if err := b.Unlock(ctx); err != nil {
		t.Fatalf("new owner's Unlock: %v", err)
	}
	if err := b.Unlock(ctx); !errors.Is(err, store.ErrNotHeld) {
		t.Fatalf("second Unlock: %v, want ErrNotHeld", err)
	}
}

// lockExtend: an extended lease outlives its first TTL; one that is no
// longer extended expires.
func (s suite) lockExtend(t *testing.T) {
	st := locker(t, s.newStore(t))
	ctx := context.Background()
	ttl := s.opts.LockTTL
	l, err := st.TryLock(ctx, "extended", ttl)
	if err != nil {
		t.Fatal(err)
	}
	if err := l.Extend(ctx, time.Hour); err != nil {
		t.Fatalf("Extend: %v", err)
	}
	// Well past the first TTL the lock is still held.
	timer := time.NewTimer(3 * ttl)
	<-timer.C
	if _, err := st.TryLock(ctx, "extended", ttl); !errors.Is(err, store.ErrLocked) {
		t.Fatalf("TryLock past the first TTL of an extended lease: %v, want ErrLocked", err)
	}
	if err := l.Extend(ctx, ttl); err != nil {
		t.Fatalf("Extend back to a short lease: %v", err)
	}
	next := waitForLock(t, st, "extended", ttl)
	if err := next.Unlock(ctx); err != nil {
		t.Fatal(err)
	}
}
