// Package local is the seam between a herd cache and an in-process store
// (store/memory): entries held in a compact form and read in place, so that
// a hit costs one map lookup and one clock read, no copy and no conversion.
//
// The public seam, store.Store and store.Entry, stays what every store
// implements; a store that also implements [Store] gives the cache its hit
// path and tells it that its calls never block.
package local

import (
	"math"
	"time"

	"github.com/herdcache/herd/store"
)

// An Entry is a store.Entry with its times as Unix nanoseconds (0 for the
// zero time.Time), and the store's bookkeeping: 48 bytes for a value of 8.
// An Entry is never modified once stored, so that it can be lent.
type Entry[T any] struct {
	Value                                     T
	StoredAt, RefreshAt, ExpiresAt, KeepUntil int64
	meta                                      uint64 // version<<2 | notFound<<1 | tombstone
}

// New returns the compact form of e, with version v.
func New[T any](e *store.Entry[T], v store.Version) *Entry[T] {
	c := &Entry[T]{
		Value:    e.Value,
		StoredAt: Nanos(e.StoredAt), RefreshAt: Nanos(e.RefreshAt),
		ExpiresAt: Nanos(e.ExpiresAt), KeepUntil: Nanos(e.KeepUntil),
		meta: uint64(v) << 2,
	}
	if e.NotFound {
		c.meta |= 2
	}
	return c
}

// Tombstone returns the record that a key was deleted, with version v. The
// store may keep the time of the deletion in its KeepUntil.
func Tombstone[T any](v store.Version) *Entry[T] {
	return &Entry[T]{meta: uint64(v)<<2 | 1}
}

// SetVersion sets the version of e, which must not be shared yet.
func (e *Entry[T]) SetVersion(v store.Version) { e.meta = uint64(v)<<2 | e.meta&3 }

// Version is the version the store gave the entry.
func (e *Entry[T]) Version() store.Version { return store.Version(e.meta >> 2) }

// NotFound reports whether e is a cached "does not exist".
func (e *Entry[T]) NotFound() bool { return e.meta&2 != 0 }

// Tombstone reports whether e records a deletion rather than holding an entry.
func (e *Entry[T]) Tombstone() bool { return e.meta&1 != 0 }

// Live reports whether e holds an entry that may be returned at now.
func (e *Entry[T]) Live(now int64) bool {
	return e.meta&1 == 0 && (e.KeepUntil == 0 || now < e.KeepUntil)
}

// Entry returns e as a store.Entry.
func (e *Entry[T]) Entry() store.Entry[T] {
	return store.Entry[T]{
		Value: e.Value, NotFound: e.NotFound(),
		StoredAt: Time(e.StoredAt), RefreshAt: Time(e.RefreshAt),
		ExpiresAt: Time(e.ExpiresAt), KeepUntil: Time(e.KeepUntil),
	}
}

// Nanos is t in Unix nanoseconds, 0 for the zero time. A time that Unix
// nanoseconds cannot hold is clamped to the nearest they can (years 1678 and
// 2262), and the Unix epoch itself moves 1ns later, so that no time reads
// back as zero.
func Nanos(t time.Time) int64 {
	switch {
	case t.IsZero():
		return 0
	case t.After(maxTime):
		return math.MaxInt64
	case t.Before(minTime):
		return math.MinInt64
	}
	if n := t.UnixNano(); n != 0 {
		return n
	}
	return 1
}

// Time is the time.Time of n Unix nanoseconds, the zero time for 0.
func Time(n int64) time.Time {
	if n == 0 {
		return time.Time{}
	}
	return time.Unix(0, n)
}

var (
	maxTime = time.Unix(0, math.MaxInt64)
	minTime = time.Unix(0, math.MinInt64)
)

// A Store is an in-process store whose calls never block, and that lends its
// entries for the hit path.
type Store[T any] interface {
	// Peek returns the live entry of key, which the caller must not modify,
	// and the time (Unix nanoseconds) at which it was found live.
	Peek(key string) (e *Entry[T], now int64, ok bool)
	// Self returns the store itself. A type that embeds the store gets its
	// methods, Peek and Self included, but not its promise that no call
	// blocks, nor that Peek reads what its own Get would: the cache takes a
	// store for in-process only when Self is the store it was given.
	Self() any
}
