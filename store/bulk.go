package store

import (
	"context"
	"time"
)

// A BulkGetter is a store that reads many keys in fewer round trips than one
// Get each: Redis with MGET, NATS with concurrent gets, memory directly.
//
// GetMany returns the live entries of the keys it found; a key missing from
// the map has no live entry. Duplicate keys are read once. An error means
// the store could not answer for some keys; the entries it did read are
// returned with it, so a caller can use them and treat the rest as missing.
type BulkGetter[T any] interface {
	GetMany(ctx context.Context, keys []string) (map[string]Entry[T], error)
}

// A BulkVersioned store reads versions and writes conditionally for many
// keys in a few round trips, as [Versioned] does for one: a batch of N loads
// then costs one version read and one write-back, not N of each. Each key
// has its own outcome: a conflict or a failure of one key leaves the others
// alone.
//
// The keys of one call must be distinct. Results come back in the order of
// the keys or writes asked for, one for each.
type BulkVersioned[T any] interface {
	Versioned[T]
	// GetVersions is [Versioned.GetVersion] for each of keys.
	GetVersions(ctx context.Context, keys []string) []VersionedRead[T]
	// WriteIf makes each write as [Versioned.SetIf] does, or
	// [Versioned.DeleteIf] when its Delete is set, and returns each one's
	// error: nil, an error wrapping [ErrConflict] when the key's version
	// was not the write's, or the failure that kept the store from
	// answering for that key (nothing is known of what it wrote then).
	WriteIf(ctx context.Context, writes []ConditionalWrite[T]) []error
}

// A VersionedRead is one key's result of [BulkVersioned.GetVersions]: what
// [Versioned.GetVersion] returns for it.
type VersionedRead[T any] struct {
	Entry   Entry[T]
	Version Version
	Found   bool  // the key has a live entry
	Err     error // the store could not read the key; the other fields are zero
}

// A ConditionalWrite is one write of [BulkVersioned.WriteIf].
type ConditionalWrite[T any] struct {
	Key     string
	Entry   Entry[T] // the entry to store, unless Delete is set
	Delete  bool     // remove the key instead of storing Entry
	Version Version  // the version the key must still have
}

// A BulkLocker is a [Locker] that takes, extends and releases the locks of
// many keys in a few round trips: a batch of N loads under the fleet's
// locks then costs one round trip per step, not N.
//
// The keys of one call must be distinct. Results come back in the order of
// the keys or locks asked for, one for each; each has its own outcome.
type BulkLocker interface {
	Locker
	// TryLockMany is [Locker.TryLock] for each of keys: each result holds
	// the key's Lock, or [ErrLocked] when another owner holds it, or the
	// failure that kept the store from answering for that key.
	TryLockMany(ctx context.Context, keys []string, ttl time.Duration) []LockResult
	// ExtendMany is [Lock.Extend] for each of locks, which this locker
	// handed out (by TryLock or TryLockMany).
	ExtendMany(ctx context.Context, locks []Lock, ttl time.Duration) []error
	// UnlockMany is [Lock.Unlock] for each of locks, which this locker
	// handed out.
	UnlockMany(ctx context.Context, locks []Lock) []error
}

// A LockResult is one key's result of [BulkLocker.TryLockMany].
type LockResult struct {
	Lock Lock  // the lock taken, if Err is nil
	Err  error // ErrLocked, or the store's failure
}
