package autorefresh

import (
	"time"
)

// Stats is a snapshot of a cache's counters, from [Cache.Stats]. Every field
// but Size and LastCycleItems is a counter that only grows, from the cache's
// creation on.
type Stats struct {
	// Size is the number of items in the set, as [Cache.Len] gives it.
	Size int
	// Hits counts the Get and GetOrCreate calls that found their item.
	Hits uint64
	// Misses counts the Get calls that returned ErrNotFound and the
	// GetOrCreate calls that created their item.
	Misses uint64
	// Created counts the items created by GetOrCreate.
	Created uint64
	// Evictions counts the items removed to keep the set within MaxItems.
	Evictions uint64

	// Cycles counts the cycles run.
	Cycles uint64
	// LastCycleItems is the number of items the last cycle cut into batches.
	LastCycleItems int
	// SkippedHeld counts the items that a cycle skipped because an earlier
	// sync call still held them.
	SkippedHeld uint64

	// Syncs counts the sync calls that have returned (or panicked), whatever
	// their outcome.
	Syncs uint64
	// SyncTime is the total time spent in those calls: SyncTime / Syncs is
	// their mean latency.
	SyncTime time.Duration
	// ItemsSynced counts the items passed to those calls. ItemsSynced /
	// Cycles is the mean number of items synced per cycle (counting those
	// synced on creation); LastCycleItems is the last cycle's.
	ItemsSynced uint64
	// SyncErrors counts the calls that returned an error.
	SyncErrors uint64
	// SyncPanics counts the calls that panicked or called runtime.Goexit,
	// IsTerminal calls on their results included.
	SyncPanics uint64
	// CallbackPanics counts the panics recovered on the cache's own
	// goroutines from the callbacks other than the sync function: the
	// Batcher, the Observer and the logger's handler.
	CallbackPanics uint64

	// Updated counts the Update results applied.
	Updated uint64
	// Deleted counts the Delete results applied.
	Deleted uint64
	// ResultsDiscarded counts the Update and Delete results not applied
	// because their item had changed or been removed since the call read it,
	// or because the call had outlived its deadline and lost its items.
	ResultsDiscarded uint64
}

// Stats returns a snapshot of the cache's counters.
func (c *Cache[K, V]) Stats() Stats {
	c.mu.Lock()
	defer c.mu.Unlock()
	s := c.stats
	s.Size = len(c.items)
	return s
}

// An EventKind says what an [Event] reports.
type EventKind uint8

const (
	// EventCycle reports that a cycle cut its batches. Items is the number of
	// items cut.
	EventCycle EventKind = iota + 1
	// EventSync reports that a sync call returned without error and its
	// results were applied (those that could not be are reported by an
	// EventDiscard that follows). Items is the batch's size, Duration the
	// call's.
	EventSync
	// EventSyncError reports that a sync call returned Err. Items and
	// Duration are as for EventSync.
	EventSyncError
	// EventSyncPanic reports that a sync call panicked; Err is a
	// [*github.com/herdcache/herd/flight.PanicError] with the panic value and
	// stack, or wraps [github.com/herdcache/herd/flight.ErrGoexit] if the call
	// called runtime.Goexit. Items and Duration are as for EventSync.
	EventSyncPanic
	// EventEvict reports that an item was evicted to keep the set within
	// MaxItems. Items is 1.
	EventEvict
	// EventDiscard reports that Update or Delete results of a sync call were
	// discarded because their items had changed or the call had lost them.
	// Items is the number of results.
	EventDiscard
)

// String returns the kind's name in snake case, as metrics use it.
func (k EventKind) String() string {
	switch k {
	case EventCycle:
		return "cycle"
	case EventSync:
		return "sync"
	case EventSyncError:
		return "sync_error"
	case EventSyncPanic:
		return "sync_panic"
	case EventEvict:
		return "evict"
	case EventDiscard:
		return "discard"
	}
	return "unknown"
}

// An Event reports one thing that happened in a cache, for metrics.
type Event struct {
	Kind     EventKind
	Items    int           // how many items the event concerns
	Duration time.Duration // for sync events: how long the call took
	Err      error         // for EventSyncError and EventSyncPanic
}

// An Observer receives a cache's events as they happen. Observe is called
// from the cache's goroutines and from GetOrCreate, concurrently, never with
// a lock held: it may call the cache, but it must be fast and must not
// block. A panic in Observe on one of the cache's goroutines is recovered,
// counted in [Stats.CallbackPanics] and logged, and the goroutine goes on; a
// panic in Observe called by GetOrCreate (the eviction event) propagates to
// GetOrCreate's caller, once the item has been created.
type Observer interface {
	Observe(Event)
}

// ObserverFunc adapts a function to an [Observer].
type ObserverFunc func(Event)

// Observe calls f(e).
func (f ObserverFunc) Observe(e Event) { f(e) }

func (c *Cache[K, V]) observe(e Event) {
	if c.cfg.observer != nil {
		c.cfg.observer.Observe(e)
	}
}
