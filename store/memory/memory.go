// Package memory is herd's bounded in-process store, on
// github.com/maypok86/otter/v2: bounded by entry count or by weight, each
// entry dropped at its KeepUntil.
//
//	users := herd.New(memory.New[User](memory.MaxEntries(100_000)), herd.TTL(time.Minute))
//
// # Guarantees
//
// A [Store] holds about its bound ([MaxEntries], [DefaultMaxEntries] by
// default, or [MaxWeight]); past it, the entries least likely to be used
// again are evicted. It never returns an entry whose KeepUntil has passed
// on its clock, which runs up to its [CoarseClock] resolution late, never
// early. Besides [store.Store], it has every capability of a shared
// store, so that several caches in one process can share it as a fleet
// would share Redis, and so that tests of fleet behaviour run without a
// server:
//
//   - [store.Versioned] and [store.BulkVersioned]: every write gets a new
//     version from a counter; a deleted or expired key keeps its version for
//     [VersionRetention];
//   - [store.Locker] and [store.BulkLocker]: leases on keys with growing
//     fencing tokens (see [Locker]);
//   - [store.ChangeStream]: every write and delete is reported to each
//     watch with the version it gave the key, and every entry the store
//     drops on its own (evicted, or forgotten at the end of its retention)
//     with version zero, from a goroutine of the watch (see [Store.Watch]);
//   - [store.BulkGetter] and [store.SharedGetter].
//
// # Costs
//
// A hit through a herd.Cache takes no lock, allocates nothing and, while the
// store is busy, reads no clock: the cache reads the store's own compact
// records in place, and the store's coarse clock ([CoarseClock]) in one
// atomic load. A deleted or expired key keeps a record, and its place
// within the bound, for [VersionRetention]. [Store.Len] costs a maintenance
// pass of the store.
//
// # Errors
//
// Reads, writes and locks never wait. Reads and writes never fail: they
// return no error, and ignore their context. The lock methods return
// ctx.Err() for a context that has already ended, and [store.ErrLocked] and
// [store.ErrNotHeld] as their verdicts. [Store.Watch] returns [ErrClosed]
// after [Store.Close]. [New] panics on an invalid option, naming it.
//
// # Lifecycle
//
// [New] starts one goroutine for periodic clean-up of expired entries, and,
// from the store's first read on, one for its coarse clock, parked while the
// store is idle. [Store.Close] stops both and the watches, and waits for the
// watches' goroutines within its context; herd.Cache.Close calls it. Unlike
// most herd types, the store still works after Close: it then reads the
// system clock on every read, and drops expired entries as they are read or
// evicted.
package memory

import (
	"context"
	"math"
	"sync/atomic"
	"time"

	"github.com/maypok86/otter/v2"

	"github.com/herdcache/herd/internal/check"
	"github.com/herdcache/herd/internal/clock"
	"github.com/herdcache/herd/internal/closing"
	"github.com/herdcache/herd/internal/local"
	"github.com/herdcache/herd/store"
)

// DefaultMaxEntries is the bound of a store built without [MaxEntries] or
// [MaxWeight].
const DefaultMaxEntries = 10_000

// A Store is a bounded in-memory [store.Store]. Build it with [New]; its
// methods are safe for concurrent use.
type Store[T any] struct {
	c         *otter.Cache[string, *local.Entry[T]]
	clock     *clock.Clock // also otter's, which reads its lagging NowNano
	retention time.Duration
	versions  atomic.Uint64 // the last version given to a write

	Locker
	watches watchers
	closing closing.Once
	// lending is the hit path the store lends a herd cache: peek, in place.
	lending[T]
}

// lending is local.Lending under a name of the store's own: embedded, it
// gives the store the unexported method by which a cache finds its hit
// path, and no exported field or method.
type lending[T any] = local.Lending[T]

// The store holds, for each key, a *local.Entry: an entry with its times as
// Unix nanoseconds and its version, or the record that the key was deleted
// (a tombstone), 48 bytes for a value of 8. Entries are never modified once
// stored, so that peek can lend them.

