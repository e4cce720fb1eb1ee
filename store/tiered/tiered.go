// Package tiered is herd's two-level store: a bounded memory near tier in
// each process, in front of a far tier that the whole fleet shares (Redis,
// NATS, or anything that implements [store.ChangeStream]), kept coherent by
// the far store's own change stream.
//
//	far := redisstore.New[User](client, redisstore.Prefix("users"))
//	users, err := tiered.NewVersioned[User](far, tiered.NearMaxEntries(100_000))
//	if err != nil { ... } // the change stream could not be started
//	cache := herd.New[User](users, herd.TTL(time.Minute), herd.WithLocker(far, 10*time.Second))
//
// # What it does
//
//   - Reads: a near hit takes no lock, allocates nothing and makes no call
//     to the far tier, through [store.SharedGetter] or, for a herd.Cache,
//     in place (the near copy in the compact form of herd's in-process
//     stores, which the store lends the cache). A near
//     miss reads the far tier and keeps a copy in the near tier.
//     Entries keep their own times, so stale-while-revalidate and
//     stale-if-error behave as on one tier; the near copy also goes at
//     [NearTTL].
//   - Writes (Set, Delete, and SetIf and DeleteIf of a [VersionedStore]) go
//     to the far tier first, then to the near tier: the instance that wrote
//     reads its own write at once, from its near tier. When the stream
//     reports that write back (its echo), the copy stays; a later write,
//     by anyone, drops it. Echoes are told by versions where the far store
//     reports them with its changes and writes ([store.VersionReporter]:
//     memory, natsstore); else (redisstore) they are counted, and a key
//     whose change was taken for an echo is read again in the background,
//     in bulk, as the server may report a later write with it. A write that
//     fails drops the near copy.
//   - Invalidation: every change that the far store's stream reports (a
//     write through any instance, a plain client of the backend, an expiry
//     or eviction on the server) drops the key's near copy on every
//     instance; a flush or swap of the backend's data (a [store.Change]
//     with All set) empties the near tier.
//   - Outages: while the stream is cut (Down: the connection lost, the
//     server dead, frozen or partitioned away), the near tier serves the
//     copies it holds, each until its NearTTL, and a near miss reads the
//     far tier (and fails if it is unreachable). When the stream comes back
//     with a replay of what it missed (Up, as NATS does), nothing more is
//     needed; when it cannot replay (Gap, as Redis after a reconnection),
//     the near tier is revalidated: every copy a hit could serve is read
//     again from the far tier, [RepairBatch] keys per bulk read, on a
//     goroutine of the store, and kept with what was read, or dropped if
//     the key is gone or could not be read. Copies are served meanwhile,
//     within their NearTTL. [FlushWhenDown] empties the near tier at Down
//     and Gap instead.
//   - Fallbacks: a near copy past its NearTTL is no hit, but it stays in
//     the near tier until the entry's KeepUntil (or until evicted, or a
//     change, a far read that finds nothing, or a flush drops it), and a
//     herd.Cache over the store returns it by stale-if-error when its load
//     fails while the far tier cannot be read or has nothing newer.
//   - No fill race: a far read that began before an invalidation of its key
//     (or a flush, or a write through this instance) arrived does not fill
//     the near tier. The bookkeeping of reads in flight holds only keys with
//     reads or writes in flight.
//   - Locks ([Store.TryLock], [Store.TryLockMany]) and versions and
//     conditional writes ([VersionedStore], one at a time or in bulk) go to
//     the far tier; a bulk call over a far store without the bulk
//     capability makes the single calls, [FallbackConcurrency] at a time.
//
// # Guarantees
//
// Let a write of a key complete on the far tier at time t (through any
// instance or any other client of the backend).
//
//   - With the stream healthy, every instance serves the written value (or a
//     later one) for reads that begin after the stream has delivered the
//     change to it: within the stream's delivery time of t.
//   - Whatever the stream does (a stall it does not report, a cut, an
//     outage of the far tier, a partition of one instance), no instance
//     serves the old value as a hit for a read that begins after t +
//     NearTTL (plus one tick of the near tier's clock, 1ms by default; see
//     [NearCoarseClock]): a near copy is served at most that long after the
//     start of the far read (or write) that gave it, on the monotonic clock.
//     A stale-if-error fallback of a herd.Cache is the one exception, and
//     says so (herd.StatusStaleOnError).
//   - After a cut that the stream reports, once it is back: with a replay
//     (Up), as with a healthy stream; without (Gap), every instance serves
//     the written value for reads that begin after its revalidation has
//     read the key, and within NearTTL of t at worst.
//   - After a Change with All set, the near tier is emptied before the
//     next change is handled.
//   - The instance that wrote reads its own write (or a later one) from the
//     moment its Set or Delete returns, whatever the stream reports about
//     that write later; and no instance reads a value older than one it
//     read before, unless a stale-if-error fallback.
//
// // # The far store
//
// [New] and [NewVersioned] require the far store to implement
// [store.ChangeStream] and panic otherwise: without a change stream, near
// copies could only be bounded by [NearTTL]. Use [NewVersioned] when the far
// store implements [store.Versioned] (memory, redisstore and natsstore all
// do): its [VersionedStore] implements [store.Versioned] too, so a
// herd.Cache over it writes loads back conditionally across the fleet. The
// store of [New] does not implement [store.Versioned], so a herd.Cache over
// it writes back unconditionally, whatever the far store can do.
//
// Closing a tiered store stops its watch and empties its near tier; it never
// closes the far store, which its caller built and owns (several tiered
// stores may share one, as a fleet shares a server): close the far store
// after the tiered stores over it.
package tiered

