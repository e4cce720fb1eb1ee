// Package single is a store that holds one entry: the last key set. A Get of
// any other key is a miss. It suits a cache of one object (a configuration,
// a token) that is read very often.
//
//	config := herd.New[Config](single.New[Config](), herd.RefreshAfter(time.Minute))
//	cfg, err := config.Get(ctx, "config", loadConfig)
//
// # Guarantees
//
// A cache over it behaves as over any store: one load at a time,
// stale-while-revalidate, stale-if-error. Use one key: a Set of another key
// replaces the entry, and a Delete of another key does nothing. An entry
// whose KeepUntil has passed is a miss. It has no capability of a shared
// store (no versions, locks or change stream); for a value shared by a
// fleet, use a Redis or NATS store, or a slot.Slot for a single value
// without a store at all.
//
// # Costs
//
// A read is one atomic load and a clock read, with no lock and no
// allocation; a Set allocates the new entry.
//
// # Errors
//
// No method fails or blocks: each returns a nil error and ignores its
// context.
//
// # Lifecycle
//
// The zero [Store] is ready to use, as is one from [New]. It starts no
// goroutine and has no Close.
package single

import (
	"context"
	"sync/atomic"
	"time"

	"github.com/herdcache/herd/store"
)

// A Store holds at most one entry. The zero value is ready to use; its
// methods are safe for concurrent use and ignore their contexts, as none
// blocks.
type Store[T any] struct {
	p atomic.Pointer[slot[T]]
}

var _ store.Store[int] = (*Store[int])(nil)

type slot[T any] struct {
	key string
	e   store.Entry[T]
}

// New returns an empty store.
func New[T any]() *Store[T] { return new(Store[T]) }

// Get returns the entry of key if key is the one held and its KeepUntil has
// not passed.
func (s *Store[T]) Get(_ context.Context, key string) (store.Entry[T], bool, error) {
	p := s.p.Load()
	if p == nil || p.key != key || !p.e.Live(time.Now()) {
		return store.Entry[T]{}, false, nil
	}
	return p.e, true, nil
}

// Set replaces the entry held, whatever its key, with e under key.
func (s *Store[T]) Set(_ context.Context, key string, e store.Entry[T]) error {
	s.p.Store(&slot[T]{key: key, e: e})
	return nil
}

// Delete drops the entry held if its key is key.
func (s *Store[T]) Delete(_ context.Context, key string) error {
	for {
		p := s.p.Load()
		if p == nil || p.key != key || s.p.CompareAndSwap(p, nil) {
			return nil
		}
	}
}