var (
	_ store.Store[int]           = (*Store[int])(nil)
	_ store.SharedGetter[int]    = (*Store[int])(nil)
	_ store.Versioned[int]       = (*Store[int])(nil)
	_ store.VersionReporter[int] = (*Store[int])(nil)
	_ store.BulkGetter[int]      = (*Store[int])(nil)
	_ store.Locker               = (*Store[int])(nil)
	_ store.Locker               = (*Locker)(nil)
	_ store.BulkVersioned[int]   = (*Store[int])(nil)
	_ store.BulkLocker           = (*Store[int])(nil)
	_ store.BulkLocker           = (*Locker)(nil)
	_ store.ChangeStream         = (*Store[int])(nil)
)

type config struct {
	coarse     time.Duration
	exact      bool
	maxEntries int
	maxWeight  uint64
	weigher    any // func(key string, v T) uint32, checked by New
	retention  time.Duration
}

// An Option configures a [Store].
type Option func(*config)

// MaxEntries bounds the store to about n entries; past it, the entries least
// likely to be used again are evicted. Default: [DefaultMaxEntries].
func MaxEntries(n int) Option {
	return func(c *config) { c.maxEntries, c.maxWeight, c.weigher = n, 0, nil }
}

// MaxWeight bounds the store by the sum of weigh(key, value) over its entries
// instead of by their count, for example by their size in bytes. weigh is
// called once when an entry is stored. Every entry weighs at least 1, even
// when weigh returns 0, so that the bound also bounds the number of entries;
// a not-found entry and the record of a deleted key weigh 1.
func MaxWeight[T any](maxWeight uint64, weigh func(key string, v T) uint32) Option {
	return func(c *config) { c.maxEntries, c.maxWeight, c.weigher = 0, maxWeight, weigh }
}

// DefaultResolution is the resolution of a store's clock unless
// [CoarseClock] or [ExactClock] says otherwise.
const DefaultResolution = time.Millisecond

// CoarseClock sets the resolution of the store's clock, which a herd.Cache
// over the store reads on every hit: while the store is read, a goroutine
// of the store reads the system clock once per resolution, and a hit costs
// an atomic load instead of a clock read (on many virtual machines, a third
// of a hit). Entries then turn stale and expire up to resolution late (more
// only if the process is so starved that the goroutine runs late), never
// early. The goroutine parks after a few idle ticks; the next read reads the
// system clock itself and wakes it. Default: [DefaultResolution].
func CoarseClock(resolution time.Duration) Option {
	return func(c *config) { c.coarse, c.exact = resolution, false }
}

// ExactClock makes the store read the system clock on every read, so that
// entries turn stale and expire exactly on time, at the cost of a clock read
// per hit.
func ExactClock() Option {
	return func(c *config) { c.exact = true }
}

// VersionRetention is how long the store keeps the version of a key after
// the key is deleted or its entry passes its KeepUntil (see
// [store.Versioned]): such a record is kept, at the cost of its memory and
// a place within the bound, for d. Under a full bound the least used records
// may be evicted sooner, like entries. Default: [store.DefaultVersionRetention].
func VersionRetention(d time.Duration) Option {
	return func(c *config) { c.retention = d }
}

// New returns an empty store. It panics on an invalid option (a bound that
// is not positive, or a [MaxWeight] weigher of another value type), as these
// are programming errors.
//
// The store runs one goroutine for periodic clean-up of expired entries,
// and, from its first read on, one for its coarse clock, parked while the
// store is idle; [Store.Close] stops both, and herd.Cache.Close calls Close.
func New[T any](opts ...Option) *Store[T] {
	cfg := config{maxEntries: DefaultMaxEntries, retention: store.DefaultVersionRetention, coarse: DefaultResolution}
	for _, o := range opts {
		o(&cfg)
	}
	check.That(cfg.retention > 0, "memory", "VersionRetention must be positive, got %v", cfg.retention)
	if cfg.exact {
		cfg.coarse = 0
	} else {
		check.Positive("memory", "CoarseClock resolution", cfg.coarse)
	}
	s := &Store[T]{retention: cfg.retention, clock: clock.New(cfg.coarse)}
	s.lending = local.Lend[T](s, s.peek, false, nil)
	retention := cfg.retention
	// A "writing" calculator is computed on create and update only; otter
	// skips the read hook for it, which keeps the hit path short.
	o := &otter.Options[string, *local.Entry[T]]{
		ExpiryCalculator: otter.ExpiryWritingFunc(func(e otter.Entry[string, *local.Entry[T]]) time.Duration {
			return untilForgotten(e.Value, e.SnapshotAtNano, retention)
		}),
		OnDeletion: func(e otter.DeletionEvent[string, *local.Entry[T]]) {
			// Writes report their own changes; this reports what the
			// store does on its own.
			if e.WasEvicted() {
				s.watches.publish(store.Change{Key: e.Key})
			}
		},
	}
	local.ApplyBound(o, "memory", "MaxEntries", "MaxWeight",
		local.Bound{MaxEntries: cfg.maxEntries, MaxWeight: cfg.maxWeight, Weigher: cfg.weigher},
		func(it *local.Entry[T]) (T, bool) { return it.Value, !it.Tombstone() && !it.NotFound() })
	o.Clock = s.clock
	c, err := otter.New(o)
	check.That(err == nil, "memory", "%v", err)
	s.c = c
	return s
}

