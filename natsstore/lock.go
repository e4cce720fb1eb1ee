package natsstore

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/herdcache/herd/store"
)

// lockValue is what a lock key holds; the revision, not the value, tells
// owners apart.
var lockValue = []byte("herd-lock")

// TryLock acquires the lock of key for ttl (rounded up to whole seconds, at
// least one) by creating its lock key with that per-key TTL. It returns
// store.ErrLocked when the key exists, and ErrNoTTL when the bucket cannot
// expire keys.
func (s *Store[T]) TryLock(ctx context.Context, key string, ttl time.Duration) (store.Lock, error) {
	ctx, done, err := s.begin(ctx, "lock", key)
	if err != nil {
		return nil, err
	}
	defer done()
	if !s.ttl {
		return nil, fmt.Errorf("natsstore: lock %q: %w", key, ErrNoTTL)
	}
	token, _ := encodeKey(key)
	lk := "l." + token
	rev, err := s.kv.Create(ctx, lk, lockValue, jetstream.KeyTTL(ceilSecond(ttl)))
	switch {
	case contended(err):
		return nil, fmt.Errorf("natsstore: lock %q: %w", key, store.ErrLocked)
	case err != nil:
		return nil, fmt.Errorf("natsstore: lock %q: %w", key, failed(ctx, err))
	}
	return &lock[T]{s: s, key: key, lk: lk, token: rev, rev: rev, id: s.lockIDs.Add(1)}, nil
}

type lock[T any] struct {
	s     *Store[T]
	key   string // the herd key, for errors
	lk    string // the lock's KV key
	token uint64 // revision at acquisition
	id    uint64 // the order in which the store made its locks

	mu  sync.Mutex
	rev uint64 // revision of the lease's last write
}

// Unlock purges the lock key if it is still at the lease's revision,
// leaving a marker for one second. It fails at once with
// ErrUnavailable while the connection is down (the lease then runs out by
// itself) and with ErrClosed after the store's Close.
func (l *lock[T]) Unlock(ctx context.Context) error {
	ctx, done, err := l.s.begin(ctx, "unlock", l.key)
	if err != nil {
		return err
	}
	defer done()
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.rev == 0 {
		return l.fail(ctx, "unlock", jetstream.ErrKeyExists)
	}
	// The marker of a released lock is kept for a second only: nothing needs
	// to remember it, and a later TryLock of the key then costs one request
	// instead of the three of KeyValue.Create over a marker.
	err = l.s.purge(ctx, purgeMsg(l.s.prefix+l.lk), time.Second, jetstream.WithExpectLastSequencePerSubject(l.rev))
	if err != nil {
		return l.fail(ctx, "unlock", err)
	}
	l.rev = 0 // no write of the key has revision 0: a second Unlock fails
	return nil
}

// Extend republishes the lock key with a new TTL, conditioned on the lease's
// revision. KeyValue.Update cannot carry a TTL, and a message without one
// would never expire, so it publishes on the key's subject itself. It fails
// at once with ErrUnavailable while the connection is down.
func (l *lock[T]) Extend(ctx context.Context, ttl time.Duration) error {
	ctx, done, err := l.s.begin(ctx, "extend", l.key)
	if err != nil {
		return err
	}
	defer done()
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.rev == 0 {
		return l.fail(ctx, "extend", jetstream.ErrKeyExists)
	}
	m := &nats.Msg{Subject: l.s.prefix + l.lk, Data: lockValue}
	ack, err := l.s.publish(ctx, m,
		jetstream.WithExpectLastSequencePerSubject(l.rev), jetstream.WithMsgTTL(ceilSecond(ttl)))
	if err != nil {
		return l.fail(ctx, "extend", err)
	}
	l.rev = ack.Sequence
	return nil
}

func (l *lock[T]) fail(ctx context.Context, op string, err error) error {
	if contended(err) {
		err = store.ErrNotHeld
	} else {
		err = failed(ctx, err)
	}
	return fmt.Errorf("natsstore: %s %q: %w", op, l.key, err)
}

// Token returns the revision at which the lock was acquired.
func (l *lock[T]) Token() uint64 { return l.token }
