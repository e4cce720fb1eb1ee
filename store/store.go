// Package store defines the seams between a herd cache and where its entries
// live: the [Store] interface every backend implements, the [Entry] it holds,
// the [Codec] that turns values into bytes, and the wire envelope that remote
// stores write (see [Encode] and [Decode]). A store may also have optional
// capabilities, which the cache finds by type assertion:
//
//	if v, ok := s.(store.Versioned[User]); ok {
//		_, ver, _, err := v.GetVersion(ctx, "user:42") // before the load
//		...
//		err = v.SetIf(ctx, "user:42", loaded, ver) // store.ErrConflict if written since
//	}
//
// Implementations: store/memory (bounded, in-process, every capability),
// store/single (one value), store/tiered (memory in front of a shared
// store), and the Redis and NATS modules. store/storetest holds the
// conformance suite they all pass.
//
// # Guarantees
//
// Every [Store] is safe for concurrent use, honours the context of each
// call, and never returns an entry whose KeepUntil has passed. The
// capabilities, each with its contract stated on its type:
//
//   - [Versioned]: conditional writes on a per-key version, so that a load's
//     write-back never overwrites a newer write from any process;
//   - [Locker]: short leases on keys, with fencing tokens, so that one
//     process of a fleet loads;
//   - [ChangeStream]: the server's own record of what changed, which keeps
//     a near tier coherent (store/tiered), and which reports every loss of
//     changes it cannot deliver;
//   - [BulkGetter]: many keys in one round trip;
//   - [BulkVersioned] and [BulkLocker]: the versions, conditional writes
//     and locks of many keys in a round trip per step, each key with its own
//     outcome;
//   - [SharedGetter]: entries lent without a copy, for the hit path.
//
// [Decode] reads any input without panicking: bytes of another writer, an
// envelope of an older or newer format or of another codec, and corrupt
// bytes are an error wrapping [ErrCorrupt], which a store reports as a
// miss, never as an error of its own.
//
// # Costs
//
// An envelope is a 36-byte header (magic, format version, codec id, flags,
// the four times) followed by the codec's bytes of the value; [Decode]
// allocates only what the codec needs for the payload. The bulk
// capabilities make a batch of N keys cost a few round trips instead of N:
// one for the version reads, one for the conditional write-backs, and one
// per step of the locks.
//
// # Errors
//
// A store's error means it could not answer; the cache then treats the key
// as missing, counts the error, and answers from its loader. A store wraps
// [ErrUnavailable] in the errors that mean its backend cannot be reached, so
// that the cache skips it (but for one probe now and then) until it answers
// again. The capabilities' verdicts are sentinels: [ErrConflict] for a
// conditional write refused, [ErrLocked] for a lock held by another owner,
// [ErrNotHeld] for a lease lost; [Decode]'s is [ErrCorrupt].
//
// # Lifecycle
//
// A store may implement Close(context.Context) error or Close() error; the
// cache calls it from its own Close. A store never closes a client it was
// given (a Redis client, a JetStream context): the caller owns those. A
// [Watch] runs until it is closed or its store is.
package store

import (
	"context"
	"errors"
	"time"
)

// An Entry is one cached answer for a key: a value, or the fact that the
// source said the key does not exist. Its times are absolute and set when the
// entry is stored:
//
//	StoredAt ──fresh──▶ RefreshAt ──stale──▶ ExpiresAt ──kept for stale-if-error──▶ KeepUntil
type Entry[T any] struct {
	Value    T
	NotFound bool // a cached "does not exist"; Value is the zero value
	StoredAt time.Time
	// RefreshAt is when the entry turns stale and a background refresh is
	// due. Zero: never refreshed in the background.
	RefreshAt time.Time
	// ExpiresAt is when the entry stops being served without a load. Zero:
	// never expires.
	ExpiresAt time.Time
	// KeepUntil is when the store may drop the entry. Zero: never. A store
	// never returns an entry whose KeepUntil has passed.
	KeepUntil time.Time
}

// Live reports whether a store may still return e at now: KeepUntil is zero
// or later than now.
func (e *Entry[T]) Live(now time.Time) bool {
	return e.KeepUntil.IsZero() || now.Before(e.KeepUntil)
}

// Expired reports whether e is past its ExpiresAt at now: it is then served
// only while a load that should replace it fails (stale-if-error).
func (e *Entry[T]) Expired(now time.Time) bool {
	return !e.ExpiresAt.IsZero() && !now.Before(e.ExpiresAt)
}

// A Store holds entries by key. Every method honours its context and is safe
// for concurrent use.
//
// Get returns the entry and true, or false when the key has no live entry
// (absent, or past its KeepUntil). An error means the store could not answer;
// the cache then treats the key as missing and counts the error. A store that
// finds bytes it cannot decode under a key reports a miss, not an error.
//
// A store may also implement Close(context.Context) error or Close() error;
// the cache calls it from its own Close. A store never closes a client it was
// given.
type Store[T any] interface {
	Get(ctx context.Context, key string) (Entry[T], bool, error)
	Set(ctx context.Context, key string, e Entry[T]) error
	Delete(ctx context.Context, key string) error
}

// A SharedGetter is a store that can lend its own copy of an entry instead
// of copying it out, with the time at which it found the entry live (zero if
// it did not read the clock). The cache uses it on its hit path, where
// copying an Entry and reading the clock twice would cost more than the
// lookup. The entry is shared: the caller must not modify it, and the store
// must never modify an entry it has lent (a Set stores a new one).
type SharedGetter[T any] interface {
	GetShared(ctx context.Context, key string) (e *Entry[T], now time.Time, ok bool, err error)
}

// ErrUnavailable is wrapped by the errors of a store that cannot reach its
// backend: not connected, connection refused or lost, no server to answer.
// A cache that sees it marks the store down, and skips it (but for one
// probe now and then) until it answers again. A store wraps it in the
// errors it knows to mean so; a cache also takes a call that timed out, or
// whose connection was refused, reset or closed, for one.
var ErrUnavailable = errors.New("store: unavailable")

// ErrLocked is returned by [Locker.TryLock] when another owner holds the lock.
var ErrLocked = errors.New("store: locked by another owner")

// ErrNotHeld is returned by [Lock.Unlock] and [Lock.Extend] when the lease has
// expired and the lock is gone or held by another owner. The other owner's
// lock is left alone.
var ErrNotHeld = errors.New("store: lock not held")

// A Locker is a store that can also hand out short leases on keys, so that one
// process in a fleet loads or refreshes a key while the others wait for its
// result in the shared store.
type Locker interface {
	// TryLock acquires the lock of key for ttl without waiting. It returns
	// ErrLocked when another owner holds it.
	TryLock(ctx context.Context, key string, ttl time.Duration) (Lock, error)
}

// A Lock is a lease acquired from a [Locker].
type Lock interface {
	// Unlock releases the lock. It returns ErrNotHeld if the lease expired
	// and the lock is gone or taken by another owner.
	Unlock(ctx context.Context) error
	// Extend resets the lease to ttl from now, or returns ErrNotHeld.
	Extend(ctx context.Context, ttl time.Duration) error
	// Token is a fencing token: it grows with every acquisition of the key's
	// lock, so a backend can refuse writes from an owner whose lease was
	// taken over.
	Token() uint64
}
