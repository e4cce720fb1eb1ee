package memory

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/herdcache/herd/internal/check"
	"github.com/herdcache/herd/store"
)

// A Locker hands out leases on keys within one process: a [store.Locker]
// for tests, and for several caches of one process that share a store. Its
// zero value is ready to use. A [Store] is a Locker too.
//
// Leases end at their TTL on the system clock (a synctest bubble's clock in
// tests). Fencing tokens grow with every acquisition of any key. Expired
// leases are dropped as the map grows, so it holds about as many leases as
// are live.
type Locker struct {
	mu      sync.Mutex
	held    map[string]lease
	token   uint64
	sweepAt int
}

type lease struct {
	token   uint64
	expires time.Time
}

// TryLock acquires the lock of key for ttl, or returns [store.ErrLocked]
// while another owner's lease on it runs. It panics if ttl is not positive.
func (l *Locker) TryLock(ctx context.Context, key string, ttl time.Duration) (store.Lock, error) {
	check.That(ttl > 0, "memory", "TryLock needs a positive ttl, got %v", ttl)
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	now := time.Now()
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.tryLock(key, now, ttl)
}

// TryLockMany is [Locker.TryLock] for each of keys, in their order, under
// one hold of the locker's mutex. On a cancelled ctx every key gets
// ctx.Err(). It panics if ttl is not positive.
func (l *Locker) TryLockMany(ctx context.Context, keys []string, ttl time.Duration) []store.LockResult {
	check.That(ttl > 0, "memory", "TryLockMany needs a positive ttl, got %v", ttl)
	out := make([]store.LockResult, len(keys))
	if err := ctx.Err(); err != nil {
		for i := range out {
			out[i].Err = err
		}
		return out
	}
	now := time.Now()
	l.mu.Lock()
	defer l.mu.Unlock()
	for i, k := range keys {
		out[i].Lock, out[i].Err = l.tryLock(k, now, ttl)
	}
	return out
}

// tryLock takes the lock of key at now. l.mu is held.
func (l *Locker) tryLock(key string, now time.Time, ttl time.Duration) (store.Lock, error) {
	if h, ok := l.held[key]; ok && now.Before(h.expires) {
		return nil, store.ErrLocked
	}
	if l.held == nil {
		l.held = make(map[string]lease)
	}
	if len(l.held) >= l.sweepAt {
		for k, h := range l.held {
			if !now.Before(h.expires) {
				delete(l.held, k)
			}
		}
		l.sweepAt = max(2*len(l.held), 64)
	}
	l.token++
	l.held[key] = lease{token: l.token, expires: now.Add(ttl)}
	return &heldLock{l: l, key: key, token: l.token}, nil
}

// ExtendMany is Extend for each of locks, which l handed out, in their
// order, under one hold of the locker's mutex: nil, [store.ErrNotHeld], or
// an error for a lock that l did not hand out. On a cancelled ctx every
// lock gets ctx.Err(). It panics if ttl is not positive.
func (l *Locker) ExtendMany(ctx context.Context, locks []store.Lock, ttl time.Duration) []error {
	check.That(ttl > 0, "memory", "ExtendMany needs a positive ttl, got %v", ttl)
	return l.each(ctx, "extend", locks, func(h *heldLock, now time.Time) error { return l.extend(h, now, ttl) })
}

// UnlockMany is Unlock for each of locks, which l handed out, in their
// order, under one hold of the locker's mutex: nil, [store.ErrNotHeld], or
// an error for a lock that l did not hand out. On a cancelled ctx every
// lock gets ctx.Err().
func (l *Locker) UnlockMany(ctx context.Context, locks []store.Lock) []error {
	return l.each(ctx, "unlock", locks, l.unlock)
}

func (l *Locker) each(ctx context.Context, op string, locks []store.Lock, fn func(*heldLock, time.Time) error) []error {
	errs := make([]error, len(locks))
	if err := ctx.Err(); err != nil {
		for i := range errs {
			errs[i] = err
		}
		return errs
	}
	now := time.Now()
	l.mu.Lock()
	defer l.mu.Unlock()
	for i, lk := range locks {
		h, ok := lk.(*heldLock)
		if !ok || h.l != l {
			errs[i] = fmt.Errorf("memory: %s: a %T is not a lock of this locker", op, lk)
			continue
		}
		errs[i] = fn(h, now)
	}
	return errs
}

type heldLock struct {
	l     *Locker
	key   string
	token uint64
}

func (h *heldLock) Token() uint64 { return h.token }

// Unlock releases the lease, or returns [store.ErrNotHeld] if it expired.
func (h *heldLock) Unlock(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	now := time.Now()
	l := h.l
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.unlock(h, now)
}

// unlock releases h at now. l.mu is held.
func (l *Locker) unlock(h *heldLock, now time.Time) error {
	cur, ok := l.held[h.key]
	if !ok || cur.token != h.token {
		return store.ErrNotHeld
	}
	delete(l.held, h.key)
	if !now.Before(cur.expires) {
		return store.ErrNotHeld
	}
	return nil
}

// Extend resets the lease to ttl from now, or returns [store.ErrNotHeld] if
// it expired.
func (h *heldLock) Extend(ctx context.Context, ttl time.Duration) error {
	check.That(ttl > 0, "memory", "Extend needs a positive ttl, got %v", ttl)
	if err := ctx.Err(); err != nil {
		return err
	}
	l := h.l
	now := time.Now()
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.extend(h, now, ttl)
}

// extend resets h's lease to ttl from now. l.mu is held.
func (l *Locker) extend(h *heldLock, now time.Time, ttl time.Duration) error {
	cur, ok := l.held[h.key]
	if !ok || cur.token != h.token || !now.Before(cur.expires) {
		return store.ErrNotHeld
	}
	l.held[h.key] = lease{token: h.token, expires: now.Add(ttl)}
	return nil
}
