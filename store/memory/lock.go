package memory

import (
	"context"
	"sync"
	"time"

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
	if ttl <= 0 {
		panic("memory: TryLock needs a positive ttl")
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	now := time.Now()
	l.mu.Lock()
	defer l.mu.Unlock()
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
	l := h.l
	l.mu.Lock()
	defer l.mu.Unlock()
	cur, ok := l.held[h.key]
	if !ok || cur.token != h.token {
		return store.ErrNotHeld
	}
	delete(l.held, h.key)
	if !time.Now().Before(cur.expires) {
		return store.ErrNotHeld
	}
	return nil
}

// Extend resets the lease to ttl from now, or returns [store.ErrNotHeld] if
// it expired.
func (h *heldLock) Extend(ctx context.Context, ttl time.Duration) error {
	if ttl <= 0 {
		panic("memory: Extend needs a positive ttl")
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	l := h.l
	now := time.Now()
	l.mu.Lock()
	defer l.mu.Unlock()
	cur, ok := l.held[h.key]
	if !ok || cur.token != h.token || !now.Before(cur.expires) {
		return store.ErrNotHeld
	}
	l.held[h.key] = lease{token: h.token, expires: now.Add(ttl)}
	return nil
}
