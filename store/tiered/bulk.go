package tiered

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/herdcache/herd/internal/fanout"
	"github.com/herdcache/herd/store"
)

// FallbackConcurrency is how many single calls a bulk method runs at once
// over a far store that lacks the bulk capability ([store.BulkVersioned],
// [store.BulkLocker]): GetVersion, SetIf or DeleteIf, TryLock, Extend or
// Unlock per key, overlapped.
const FallbackConcurrency = 16

var (
	_ store.BulkVersioned[int] = (*VersionedStore[int])(nil)
	_ store.BulkLocker         = (*Store[int])(nil)
)

// overlap runs fn(0) to fn(n-1), at most FallbackConcurrency at a time,
// and returns when all have returned.
func overlap(n int, fn func(i int)) { fanout.Each(n, FallbackConcurrency, fn) }

// GetVersions is [VersionedStore.GetVersion] for each of keys: it reads
// them and their versions from the far tier, with one GetVersions if the
// far store is a [store.BulkVersioned] (else GetVersion per key,
// [FallbackConcurrency] at a time), and keeps a near copy of each entry
// found, unless its key was invalidated while the read was in flight.
// Errors, per key: the far store's, wrapped; [ErrClosed] after Close.
func (s *VersionedStore[T]) GetVersions(ctx context.Context, keys []string) []store.VersionedRead[T] {
	mustContext(ctx)
	out := make([]store.VersionedRead[T], len(keys))
	if s.closed.Load() {
		for i := range out {
			out[i].Err = ErrClosed
		}
		return out
	}
	if len(keys) == 0 {
		return out
	}
	s.farReads.Add(uint64(len(keys)))
	start := s.clock.Exact()
	tickets := make([]ticket, len(keys))
	for i, k := range keys {
		tickets[i] = s.flights.begin(k)
	}
	far := s.getVersionsFar(ctx, keys)
	for i, k := range keys {
		r := far[i]
		switch {
		case r.Err != nil:
			s.flights.finish(k, tickets[i], false, nil)
			out[i].Err = fmt.Errorf("tiered: get version %q: %w", k, r.Err)
		case !r.Found:
			s.absent(k, tickets[i])
			out[i].Version = r.Version
		default:
			s.fillVersion(k, tickets[i], r.Entry, r.Version, start)
			out[i] = store.VersionedRead[T]{Entry: r.Entry, Version: r.Version, Found: true}
		}
	}
	return out
}

func (s *VersionedStore[T]) getVersionsFar(ctx context.Context, keys []string) []store.VersionedRead[T] {
	if s.bvfar != nil {
		if rs := s.bvfar.GetVersions(ctx, keys); len(rs) == len(keys) {
			return rs
		}
		return brokenBatch[store.VersionedRead[T]](len(keys), func(r *store.VersionedRead[T], err error) { r.Err = err })
	}
	out := make([]store.VersionedRead[T], len(keys))
	overlap(len(keys), func(i int) {
		r := &out[i]
		r.Entry, r.Version, r.Found, r.Err = s.vfar.GetVersion(ctx, keys[i])
	})
	return out
}

// errBrokenBatch is the error of every key of a batch when the far store
// returns another number of results than it was asked for.
var errBrokenBatch = errors.New("tiered: the far store's bulk call did not return one result per key")

func brokenBatch[R any](n int, set func(*R, error)) []R {
	out := make([]R, n)
	for i := range out {
		set(&out[i], errBrokenBatch)
	}
	return out
}

// WriteIf makes each write on the far tier, with one WriteIf if the far
// store is a [store.BulkVersioned] (else SetIf or DeleteIf per write,
// [FallbackConcurrency] at a time), then makes the near tier agree with
// each as [VersionedStore.SetIf] and [VersionedStore.DeleteIf] do: a set
// that landed is kept near unless its key was invalidated meanwhile;
// anything else drops the key's near copy. Errors, per write: the far
// store's, wrapped (a refused write wraps [store.ErrConflict]);
// [ErrClosed] after Close.
func (s *VersionedStore[T]) WriteIf(ctx context.Context, writes []store.ConditionalWrite[T]) []error {
	mustContext(ctx)
	errs := make([]error, len(writes))
	if s.closed.Load() {
		for i := range errs {
			errs[i] = ErrClosed
		}
		return errs
	}
	if len(writes) == 0 {
		return errs
	}
	epoch, start := s.epoch.Load(), s.clock.Exact()
	tickets := make([]ticket, len(writes))
	for i := range writes {
		tickets[i] = s.flights.begin(writes[i].Key)
	}
	far := s.writeIfFar(ctx, writes)
	for i := range writes {
		w := &writes[i]
		err := far[i]
		var it *nearItem[T]
		if err == nil && !w.Delete {
			it = s.newItem(w.Entry, start)
		}
		s.settle(w.Key, tickets[i], it, epoch)
		if err != nil {
			op := "set if"
			if w.Delete {
				op = "delete if"
			}
			errs[i] = fmt.Errorf("tiered: %s %q: %w", op, w.Key, err)
		}
	}
	return errs
}

