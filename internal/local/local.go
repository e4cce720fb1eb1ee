// Package local is the seam between a herd cache and an in-process store
// (store/memory): entries held in a compact form and read in place, so that
// a hit costs one map lookup and one clock read, no copy and no conversion.
//
// The public seam, store.Store and store.Entry, stays what every store
// implements; a store that embeds a [Lending] gives the cache its hit path
// (and, when it is in-process, tells it that its calls never block)
// without exporting anything.
package local

import (
	"math"
	"time"

	"github.com/herdcache/herd/internal/check"
	"github.com/herdcache/herd/store"
	"github.com/maypok86/otter/v2"
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

// A Peek looks key up in place: it returns the live entry of key as a store
// holds it, which the caller must not modify, and the time (Unix
// nanoseconds) at which it was found live.
type Peek[T any] func(key string) (e *Entry[T], now int64, ok bool)

// A Lending is what a store lends a herd cache for its hit path: an
// in-process store's own lookup (store/memory), or the lookup of a near
// tier (store/tiered), whose miss says nothing of the store. A store embeds
// it under an unexported name (an alias of its own), so that the cache
// finds it with [Of] while users see no method of it.
type Lending[T any] struct {
	peek     Peek[T]
	fallback Fallback[T]
	self     any  // the store that lends: a type that embeds it does not
	near     bool // peek sees a near tier only
}

// A Fallback returns the copy of key's entry that a near tier keeps past
// the time it may serve it as a hit: the value the store last had, which a
// cache may return by stale-if-error when a load fails while the store
// cannot be read.
type Fallback[T any] func(key string) (store.Entry[T], bool)

// Lend returns the Lending of the store self, whose lookup is peek; near
// says that peek sees a near tier in front of the store only, and fallback,
// if not nil, finds the near tier's fallbacks.
func Lend[T any](self any, peek Peek[T], near bool, fallback Fallback[T]) Lending[T] {
	return Lending[T]{peek: peek, self: self, near: near, fallback: fallback}
}

// FallbackOf returns the fallback lookup that s lends, or nil.
func FallbackOf[T any](s any) Fallback[T] {
	l, ok := s.(lender[T])
	if !ok || l.lending().self != s {
		return nil
	}
	return l.lending().fallback
}

func (l *Lending[T]) lending() *Lending[T] { return l }

type lender[T any] interface{ lending() *Lending[T] }

// Of returns the lookup that s lends and whether it sees a near tier only,
// or ok false when s lends nothing. A type that embeds a lending store
// gets its methods but not its promise that a lookup reads what its own
// Get would: it lends nothing.
func Of[T any](s any) (peek Peek[T], near, ok bool) {
	l, ok := s.(lender[T])
	if !ok {
		return nil, false, false
	}
	lent := l.lending()
	if lent.peek == nil || lent.self != s {
		return nil, false, false
	}
	return lent.peek, lent.near, true
}

// A Bound is what bounds an in-process map of entries: their number, or the
// sum of the weights of their values, as a store's options give it.
type Bound struct {
	MaxEntries int
	MaxWeight  uint64
	Weigher    any // func(key string, v T) uint32, checked by Apply
}

// ApplyBound sets b on o, whose items hold a value of type T: value returns
// it, or false for an item that weighs 1 whatever it holds (a cached "not
// found", a tombstone). Every item weighs at least 1, so that a weight
// bound also bounds the number of items. It panics, naming pkg and the
// options entries and weight, when b is not a valid bound for T.
func ApplyBound[T, V any](o *otter.Options[string, V], pkg, entries, weight string, b Bound, value func(V) (T, bool)) {
	if b.Weigher == nil {
		check.That(b.MaxEntries > 0, pkg, "%s must be positive, got %d", entries, b.MaxEntries)
		o.MaximumSize = b.MaxEntries
		return
	}
	weigh, ok := b.Weigher.(func(string, T) uint32)
	check.That(ok && weigh != nil, pkg, "%s's weigher is a %T, want a non-nil func(string, %T) uint32", weight, b.Weigher, *new(T))
	check.That(b.MaxWeight != 0, pkg, "%s must be positive, got 0", weight)
	o.MaximumWeight = b.MaxWeight
	o.Weigher = func(key string, it V) uint32 {
		v, ok := value(it)
		if !ok {
			return 1
		}
		return max(weigh(key, v), 1)
	}
}