// Get returns the entry of key, or false when there is none or its KeepUntil
// has passed. It never returns an error.
func (s *Store[T]) Get(_ context.Context, key string) (store.Entry[T], bool, error) {
	it, ok := s.c.GetIfPresent(key)
	if !ok || !it.Live(s.nowNano()) {
		return store.Entry[T]{}, false, nil
	}
	return it.Entry(), true, nil
}

// GetShared is [Store.Get] for the [store.SharedGetter] interface, with the
// time at which the entry was found live, from the same clock read that
// checked its KeepUntil. As the store holds its entries in a compact form,
// the entry is a copy of its own, which the caller may keep.
func (s *Store[T]) GetShared(_ context.Context, key string) (*store.Entry[T], time.Time, bool, error) {
	it, now, ok := s.peek(key)
	if !ok {
		return nil, time.Time{}, false, nil
	}
	e := it.Entry()
	return &e, time.Unix(0, now), true, nil
}

// peek returns the live entry of key as the store holds it, without a copy,
// and the time (Unix nanoseconds) at which it was found live, from the
// clock read that checked it: the hit path of a herd cache, which the store
// lends it (see lending). The entry must not be modified.
func (s *Store[T]) peek(key string) (*local.Entry[T], int64, bool) {
	it, ok := s.c.GetIfPresent(key)
	if !ok {
		return nil, 0, false
	}
	now := s.nowNano()
	if !it.Live(now) {
		return nil, 0, false
	}
	return it, now, true
}

// GetMany returns the live entries of keys. It never returns an error.
func (s *Store[T]) GetMany(_ context.Context, keys []string) (map[string]store.Entry[T], error) {
	found := make(map[string]store.Entry[T], len(keys))
	now := s.nowNano()
	for _, k := range keys {
		if it, ok := s.c.GetIfPresent(k); ok && it.Live(now) {
			found[k] = it.Entry()
		}
	}
	return found, nil
}

// GetVersion is [Store.Get] that also returns the key's version.
func (s *Store[T]) GetVersion(_ context.Context, key string) (store.Entry[T], store.Version, bool, error) {
	it, ok := s.c.GetIfPresent(key)
	if !ok {
		return store.Entry[T]{}, 0, false, nil
	}
	if !it.Live(s.nowNano()) {
		return store.Entry[T]{}, it.Version(), false, nil
	}
	return it.Entry(), it.Version(), true, nil
}

// Set stores e under key until e.KeepUntil. An entry whose KeepUntil has
// already passed deletes the key instead.
func (s *Store[T]) Set(_ context.Context, key string, e store.Entry[T]) error {
	s.write(key, s.newItem(&e), 0, false)
	return nil
}

// SetVersioned is [Store.Set], and returns the version the write gave key,
// the one its change reports ([store.VersionReporter]).
func (s *Store[T]) SetVersioned(_ context.Context, key string, e store.Entry[T]) (store.Version, error) {
	return s.write(key, s.newItem(&e), 0, false), nil
}

// SetIfVersioned is [Store.SetIf], and returns the version the write gave
// key ([store.VersionReporter]).
func (s *Store[T]) SetIfVersioned(_ context.Context, key string, e store.Entry[T], v store.Version) (store.Version, error) {
	wrote := s.write(key, s.newItem(&e), v, true)
	if wrote == 0 {
		return 0, store.ErrConflict
	}
	return wrote, nil
}