func (s *VersionedStore[T]) writeIfFar(ctx context.Context, writes []store.ConditionalWrite[T]) []error {
	if s.bvfar != nil {
		if errs := s.bvfar.WriteIf(ctx, writes); len(errs) == len(writes) {
			return errs
		}
		return brokenBatch[error](len(writes), func(e *error, err error) { *e = err })
	}
	errs := make([]error, len(writes))
	overlap(len(writes), func(i int) {
		w := &writes[i]
		if w.Delete {
			errs[i] = s.vfar.DeleteIf(ctx, w.Key, w.Version)
		} else {
			errs[i] = s.vfar.SetIf(ctx, w.Key, w.Entry, w.Version)
		}
	})
	return errs
}

// TryLockMany is [Store.TryLock] for each of keys: one TryLockMany of the
// far store if it is a [store.BulkLocker] (its results come back as they
// are), else TryLock per key, [FallbackConcurrency] at a time. Each key
// gets an error wrapping [ErrNoLocker] when the far store has no locks, and
// [ErrClosed] after Close.
func (s *Store[T]) TryLockMany(ctx context.Context, keys []string, ttl time.Duration) []store.LockResult {
	mustContext(ctx)
	switch {
	case s.closed.Load():
		return lockErrs(keys, func(string) error { return ErrClosed })
	case s.bulkLocker != nil:
		return s.bulkLocker.TryLockMany(ctx, keys, ttl)
	case s.locker == nil:
		return lockErrs(keys, func(k string) error { return fmt.Errorf("tiered: lock %q: %w", k, ErrNoLocker) })
	}
	out := make([]store.LockResult, len(keys))
	overlap(len(keys), func(i int) {
		out[i].Lock, out[i].Err = s.locker.TryLock(ctx, keys[i], ttl)
	})
	return out
}

func lockErrs(keys []string, err func(key string) error) []store.LockResult {
	out := make([]store.LockResult, len(keys))
	for i, k := range keys {
		out[i].Err = err(k)
	}
	return out
}

// ExtendMany is Extend for each of locks, which the far store handed out
// (through this store or not): one ExtendMany of the far store if it is a
// [store.BulkLocker], else each lock's Extend, [FallbackConcurrency] at a
// time. Like a lock's own Extend, it works after Close. Each lock gets an
// error wrapping [ErrNoLocker] when the far store has no locks.
func (s *Store[T]) ExtendMany(ctx context.Context, locks []store.Lock, ttl time.Duration) []error {
	mustContext(ctx)
	if s.bulkLocker != nil {
		return s.bulkLocker.ExtendMany(ctx, locks, ttl)
	}
	return s.eachLock(ctx, locks, func(ctx context.Context, l store.Lock) error { return l.Extend(ctx, ttl) })
}

// UnlockMany is Unlock for each of locks, which the far store handed out:
// one UnlockMany of the far store if it is a [store.BulkLocker], else each
// lock's Unlock, [FallbackConcurrency] at a time. Like a lock's own Unlock,
// it works after Close. Each lock gets an error wrapping [ErrNoLocker] when
// the far store has no locks.
func (s *Store[T]) UnlockMany(ctx context.Context, locks []store.Lock) []error {
	mustContext(ctx)
	if s.bulkLocker != nil {
		return s.bulkLocker.UnlockMany(ctx, locks)
	}
	return s.eachLock(ctx, locks, func(ctx context.Context, l store.Lock) error { return l.Unlock(ctx) })
}

func (s *Store[T]) eachLock(ctx context.Context, locks []store.Lock, fn func(context.Context, store.Lock) error) []error {
	errs := make([]error, len(locks))
	if s.locker == nil {
		for i := range errs {
			errs[i] = fmt.Errorf("tiered: %w", ErrNoLocker)
		}
		return errs
	}
	overlap(len(locks), func(i int) { errs[i] = fn(ctx, locks[i]) })
	return errs
}
