package sim

import (
	"context"
	"sync"
	"time"

	"github.com/herdcache/herd/store"
)

// A locker is a process-local [store.Locker] with real leases: the lock that
// the instances of a herd setup share, as processes would share the lock of
// a Redis or NATS store. Each key's lock carries a fencing token that grows
// with every acquisition. Expired leases are dropped when their key is
// locked again, and by a sweep when the table grows, so the table stays
// within the keys locked in the last lease period.
type locker struct {
	mu     sync.Mutex
	leases map[string]*lease
	tokens map[string]uint64
	sweep  int // table size at which expired leases are next swept
}

type lease struct {
	owner   *locker
	key     string
	token   uint64
	expires time.Time
}

var _ store.Locker = (*locker)(nil)

func newLocker() *locker {
	return &locker{leases: make(map[string]*lease), tokens: make(map[string]uint64), sweep: 1024}
}

// TryLock acquires the lock of key for ttl, or returns [store.ErrLocked] if
// another owner holds an unexpired lease on it.
func (l *locker) TryLock(_ context.Context, key string, ttl time.Duration) (store.Lock, error) {
	now := time.Now()
	l.mu.Lock()
	defer l.mu.Unlock()
	if cur, ok := l.leases[key]; ok && now.Before(cur.expires) {
		return nil, store.ErrLocked
	}
	if len(l.leases) >= l.sweep {
		for k, le := range l.leases {
			if !now.Before(le.expires) {
				delete(l.leases, k)
			}
		}
		l.sweep = max(1024, 2*len(l.leases))
	}
	// Tokens outlive leases, so that a key's token never goes back; they
	// are one integer per key ever locked, bounded by the scenario's keys.
	l.tokens[key]++
	le := &lease{owner: l, key: key, token: l.tokens[key], expires: now.Add(ttl)}
	l.leases[key] = le
	return le, nil
}

// held reports whether le is still the key's lease and unexpired; the
// owner's mutex is held.
func (le *lease) held() bool {
	cur, ok := le.owner.leases[le.key]
	return ok && cur == le && time.Now().Before(le.expires)
}

// Unlock releases the lease, or returns [store.ErrNotHeld] if it expired.
func (le *lease) Unlock(context.Context) error {
	le.owner.mu.Lock()
	defer le.owner.mu.Unlock()
	if !le.held() {
		return store.ErrNotHeld
	}
	delete(le.owner.leases, le.key)
	return nil
}

// Extend makes the lease run ttl from now, or returns [store.ErrNotHeld] if
// it expired.
func (le *lease) Extend(_ context.Context, ttl time.Duration) error {
	le.owner.mu.Lock()
	defer le.owner.mu.Unlock()
	if !le.held() {
		return store.ErrNotHeld
	}
	le.expires = time.Now().Add(ttl)
	return nil
}

// Token is the lease's fencing token.
func (le *lease) Token() uint64 { return le.token }
