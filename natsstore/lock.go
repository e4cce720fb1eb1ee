package natsstore

import (
	"context"
	"errors"
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
	if !s.ttl {
		return nil, fmt.Errorf("natsstore: lock %q: %w", key, ErrNoTTL)
	}
	ctx, done, err := s.conn.bind(ctx, "lock", key)
	if err != nil {
		return nil, err
	}
	defer done()
	token, _ := encodeKey(key)
	lk := "l." + token
	rev, err := s.kv.Create(ctx, lk, lockValue, jetstream.KeyTTL(ceilSecond(ttl)))
	switch {
	case errors.Is(err, jetstream.ErrKeyExists):
		return nil, fmt.Errorf("natsstore: lock %q: %w", key, store.ErrLocked)
	case err != nil:
		return nil, fmt.Errorf("natsstore: lock %q: %w", key, failed(ctx, err))
	}
	return &lock[T]{s: s, key: key, lk: lk, token: rev, rev: rev}, nil
}

type lock[T any] struct {
	s     *Store[T]
	key   string // the herd key, for errors
	lk    string // the lock's KV key
	token uint64 // revision at acquisition

	mu  sync.Mutex
	rev uint64 // revision of the lease's last write
}

// Unlock purges the lock key if it is still at the lease's revision.
func (l *lock[T]) Unlock(ctx context.Context) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.rev == 0 {
		return l.fail("unlock", jetstream.ErrKeyExists)
	}
	err := l.s.purge(ctx, l.lk, jetstream.LastRevision(l.rev))
	if err != nil {
		return l.fail("unlock", err)
	}
	l.rev = 0 // no write of the key has revision 0: a second Unlock fails
	return nil
}

// Extend republishes the lock key with a new TTL, conditioned on the lease's
// revision. KeyValue.Update cannot carry a TTL, and a message without one
// would never expire, so it publishes on the key's subject itself.
func (l *lock[T]) Extend(ctx context.Context, ttl time.Duration) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.rev == 0 {
		return l.fail("extend", jetstream.ErrKeyExists)
	}
	m := &nats.Msg{Subject: l.s.prefix + l.lk, Data: lockValue}
	ack, err := l.s.publish(ctx, m,
		jetstream.WithExpectLastSequencePerSubject(l.rev), jetstream.WithMsgTTL(ceilSecond(ttl)))
	if err != nil {
		return l.fail("extend", err)
	}
	l.rev = ack.Sequence
	return nil
}

func (l *lock[T]) fail(op string, err error) error {
	if errors.Is(err, jetstream.ErrKeyExists) {
		err = store.ErrNotHeld
	}
	return fmt.Errorf("natsstore: %s %q: %w", op, l.key, err)
}

// Token returns the revision at which the lock was acquired.
func (l *lock[T]) Token() uint64 { return l.token }