// Delete removes the entry of key, if any, and records the deletion for
// [VersionRetention].
func (s *Store[T]) Delete(_ context.Context, key string) error {
	s.write(key, s.tombstone(), 0, false)
	return nil
}

// SetIf is [Store.Set] if the key's version is still v; otherwise it returns
// [store.ErrConflict].
func (s *Store[T]) SetIf(_ context.Context, key string, e store.Entry[T], v store.Version) error {
	if s.write(key, s.newItem(&e), v, true) == 0 {
		return store.ErrConflict
	}
	return nil
}

// DeleteIf is [Store.Delete] if the key's version is still v; otherwise it
// returns [store.ErrConflict].
func (s *Store[T]) DeleteIf(_ context.Context, key string, v store.Version) error {
	if s.write(key, s.tombstone(), v, true) == 0 {
		return store.ErrConflict
	}
	return nil
}

// VersionRetention returns the store's [VersionRetention].
func (s *Store[T]) VersionRetention() time.Duration { return s.retention }

// newItem is the entry to store for e, without its version, or a
// tombstone when e's KeepUntil has passed.
func (s *Store[T]) newItem(e *store.Entry[T]) *local.Entry[T] {
	if !e.Live(s.now()) {
		return s.tombstone()
	}
	return local.New(e, 0)
}

// tombstone is the record of a deletion now: its KeepUntil is the time of
// the deletion, from which untilForgotten counts the retention; read from
// the system clock, as a coarse reading would end the retention early.
func (s *Store[T]) tombstone() *local.Entry[T] {
	t := local.Tombstone[T](0)
	t.KeepUntil = s.clock.Exact()
	return t
}

// write stores it under key with a new version, if the key's version is v
// or the write is unconditional, and reports the change to the watches. it
// is stored with its version set, before anything can read it. It returns
// the version written, or zero if the write was refused.
func (s *Store[T]) write(key string, it *local.Entry[T], v store.Version, conditional bool) store.Version {
	var wrote store.Version
	s.c.Compute(key, func(old *local.Entry[T], found bool) (*local.Entry[T], otter.ComputeOp) {
		current := store.Version(0)
		if found {
			current = old.Version()
		}
		if conditional && current != v {
			return old, otter.CancelOp
		}
		wrote = store.Version(s.versions.Add(1))
		it.SetVersion(wrote)
		return it, otter.WriteOp
	})
	if wrote != 0 {
		s.watches.publish(store.Change{Key: key, Version: wrote})
	}
	return wrote
}

// Len returns the number of entries and records of deleted keys, after the
// evictions and expirations that are due. It costs a maintenance pass of the
// cache: use it for diagnostics and tests, not on a hot path.
func (s *Store[T]) Len() int {
	s.c.CleanUp()
	return s.c.EstimatedSize()
}

// Close stops the store's clean-up goroutine, its clock's, and its
// watches, and waits for the watches' goroutines to return, within ctx
// (returning an error wrapping ctx.Err() if it ends first). The store still
// works after Close, reading the system clock on every read; expired
// entries are then dropped as they are read or evicted. Close is
// idempotent: every call waits for the same shutdown.
func (s *Store[T]) Close(ctx context.Context) error {
	var watches []*watch
	return s.closing.Close(ctx, "memory", func() {
		s.c.StopAllGoroutines()
		s.clock.Close()
		watches = s.watches.close()
	}, func() error {
		for _, w := range watches {
			w.feed.Close()
		}
		return nil
	})
}

func (s *Store[T]) now() time.Time { return time.Unix(0, s.nowNano()) }

func (s *Store[T]) nowNano() int64 { return s.clock.Now() }

// untilForgotten is the time from now (otter's clock, in Unix nanoseconds)
// until the store may forget it: its KeepUntil for an entry, plus the
// version retention; the retention from the deletion for a tombstone.
func untilForgotten[T any](it *local.Entry[T], now int64, retention time.Duration) time.Duration {
	switch {
	case it.Tombstone():
		// Counted from the deletion, on the store's clock: otter's may lag.
		return time.Duration(it.KeepUntil-now) + retention
	case it.KeepUntil == 0:
		return math.MaxInt64 // otter's "never"
	}
	d := time.Duration(it.KeepUntil - now)
	if d > math.MaxInt64-retention {
		return math.MaxInt64
	}
	return d + retention
}