import (
	"context"
	"errors"
	"fmt"
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

// ErrClosed is returned by every method of a [Store] after [Store.Close].
var ErrClosed = errors.New("tiered: store closed")

// A Store is a two-level [store.Store]: a bounded memory near tier over a
// shared far tier. Build it with [New] or [NewVersioned]; its methods are
// safe for concurrent use. Besides [store.Store], it implements
// [store.SharedGetter], [store.BulkGetter], [store.Locker] and
// [store.BulkLocker], and lends a herd.Cache its near hits in place.
type Store[T any] struct {
	far         store.Store[T]
	bulk        store.BulkGetter[T]      // far, if it reads in bulk
	locker      store.Locker             // far, if it locks
	bulkLocker  store.BulkLocker         // far, if it locks in bulk
	reporter    store.VersionReporter[T] // far, if its writes report their versions
	near        *otter.Cache[string, *nearItem[T]]
	clock       *clock.Clock // the near tier's: a near hit's reading
	nearTTL     time.Duration
	flights     *inflight
	watch       store.Watch
	flushDown   bool // FlushWhenDown
	repairs     *repairer
	repairBatch int
	epoch       atomic.Uint64 // bumped by every Down: echoes of writes before it may be lost

	closed  atomic.Bool
	closing closing.Once

	farReads, changes, flushes, discarded, echoes, downs atomic.Uint64
	repairsRun, repairReads, repairDrops, echoChecks     atomic.Uint64
	checks                                               *checker // nil when the far store's writes report versions

	// lending is the hit path the store lends a herd cache: peekNear.
	lending[T]
}

// lending is local.Lending under a name of the package's own: embedded, it
// gives a store the unexported method by which a cache finds its hit path,
// and no exported field or method.
type lending[T any] = local.Lending[T]

// A nearItem is the near copy of an entry, as a store.Entry for
// GetShared and in the compact form of in-process stores for Peek. Its
// entry is never modified once stored, so that both can be lent.
//
// An item is served as a hit until until only; it stays in the near tier
// until the entry's KeepUntil, as the fallback of a load that fails while
// the far tier cannot be read (see fallback).
type nearItem[T any] struct {
	entry   store.Entry[T]
	compact local.Entry[T]
	until   int64 // the near tier's clock: the near copy is served before then only
	keep    int64 // the near tier's clock: the item leaves the near tier then

	// version is the far tier's version of the entry, when the read or
	// write that gave the copy knew it; zero otherwise.
	version store.Version

	// The echoes the item waits for: the reports by the stream of the
	// writes of this instance that made it, and of those before it whose
	// reports had not come yet (echoes, counted down by the changes of the
	// key), each of which leaves the item in place. echoEpoch is the
	// store's epoch when the first of those writes began: a Down since then
	// may have lost them. Guarded by the mutex of the key's stripe of
	// flights, under which every change and write of the key is handled.
	echoes    uint32
	echoEpoch uint64
}

// awaited returns the echoes it still waits for at epoch, or zero.
func (it *nearItem[T]) awaited(epoch uint64) uint32 {
	if it.echoEpoch != epoch {
		return 0
	}
	return it.echoes
}

var (
	_ store.Store[int]        = (*Store[int])(nil)
	_ store.SharedGetter[int] = (*Store[int])(nil)
	_ store.BulkGetter[int]   = (*Store[int])(nil)
	_ store.Locker            = (*Store[int])(nil)
)

// New returns a two-level store over far, with an empty near tier, and
// starts following far's change stream, waiting at most [WatchTimeout] for
// it to start. It returns an error only if the stream cannot be started.
//
// It panics if far is nil or does not implement [store.ChangeStream], or if
// an option is invalid, as these are programming errors. When far
// implements [store.Versioned], use [NewVersioned] instead, so that
// conditional writes reach it.
func New[T any](far store.Store[T], opts ...Option) (*Store[T], error) {
	check.That(far != nil, "tiered", "New needs a far store, got nil")
	cs, ok := far.(store.ChangeStream)
	check.That(ok, "tiered", "the far store, a %T, must implement store.ChangeStream", far)
	cfg := newConfig(opts)
	s := &Store[T]{
		far:         far,
		nearTTL:     cfg.nearTTL,
		flights:     newInflight(),
		flushDown:   cfg.flushDown,
		repairBatch: cfg.repairBatch,
	}
	s.lending = local.Lend[T](s, s.peekNear, true, s.fallback)
	s.bulk, _ = far.(store.BulkGetter[T])
	s.locker, _ = far.(store.Locker)
	s.bulkLocker, _ = far.(store.BulkLocker)
	s.reporter, _ = far.(store.VersionReporter[T])
	if s.reporter == nil {
		s.checks = newChecker(s.checkEchoes, cfg.repairBatch)
	}
	s.clock = clock.New(cfg.resolution)
	s.near = newNear[T](&cfg, s.clock)
	s.repairs = newRepairer(s.repair, cfg.watchTimeout)

	ctx, cancel := context.WithTimeout(context.Background(), cfg.watchTimeout)
	defer cancel()
	w, err := cs.Watch(ctx, s.onChange)
	if err != nil {
		s.repairs.close()
		if s.checks != nil {
			s.checks.close()
		}
		s.near.StopAllGoroutines()
		s.clock.Close()
		return nil, fmt.Errorf("tiered: watch the far store: %w", err)
	}
	s.watch = w
	return s, nil
}

func newNear[T any](cfg *config, clk *clock.Clock) *otter.Cache[string, *nearItem[T]] {
	o := &otter.Options[string, *nearItem[T]]{
		// The snapshot time of a near hit is its reading of the clock, which
		// the hit path keeps awake (see peekNear).
		Clock: clk.Passive(),
		// A "writing" calculator is computed on create and update only;
		// otter skips the read hook for it, which keeps the hit path short.
		ExpiryCalculator: otter.ExpiryWritingFunc(func(e otter.Entry[string, *nearItem[T]]) time.Duration {
			return time.Duration(e.Value.keep - e.SnapshotAtNano)
		}),
	}
	local.ApplyBound(o, "tiered", "NearMaxEntries", "NearMaxWeight",
		local.Bound{MaxEntries: cfg.maxEntries, MaxWeight: cfg.maxWeight, Weigher: cfg.weigher},
		func(it *nearItem[T]) (T, bool) { return it.entry.Value, !it.entry.NotFound })
	c, err := otter.New(o)
	check.That(err == nil, "tiered", "%v", err)
	return c
}

// onChange handles one change of the far stream. It runs on the stream's
// goroutine and only touches memory; a repair runs on its own goroutine.
func (s *Store[T]) onChange(c store.Change) {
	switch {
	case c.Up:
		// The stream is whole again: the changes made while it was down
		// were delivered since the Down. A repair that a Down cut short
		// still has copies to revalidate.
		s.repairs.resume(s.clock.Exact())
	case c.Down:
		// Copies are served on, each until its NearTTL, as through a stall.
		// The echoes of writes made before may be lost with the stream.
		s.downs.Add(1)
		s.epoch.Add(1)
		s.repairs.cancel()
		if s.flushDown {
			s.flush()
		}
	case c.Gap && !s.flushDown:
		// Every copy present was fetched before the Gap: revalidate them;
		// reads in flight, which began before it, do not fill the near
		// tier. Echoes of writes before it may have been lost. Copies
		// fetched from now on are covered by the stream.
		s.epoch.Add(1)
		s.flights.invalidateAll()
		s.repairs.start(s.clock.Exact())
	case c.All || c.Gap:
		s.repairs.cancel()
		s.flush()
	default:
		s.flights.changed(c.Key, c.Version, func() bool { return s.drop(c.Key, c.Version) })
		s.changes.Add(1) // after: a change counted has been handled
	}
}

// checkEcho has key re-read in the background, when a change without a
// version was taken for the echo of a write of this instance (see checker).
func (s *Store[T]) checkEcho(key string) {
	if s.checks != nil {
		s.checks.add(key)
	}
}

// flush empties the near tier, and makes the reads and writes in flight
// leave it empty.
func (s *Store[T]) flush() {
	s.flushes.Add(1)
	s.flights.invalidateAll()
	s.near.InvalidateAll()
}

// drop handles a change of key, at version v (zero if the stream did not
// say), that the stream reported: it drops the near copy, unless the change
// is older than the copy or the echo of the write of this instance that
// made it, and reports whether the copy stays.
//
// When both the change's version and the copy's are known, they decide:
// the copy stays if the change's version is not later than its own (an
// echo, a replay, a change that was overtaken). Otherwise a change is taken
// for the echo when the copy, made by a write of this instance, still
// waits for one: a stream that reports no versions (Redis) reports every
// change of a key, in the order they were made, so the first change
// reported after a write began is that write's or an earlier one's, never
// a later one's. Taking an earlier one's for the echo leaves the copy in
// place, which is right (the write is later), and the echo, when it comes,
// drops it, which is safe.
func (s *Store[T]) drop(key string, v store.Version) (kept bool) {
	e, ok := s.near.GetEntryQuietly(key)
	it := e.Value
	switch {
	case !ok:
	case v != 0 && it.version != 0:
		if v <= it.version {
			if v == it.version && it.echoes > 0 {
				it.echoes = 0
				s.echoes.Add(1)
			}
			return true
		}
	case v == 0 && it.version == 0 && it.awaited(s.epoch.Load()) > 0:
		it.echoes--
		s.echoes.Add(1)
		s.checkEcho(key)
		return true
	}
	s.near.Invalidate(key)
	return false
}

// GetShared returns the near copy of key's entry if the near tier has a
// live one, lent (it must not be modified), with the time at which it was
// found live; otherwise it reads the far tier and keeps a copy of what it
// found. A near hit takes no lock, allocates nothing and ignores ctx. Errors:
// the far store's, wrapped; [ErrClosed] after Close.
func (s *Store[T]) GetShared(ctx context.Context, key string) (*store.Entry[T], time.Time, bool, error) {
	mustContext(ctx)
	if s.closed.Load() {
		return nil, time.Time{}, false, ErrClosed
	}
	now := s.clock.Now() // also keeps the near tier's clock ticking while it is read
	if it, ok := s.near.GetIfPresent(key); ok && now < it.until {
		return &it.entry, time.Unix(0, now), true, nil
	}
	e, ok, err := s.getFar(ctx, key)
	if !ok {
		return nil, time.Time{}, false, err
	}
	return &e, time.Time{}, true, nil
}

// peekNear returns the near tier's live copy of key's entry, in the compact
// form of herd's in-process stores, which the caller must not modify, and
// the time (Unix nanoseconds) at which it was found live. It never reads the
// far tier: a miss (ok false) says only that the near tier has no live
// copy, not that the store has no entry; a caller then reads the store with
// [Store.GetShared] or [Store.Get]. It is the hit path the store lends a
// herd.Cache (see lending): no lock, no allocation, no clock read beyond
// the near tier's own.
func (s *Store[T]) peekNear(key string) (e *local.Entry[T], now int64, ok bool) {
	if s.closed.Load() {
		return nil, 0, false
	}
	now = s.clock.Now() // also keeps the near tier's clock ticking while it is read
	if it, ok := s.near.GetIfPresent(key); ok && now < it.until {
		return &it.compact, now, true
	}
	return nil, 0, false
}

// Get is [Store.GetShared] that returns a copy of the entry.
func (s *Store[T]) Get(ctx context.Context, key string) (store.Entry[T], bool, error) {
	e, _, ok, err := s.GetShared(ctx, key)
	if !ok {
		return store.Entry[T]{}, false, err
	}
	return *e, true, nil
}

// getFar reads key from the far tier and fills the near tier with it,
// unless the key was invalidated while the read was in flight.
func (s *Store[T]) getFar(ctx context.Context, key string) (store.Entry[T], bool, error) {
	s.farReads.Add(1)
	start := s.clock.Exact()
	t := s.flights.begin(key)
	var (
		e   store.Entry[T]
		v   store.Version
		ok  bool
		err error
	)
	if s.reporter != nil {
		// Its stream reports versions: a copy that knows its own outlives
		// a late report of the change that gave it.
		e, v, ok, err = s.reporter.GetVersion(ctx, key)
	} else {
		e, ok, err = s.far.Get(ctx, key)
	}
	switch {
	case err != nil:
		s.flights.finish(key, t, false, nil)
		return store.Entry[T]{}, false, fmt.Errorf("tiered: get %q: %w", key, err)
	case !ok:
		s.absent(key, t)
		return store.Entry[T]{}, false, nil
	}
	s.fillVersion(key, t, e, v, start)
	return e, true, nil
}

// fill keeps a near copy of e, read from the far tier by the operation of
// ticket t that began at start, unless key was invalidated meanwhile.
func (s *Store[T]) fill(key string, t ticket, e store.Entry[T], start int64) {
	s.fillVersion(key, t, e, 0, start)
}

// fillVersion is fill for an entry read at version v (zero if unknown).
func (s *Store[T]) fillVersion(key string, t ticket, e store.Entry[T], v store.Version, start int64) {
	it := s.newItem(e, start)
	if it != nil {
		it.version = v
	}
	s.flights.finish(key, t, false, func(vd verdict) {
		// Changes while the read was in flight, all reported at versions
		// no later than the one read: the read saw them.
		seen := v != 0 && vd.streamed > 0 && vd.unversioned == 0 && vd.last <= v
		switch {
		case !vd.unchanged && !seen, vd.reads > 0 && !s.newer(key, v):
			// Invalidated meanwhile; or another far read of the key ended
			// while this one was in flight, and may have filled a newer
			// copy, which this instance may have served: this one must not
			// go back. But its caller gets what it read, so a copy the
			// near tier keeps must not be older than that either.
			s.discarded.Add(1)
			if cur, ok := s.near.GetIfPresent(key); ok && (v == 0 || cur.version == 0 || cur.version < v) {
				s.near.Invalidate(key)
			}
		case it != nil && !s.closed.Load():
			s.near.Set(key, it)
		default:
			s.near.Invalidate(key)
		}
	})
}

// newer reports whether a copy of key read at version v is known to be
// newer than the near tier's copy: both versions known and v the later one.
// The caller holds the mutex of key's stripe.
func (s *Store[T]) newer(key string, v store.Version) bool {
	cur, ok := s.near.GetIfPresent(key)
	return ok && v != 0 && cur.version != 0 && v > cur.version
}

// absent ends the far read of ticket t, which found no entry of key: the
// copy of key the near tier kept past its NearTTL goes, as it is no
// fallback anymore; and so does any copy filled or written meanwhile, as
// the caller of this read gets "no entry", and its next read must not find
// an older value.
func (s *Store[T]) absent(key string, t ticket) {
	s.flights.finish(key, t, false, func(verdict) { s.near.Invalidate(key) })
}

// newItem returns the near copy of e for an operation that began at start
// (the near tier's clock), or nil if it could not be served anymore.
func (s *Store[T]) newItem(e store.Entry[T], start int64) *nearItem[T] {
	until := start + int64(s.nearTTL)
	keep := int64(math.MaxInt64)
	if !e.KeepUntil.IsZero() {
		// The entry's times are the fleet's wall-clock times; the near
		// tier's clock reads the same time, measured on the monotonic
		// clock since the store started.
		keep = e.KeepUntil.UnixNano()
		until = min(until, keep)
	}
	if until <= s.clock.Exact() {
		return nil
	}
	return &nearItem[T]{entry: e, compact: *local.New(&e, 0), until: until, keep: keep}
}

// fallback returns the copy of key that the near tier holds past its
// NearTTL (or within it), if any, for a load that failed: the value the far
// tier had when last read, which stale-if-error may serve while the far
// tier cannot be read. It is lent to a herd cache with the hit path.
func (s *Store[T]) fallback(key string) (store.Entry[T], bool) {
	if s.closed.Load() {
		return store.Entry[T]{}, false
	}
	it, ok := s.near.GetEntryQuietly(key)
	if !ok {
		return store.Entry[T]{}, false
	}
	return it.Value.entry, true
}

// Set stores e under key in the far tier, then in the near tier, so that
// this instance reads it at once. If the far write fails, the near copy of
// key is dropped and the far store's error returned, wrapped. Errors:
// also [ErrClosed] after Close.
func (s *Store[T]) Set(ctx context.Context, key string, e store.Entry[T]) error {
	return s.write(ctx, "set", key, &e, func() (store.Version, error) {
		if s.reporter != nil {
			return s.reporter.SetVersioned(ctx, key, e)
		}
		return 0, s.far.Set(ctx, key, e)
	})
}

// Delete removes key from the far tier, then drops its near copy. Errors:
// the far store's, wrapped; [ErrClosed] after Close.
func (s *Store[T]) Delete(ctx context.Context, key string) error {
	return s.write(ctx, "delete", key, nil, func() (store.Version, error) { return 0, s.far.Delete(ctx, key) })
}

// write runs farWrite, then makes the near tier agree with it: it keeps e
// (nil for a delete) if the write succeeded and nothing invalidated key
// since the write began, and drops the near copy otherwise. The write also
// invalidates key for the reads and writes of this instance in flight, so
// that none of them puts an older value in the near tier.
//
// farWrite returns the version it wrote, if the far store says (see
// [store.VersionReporter]), or zero.
func (s *Store[T]) write(ctx context.Context, op, key string, e *store.Entry[T], farWrite func() (store.Version, error)) error {
	mustContext(ctx)
	if s.closed.Load() {
		return ErrClosed
	}
	epoch, start := s.epoch.Load(), s.clock.Exact()
	t := s.flights.begin(key)
	v, err := farWrite()
	var it *nearItem[T]
	if err == nil && e != nil {
		if it = s.newItem(*e, start); it != nil {
			it.version = v
		}
	}
	s.settle(key, t, it, epoch)
	if err != nil {
		return fmt.Errorf("tiered: %s %q: %w", op, key, err)
	}
	return nil
}

// settle is the near-tier step of a far write of key by the operation of
// ticket t: it keeps it (nil for a delete, or a write that failed) if
// nothing but the write's own echo, or changes older than the write,
// invalidated key since the write began, and drops the near copy
// otherwise. The write counts as an invalidation of key for the reads and
// writes of this instance in flight.
//
// The stream reports the write later (its echo), or reported it while the
// write was in flight. With versions (the write's and the changes'), the
// changes meanwhile must not be later than the write, and the copy waits
// for the echo unless it came. Without, the copy waits for the echo
// unless one change of the key came meanwhile, which was the echo or an
// earlier change (see drop); two or more, and the copy is dropped, as a
// later write may be among them. It also waits for the echoes that the
// copy it replaces still waited for (earlier writes of this instance,
// reported before this one's): the first changes after the write began are
// those echoes, this write's, or earlier changes, never a later write's.
//
// epoch is the store's epoch when the write began: if a Down comes between
// then and the echo, the echo may be lost, and no change is taken for it.
func (s *Store[T]) settle(key string, t ticket, it *nearItem[T], epoch uint64) {
	s.flights.finish(key, t, true, func(v verdict) {
		if it == nil || s.closed.Load() {
			s.near.Invalidate(key)
			return
		}
		wait := true
		switch {
		case v.reads > 0:
			// A far read of the key ended while the write was in flight:
			// it may have read a later write, which this instance may have
			// served; keeping this one would go back.
			it = nil
		case v.unchanged:
		case v.streamed == 0 || s.epoch.Load() != epoch:
			// A flush or another write of this instance; or changes around
			// a loss, where an echo may have been lost.
			it = nil
		case it.version != 0 && v.unversioned == 0:
			switch {
			case v.last > it.version:
				it = nil
			case v.last == it.version:
				wait = false
			}
		case it.version == 0 && v.unversioned == v.streamed && v.streamed == 1:
			wait = false
		default:
			it = nil
		}
		if it == nil {
			s.near.Invalidate(key)
			return
		}
		if !wait {
			s.echoes.Add(1)
			if v.unversioned > 0 {
				s.checkEcho(key)
			}
		}
		if it.version == 0 {
			// Echoes are counted: this write's, if it has not come, and
			// those the replaced copy still waits for, if they go back to
			// this epoch.
			var owed uint32
			if prev, ok := s.near.GetEntryQuietly(key); ok && prev.Value.version == 0 {
				owed = prev.Value.awaited(epoch)
			}
			if wait {
				owed++
			}
			it.echoes, it.echoEpoch = owed, epoch
		} else if wait {
			it.echoes = 1
		}
		s.near.Set(key, it)
	})
}

// GetMany returns the live entries of keys: the near tier's copies, then
// those of the rest from one far GetMany (one Get per key if the far store
// is not a [store.BulkGetter]), which fill the near tier. An error of the
// far store comes, wrapped, with the entries that were read.
func (s *Store[T]) GetMany(ctx context.Context, keys []string) (map[string]store.Entry[T], error) {
	mustContext(ctx)
	if s.closed.Load() {
		return nil, ErrClosed
	}
	found := make(map[string]store.Entry[T], len(keys))
	var (
		rest    []string
		tickets map[string]ticket
	)
	for _, k := range keys {
		if _, ok := found[k]; ok {
			continue
		}
		if _, ok := tickets[k]; ok {
			continue
		}
		if it, ok := s.near.GetIfPresent(k); ok && s.clock.Now() < it.until {
			found[k] = it.entry
			continue
		}
		if tickets == nil {
			tickets = make(map[string]ticket)
		}
		tickets[k] = s.flights.begin(k)
		rest = append(rest, k)
	}
	if len(rest) == 0 {
		return found, nil
	}
	s.farReads.Add(uint64(len(rest)))
	start := s.clock.Exact()
	far, err := s.getManyFar(ctx, rest)
	for _, k := range rest {
		if e, ok := far[k]; ok {
			found[k] = e
			s.fill(k, tickets[k], e, start)
		} else if err == nil {
			s.absent(k, tickets[k])
		} else {
			s.flights.finish(k, tickets[k], false, nil)
		}
	}
	if err != nil {
		return found, fmt.Errorf("tiered: get many: %w", err)
	}
	return found, nil
}

func (s *Store[T]) getManyFar(ctx context.Context, keys []string) (map[string]store.Entry[T], error) {
	if s.bulk != nil {
		return s.bulk.GetMany(ctx, keys)
	}
	found := make(map[string]store.Entry[T], len(keys))
	var errs []error
	for _, k := range keys {
		e, ok, err := s.far.Get(ctx, k)
		switch {
		case err != nil:
			errs = append(errs, err)
		case ok:
			found[k] = e
		}
	}
	return found, errors.Join(errs...)
}

// ErrNoLocker is returned, wrapped, by [Store.TryLock] when the far store
// does not implement [store.Locker].
var ErrNoLocker = errors.New("tiered: the far store does not implement store.Locker")

// TryLock acquires the lock of key on the far tier, as the far store's
// TryLock does (its errors, [store.ErrLocked] among them, come back as they
// are). It returns an error wrapping [ErrNoLocker] when the far store has no
// locks, and [ErrClosed] after Close.
func (s *Store[T]) TryLock(ctx context.Context, key string, ttl time.Duration) (store.Lock, error) {
	mustContext(ctx)
	if s.closed.Load() {
		return nil, ErrClosed
	}
	if s.locker == nil {
		return nil, fmt.Errorf("tiered: lock %q: %w", key, ErrNoLocker)
	}
	return s.locker.TryLock(ctx, key, ttl)
}

// Stats are the counters of a [Store], for diagnostics and tests. Near hits
// are not counted, so that a hit costs no shared write.
type Stats struct {
	// FarReads is the number of keys read from the far tier because the
	// near tier had no live copy (repairs not included).
	FarReads uint64
	// Changes is the number of key changes the far stream reported,
	// each counted once the near tier has handled it.
	Changes uint64
	// Echoes is the number of writes of this instance whose near copy
	// stayed when the stream reported them back.
	Echoes uint64
	// Downs is the number of times the far stream reported it was cut.
	Downs uint64
	// Flushes is the number of times the near tier was emptied: at a
	// Change with All set, or, with [FlushWhenDown], with Down or Gap set.
	Flushes uint64
	// Repairs is the number of revalidations of the near tier that a Gap
	// started; RepairReads the keys they read from the far tier, and
	// RepairDrops the near copies they dropped, as their key was gone or
	// could not be read.
	Repairs, RepairReads, RepairDrops uint64
	// EchoChecks is the number of keys read again from the far tier
	// because a change without a version (Redis reports keys only) was
	// taken for the echo of this instance's write: it may also stand for a
	// later write by another client.
	EchoChecks uint64
	// DiscardedFills is the number of far reads not kept in the near tier
	// because their key was invalidated while they were in flight.
	DiscardedFills uint64
	// NearEntries is about the number of entries in the near tier, those
	// kept past their NearTTL as fallbacks included.
	NearEntries int
	// InFlight is the number of keys with far reads or writes in flight.
	InFlight int
}

// Stats returns the store's counters, read one by one. It runs the near
// tier's pending evictions first, so that NearEntries is within the bound:
// use it for diagnostics and tests, not on a hot path.
func (s *Store[T]) Stats() Stats {
	s.near.CleanUp()
	return Stats{
		FarReads:       s.farReads.Load(),
		Changes:        s.changes.Load(),
		Echoes:         s.echoes.Load(),
		Downs:          s.downs.Load(),
		Flushes:        s.flushes.Load(),
		Repairs:        s.repairsRun.Load(),
		RepairReads:    s.repairReads.Load(),
		RepairDrops:    s.repairDrops.Load(),
		EchoChecks:     s.echoChecks.Load(),
		DiscardedFills: s.discarded.Load(),
		NearEntries:    s.near.EstimatedSize(),
		InFlight:       s.flights.len(),
	}
}

// Close stops following the far store's change stream (waiting for a
// change being handled), stops the near tier's clean-up goroutine and
// empties it. It does not close the far store: its caller owns it. Calls
// after Close return [ErrClosed]. Close is idempotent: every call waits for
// the same shutdown within its ctx, and returns an error wrapping ctx.Err()
// if ctx ends first, or the watch's Close error, wrapped.
func (s *Store[T]) Close(ctx context.Context) error {
	mustContext(ctx)
	return s.closing.Close(ctx, "tiered", func() { s.closed.Store(true) }, s.shutdown)
}

func (s *Store[T]) shutdown() error {
	var err error
	if werr := s.watch.Close(); werr != nil {
		err = fmt.Errorf("tiered: close: %w", werr)
	}
	s.repairs.close()
	if s.checks != nil {
		s.checks.close()
	}
	s.near.StopAllGoroutines()
	s.near.InvalidateAll()
	s.clock.Close()
	return err
}

func mustContext(ctx context.Context) {
	check.Context(ctx, "tiered")
}
