package herd

import (
	"sync/atomic"
	"time"
	"unsafe"
)

// Stats are the counters of a [Cache] since it was built. Each field counts
// one kind of [Event].
type Stats struct {
	Hits         uint64 // fresh values returned from the store
	StaleHits    uint64 // stale values returned at once, a refresh queued
	Misses       uint64 // callers that found no usable entry and waited for a load
	NegativeHits uint64 // cached "not found" answers returned
	SharedWaits  uint64 // callers that got the result of a load another caller started
	LockWaits    uint64 // loads that waited for another process holding the key's lock

	Loads      uint64        // loader calls
	LoadErrors uint64        // loader calls that failed ("not found" is not a failure)
	LoadTime   time.Duration // total time spent in loader calls

	RefreshesQueued  uint64 // background refreshes queued
	RefreshesDropped uint64 // background refreshes dropped because the queue was full
	RefreshesFailed  uint64 // background refreshes whose load failed

	StaleOnError uint64 // stale values returned because a load failed
	StoreErrors  uint64 // store reads, writes and lock calls that failed

	RefreshesSkipped uint64 // background refreshes skipped because another process held the key's lock
	WriteConflicts   uint64 // loads not written back because the key was written since they began
	CallbackPanics   uint64 // panics of observers and log handlers, recovered

	BatchLoads      uint64        // batch loader calls by GetMany and FetchMany, foreground and background
	BatchKeys       uint64        // keys those calls asked for
	BatchLoadErrors uint64        // batch loader calls that failed
	BatchLoadTime   time.Duration // total time spent in batch loader calls

	StoreSkipped uint64 // store calls not made because the store was down (see StoreBackoff)
	StoreDowns   uint64 // times the store was found unavailable and marked down
	StoreUps     uint64 // times the store answered again after it was marked down
}

// An EventKind says what an [Event] counts.
type EventKind uint8

// The kinds of events, one per field of [Stats].
const (
	EventHit EventKind = iota + 1
	EventStaleHit
	EventMiss
	EventNegativeHit
	EventSharedWait
	EventLockWait
	EventLoad // Duration is the loader's time, Err its error if it failed
	EventRefreshQueued
	EventRefreshDropped
	EventRefreshFailed // Err is the load's error
	EventStaleOnError  // Err is the load's error
	EventStoreError    // Err is the store's error
	EventRefreshSkipped
	EventWriteConflict
	EventBatchLoad    // Keys is how many keys it asked for, Duration its time, Err its error if it failed
	EventStoreSkipped // a store call not made because the store was down
	EventStoreDown    // the store was found unavailable; Err is the call's error
	EventStoreUp      // the store answered again
)

var eventNames = [...]string{
	EventHit: "hit", EventStaleHit: "stale_hit", EventMiss: "miss", EventNegativeHit: "negative_hit",
	EventSharedWait: "shared_wait", EventLockWait: "lock_wait", EventLoad: "load",
	EventRefreshQueued: "refresh_queued", EventRefreshDropped: "refresh_dropped",
	EventRefreshFailed: "refresh_failed", EventStaleOnError: "stale_on_error", EventStoreError: "store_error",
	EventRefreshSkipped: "refresh_skipped", EventWriteConflict: "write_conflict",
	EventBatchLoad: "batch_load", EventStoreSkipped: "store_skipped", EventStoreDown: "store_down",
	EventStoreUp: "store_up",
}

// String returns the event's name in snake case, as metrics use it.
func (k EventKind) String() string {
	if int(k) < len(eventNames) && eventNames[k] != "" {
		return eventNames[k]
	}
	return "unknown"
}

// An Event is one thing the cache counted.
type Event struct {
	Kind     EventKind
	Key      string
	Duration time.Duration // for EventLoad
	Err      error         // for failures
	Keys     int           // for EventBatchLoad
}

// An Observer receives a cache's events as they happen, on the goroutine that
// caused them (a caller's, a load's or a refresh worker's), never under a
// lock of the cache. Observe must be fast: it runs on the hit path. It may
// call the cache, though a Get from Observe on an event of the same key can
// recurse. A panic in Observe is recovered wherever it runs, counted in
// [Stats.CallbackPanics] and logged; the cache goes on.
type Observer interface {
	Observe(Event)
}

// ObserverFunc adapts a function to an [Observer].
type ObserverFunc func(Event)

// Observe calls f(e).
func (f ObserverFunc) Observe(e Event) { f(e) }

// counters are the cache's statistics. Hits, stale hits, misses, shared
// waits and loads are counted on the hot paths, from every core at once, so
// their counters are striped over cache lines; the others are rare enough
// for one atomic each.
type counters struct {
	hits, staleHits, misses, sharedWaits, loads, loadNanos stripedCounter
	negativeHits, lockWaits, loadErrors                    counter
	refreshesQueued, refreshesDropped, refreshesFailed     counter
	staleOnError, storeErrors                              counter
	refreshesSkipped, writeConflicts, callbackPanics       counter
	batchLoads, batchKeys, batchLoadErrors, batchLoadNanos counter
	storeSkipped, storeDowns, storeUps                     counter
}

// An adder is a counter of events: a counter, or a stripedCounter for the
// counts of the hot paths.
type adder interface{ add() }

// A counter is one atomic count.
type counter struct{ atomic.Uint64 }

// add adds 1.
func (n *counter) add() { n.Add(1) }

func (c *counters) snapshot() Stats {
	return Stats{
		Hits: c.hits.load(), StaleHits: c.staleHits.load(), Misses: c.misses.load(),
		NegativeHits: c.negativeHits.Load(), SharedWaits: c.sharedWaits.load(), LockWaits: c.lockWaits.Load(),
		Loads: c.loads.load(), LoadErrors: c.loadErrors.Load(), LoadTime: time.Duration(c.loadNanos.load()),
		RefreshesQueued: c.refreshesQueued.Load(), RefreshesDropped: c.refreshesDropped.Load(),
		RefreshesFailed: c.refreshesFailed.Load(), StaleOnError: c.staleOnError.Load(), StoreErrors: c.storeErrors.Load(),
		RefreshesSkipped: c.refreshesSkipped.Load(), WriteConflicts: c.writeConflicts.Load(), CallbackPanics: c.callbackPanics.Load(),
		BatchLoads: c.batchLoads.Load(), BatchKeys: c.batchKeys.Load(), BatchLoadErrors: c.batchLoadErrors.Load(),
		BatchLoadTime: time.Duration(c.batchLoadNanos.Load()),
		StoreSkipped:  c.storeSkipped.Load(), StoreDowns: c.storeDowns.Load(), StoreUps: c.storeUps.Load(),
	}
}

const stripes = 16

type stripedCounter struct {
	s [stripes]struct {
		n atomic.Uint64
		_ [56]byte // one cache line per stripe
	}
}

// add adds 1.
func (c *stripedCounter) add() { c.addN(1) }

// addN adds n on a stripe picked by the address of a local variable:
// goroutines have distinct stacks, so concurrent callers mostly land on
// distinct stripes, at the cost of a shift instead of a random number.
func (c *stripedCounter) addN(n uint64) {
	var local byte
	i := uintptr(unsafe.Pointer(&local)) >> 12 // stacks are at least 2 KiB apart; mix in higher bits
	c.s[(i^i>>4)%stripes].n.Add(n)
}

func (c *stripedCounter) load() uint64 {
	var n uint64
	for i := range c.s {
		n += c.s[i].n.Load()
	}
	return n
}
