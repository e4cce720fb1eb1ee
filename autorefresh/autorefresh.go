// Package autorefresh keeps a set of items whose state lives elsewhere (jobs,
// workflow executions, cloud resources) up to date by re-syncing all of them
// every period, in batches, with a bounded pool of workers under a rate limit.
// Items enter the set through [Cache.GetOrCreate] and leave it through
// [Cache.Delete], [Cache.DeleteDelayed], a [Delete] result of the sync
// function, or eviction when the set is full ([MaxItems]).
//
//	jobs := autorefresh.New(syncJobs, // says, for each job of a batch, unchanged, update or delete
//		autorefresh.ResyncPeriod(30*time.Second), autorefresh.Parallelism(8), autorefresh.BatchSize(50))
//	if err := jobs.Start(ctx); err != nil {
//		return err
//	}
//	defer jobs.Close(ctx)
//	job, created, err := jobs.GetOrCreate(id, Job{State: "queued"})
//
// # Guarantees
//
//   - Every cycle passes each non-terminal item to the sync function exactly
//     once, unless an earlier call still holds it (then the cycle skips it and
//     counts it in [Stats.SkippedHeld]), or it changes between the cut and the
//     start of its call into a terminal or deleted item. Terminal items and
//     items marked by DeleteDelayed are never passed to the sync function.
//   - An item is never in two sync calls at once, unless one of them is lost.
//     A cycle holds the items it cuts until their call returns. A call that
//     has not returned by its deadline ([SyncTimeout] after it
//     started) is lost: it no longer holds its items, the first cycle after
//     its deadline syncs them again, and the results it returns late are
//     discarded. A call that takes longer than a period but returns within
//     its deadline is never overlapped: the cycles in between skip its items.
//   - A result is applied only if its item has not changed since the call
//     read it: a [Cache.Update], [Cache.Delete], re-creation or other applied
//     result that lands while the call runs wins, and the result is discarded
//     and counted in [Stats.ResultsDiscarded]. Items that the call did not
//     receive are left alone; items it received but returned no result for
//     are unchanged.
//   - A call that returns an error changes nothing: its results are discarded,
//     the error is counted and logged, and its items are synced again at the
//     next cycle, not before. A call that panics (or calls [runtime.Goexit])
//     is recovered: the panic is counted and logged at error level with its
//     value and stack, its items are kept, and the worker goes on (after a
//     Goexit a new worker replaces it), so the pool keeps its size. Logging
//     is rate-limited (see [WithLogger]); counting is not.
//   - Sync calls never exceed Parallelism at once, and never start faster
//     than the rate limit allows.
//
// Every method is safe for concurrent use.
//
// # Costs
//
// Reading or changing one item costs a map access under one mutex, plus an
// [IsTerminal] call for every value stored. A cycle costs one pass
// over the set under that mutex. The cache runs [Parallelism] workers and
// one goroutine for the cycles while it is started, and nothing else.
//
// # Errors
//
// [Cache.Get] and [Cache.Update] return [ErrNotFound] (not wrapped) for an
// id that is not in the set. After [Cache.Close], or once the context given
// to [Cache.Start] has ended, every method but Close, Len and Stats
// returns [ErrClosed]. Start returns [ErrAlreadyStarted] when called a second time,
// and an error wrapping ctx.Err() when its context has already ended. The
// sync function's errors and panics reach no caller: they are counted in
// [Stats] and logged. A nil context is a programming error: Start and Close
// panic with "autorefresh: nil Context" before taking any lock; [New]
// panics on a nil sync function or an option out of range, with a message
// naming it.
//
// # Lifecycle
//
// [New] holds items at once and starts nothing: no item is synced
// before [Cache.Start], which starts the workers and the cycles; the first
// cycle runs a period after Start. They run until [Cache.Close] is called or
// Start's context ends; in the second case the cache closes itself, but
// Close should still be called to wait for the sync calls in flight.
// [Cache.Close] stops the cycles and the workers and waits, within its
// context, for the calls in flight; it may be called any number of times,
// before or after Start, and every call waits for the same shutdown,
// returning an error wrapping ctx.Err() ("autorefresh: close: ...") when its
// context ends first, after ending the calls' contexts. Nothing the cache
// started runs once Close has returned nil.
//
// # How a cycle runs
//
// Once [Cache.Start] has been called, a cycle runs every [ResyncPeriod]:
//
//  1. Items marked by DeleteDelayed are removed.
//  2. Every other item that is neither terminal ([IsTerminal]) nor
//     still held by an earlier sync call is cut into batches of at most
//     [BatchSize] items ([Batcher] may choose the grouping).
//  3. The batches go to [Parallelism] workers. Each worker waits for
//     the rate limiter ([RateLimit] batches per second), reads the
//     current values of its batch's items and calls the [SyncFunc] once with
//     them.
//  4. Each [Result] the call returns is applied: [Unchanged], [Update] (store
//     the new value) or [Delete] (remove the item).
//
// With [SyncOnCreate], the items that GetOrCreate creates are also cut into
// batches soon after, between cycles, under the same limits.
//
// # Conventions
//
// A Cache follows the conventions of every herd package (see package
// [github.com/herdcache/herd]). New returns no error: nothing it does
// depends on the world outside the process. The functions the cache is
// given (the sync function, IsTerminal, the Batcher, the Observer, the
// logger's handler) are never called with a lock held, so they may call the
// cache. On the cache's own goroutines a panic in any of them is recovered,
// counted ([Stats.SyncPanics] for the sync function and the IsTerminal calls
// of its results, [Stats.CallbackPanics] for the others) and logged, and the
// goroutine goes on. On a caller's goroutine (IsTerminal in GetOrCreate and
// Update, the Observer's eviction event in GetOrCreate) a panic propagates
// to that caller, and leaves no lock held. Errors are logged under the key
// "err", on the context of the work: the context given to Start, whose
// values every sync call's context carries.
package autorefresh

import (
	"context"
	"errors"
	"fmt"
	"sync"

	"golang.org/x/time/rate"

	"github.com/herdcache/herd/internal/check"
	"github.com/herdcache/herd/internal/ratelog"
	"github.com/herdcache/herd/internal/wait"
)

var (
	// ErrNotFound is returned by [Cache.Get] and [Cache.Update] for an id that
	// is not in the set.
	ErrNotFound = errors.New("autorefresh: item not found")
	// ErrClosed is returned by every method of a cache that has been closed,
	// or whose Start context has ended.
	ErrClosed = errors.New("autorefresh: cache closed")
	// ErrAlreadyStarted is returned by [Cache.Start] when it is called a
	// second time.
	ErrAlreadyStarted = errors.New("autorefresh: already started")
)

// An Item is what the sync function receives: an id and the value the cache
// holds for it when the sync call starts.
type Item[K comparable, V any] struct {
	ID    K
	Value V
}

// An Action says what a [Result] does to its item.
type Action uint8

const (
	// Unchanged leaves the item as it is. It is the zero Action, so a Result
	// without an Action changes nothing.
	Unchanged Action = iota
	// Update replaces the item's value by [Result.Value].
	Update
	// Delete removes the item from the set.
	Delete
)

// String returns the action's name.
func (a Action) String() string {
	switch a {
	case Unchanged:
		return "unchanged"
	case Update:
		return "update"
	case Delete:
		return "delete"
	}
	return fmt.Sprintf("Action(%d)", uint8(a))
}

// A Result is the sync function's verdict on one item of its batch.
type Result[K comparable, V any] struct {
	// ID is the item's id. A result whose id was not in the batch is ignored.
	ID K
	// Action says what to do with the item. A result with an Action other
	// than Unchanged, Update and Delete is ignored.
	Action Action
	// Value is the item's new value when Action is Update; otherwise it is
	// not read.
	Value V
}

// A SyncFunc fetches the state of a batch of items from their source of
// truth and says, for each, whether it is unchanged, has a new value or is
// gone. Items it returns no result for are unchanged.
//
// ctx carries the values of the context given to [Cache.Start] and ends at
// the call's deadline ([SyncTimeout]), when that context ends, or
// when [Cache.Close] gives up waiting. A SyncFunc must return soon after ctx
// ends: a call that does not keeps its worker busy.
//
// When it returns a non-nil error, its results are discarded.
type SyncFunc[K comparable, V any] func(ctx context.Context, batch []Item[K, V]) ([]Result[K, V], error)

// A Cache is a set of items, keyed by id, that a pool of workers re-syncs
// with their source every period. Create one with [New]; a Cache must not be
// copied.
type Cache[K comparable, V any] struct {
	sync         SyncFunc[K, V]
	cfg          config
	isTerminalFn func(V) bool                      // nil: nothing is terminal
	batcher      func([]Item[K, V]) [][]Item[K, V] // nil: the default batches
	limiter      *rate.Limiter                     // nil: no rate limit

	work chan *batch[K, V] // the loop hands batches to the workers
	kick chan struct{}     // wakes the loop for items created with SyncOnCreate
	done chan struct{}     // closed when the loop and every worker have returned
	wg   sync.WaitGroup    // workers

	mu      sync.Mutex
	items   map[K]*entry[K, V]
	lru     lru[K, V]
	held    map[K]*batch[K, V] // items cut into a batch whose call has not returned
	fresh   map[K]struct{}     // created with SyncOnCreate, not yet cut
	version uint64             // last version given to an entry; unique per change
	started bool               // Start was called
	closed  bool               // Close was called or Start's context ended
	stop    context.CancelFunc // stops the loop and the workers
	cancel  context.CancelFunc // ends the running sync calls' contexts
	runCtx  context.Context    // parent of the sync calls' contexts
	stats   Stats              // Size is filled in by Stats

	errLog, panicLog, debugLog ratelog.Limiter
}

// entry is one item of the set.
type entry[K comparable, V any] struct {
	id       K
	value    V
	version  uint64 // changes with every change of value or identity
	terminal bool   // IsTerminal(value)
	deleting bool   // DeleteDelayed: removed at the next cycle
	// prev and next link the entries from most to least recently used.
	prev, next *entry[K, V]
}

// New returns a cache whose items are synced by syncFn, configured by opts.
// It panics when syncFn is nil or an option is out of range, with a message
// naming it. The cache holds items at once; it syncs them once [Cache.Start]
// has been called.
func New[K comparable, V any](syncFn SyncFunc[K, V], opts ...Option) *Cache[K, V] {
	check.That(syncFn != nil, "autorefresh", "New needs a SyncFunc, got nil")
	cfg := newConfig(opts)
	c := &Cache[K, V]{
		sync:  syncFn,
		cfg:   cfg,
		work:  make(chan *batch[K, V]),
		kick:  make(chan struct{}, 1),
		done:  make(chan struct{}),
		items: make(map[K]*entry[K, V]),
		held:  make(map[K]*batch[K, V]),
		fresh: make(map[K]struct{}),
	}
	if cfg.isTerminal != nil {
		f, ok := cfg.isTerminal.(func(V) bool)
		check.That(ok, "autorefresh", "IsTerminal must be a %T, got %T", f, cfg.isTerminal)
		c.isTerminalFn = f
	}
	if cfg.batcher != nil {
		f, ok := cfg.batcher.(func([]Item[K, V]) [][]Item[K, V])
		check.That(ok, "autorefresh", "Batcher must be a %T, got %T", f, cfg.batcher)
		c.batcher = f
	}
	if cfg.rateLimit > 0 && cfg.rateLimit != rate.Inf {
		c.limiter = rate.NewLimiter(cfg.rateLimit, cfg.rateBurst)
	}
	return c
}

// Start starts the cycles and the workers. They run until [Cache.Close] is
// called or ctx ends; in the second case the cache closes itself (methods
// return [ErrClosed]) and running sync calls see their contexts end, but
// Close should still be called to wait for them. The sync calls' contexts
// carry ctx's values.
//
// Start returns [ErrAlreadyStarted] if it was called before, [ErrClosed]
// after Close, and an error wrapping ctx.Err() if ctx has already ended; in
// each case it starts nothing. A nil ctx panics before any lock is taken.
func (c *Cache[K, V]) Start(ctx context.Context) error {
	check.Context(ctx, "autorefresh")
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("autorefresh: start: %w", err)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	switch {
	case c.closed:
		return ErrClosed
	case c.started:
		return ErrAlreadyStarted
	}
	c.started = true
	var stopCtx context.Context
	stopCtx, c.stop = context.WithCancel(ctx)
	c.runCtx, c.cancel = context.WithCancel(ctx)
	c.wg.Add(c.cfg.parallelism)
	for range c.cfg.parallelism {
		go c.worker(stopCtx)
	}
	go c.loop(stopCtx)
	return nil
}

// Close stops the cycles and the workers: no sync call starts after Close
// has been called, and batches not yet started are dropped. It then waits for
// the sync calls in flight to return and their results to be applied. If ctx
// ends first, Close ends the calls' contexts and returns an error wrapping
// ctx.Err() without waiting further; the workers return as soon as their
// calls do.
//
// After Close, every method but Len and Stats returns [ErrClosed]. Close may
// be called more than once, and before Start; each call waits as the first.
// A nil ctx panics before any lock is taken.
func (c *Cache[K, V]) Close(ctx context.Context) error {
	check.Context(ctx, "autorefresh")
	c.mu.Lock()
	if !c.closed {
		c.closed = true
		if c.started {
			c.stop()
		} else {
			close(c.done)
		}
	}
	cancel := c.cancel
	c.mu.Unlock()
	if wait.For(ctx, c.done) {
		return nil
	}
	cancel()
	return fmt.Errorf("autorefresh: close: %w", ctx.Err())
}

// GetOrCreate returns the value of the item id, creating the item with value v
// if it is not in the set; created reports whether it did. It is atomic: of
// many concurrent callers for a missing id, one creates the item and every
// other gets its value.
//
// An item marked by [Cache.DeleteDelayed] counts as missing: it is replaced
// by a new item with value v, which the pending delete does not touch.
// Creating an item in a full set evicts one (see [MaxItems]). With
// [SyncOnCreate], a created item that is not terminal is synced soon
// after. GetOrCreate returns [ErrClosed] after Close.
//
// IsTerminal, and the Observer of an eviction, run on the caller's
// goroutine without a lock held: a panic in them propagates to the caller.
func (c *Cache[K, V]) GetOrCreate(id K, v V) (value V, created bool, err error) {
	terminal := c.isTerminal(v)
	value, created, evicted, err := c.getOrCreate(id, v, terminal)
	if evicted {
		c.observe(Event{Kind: EventEvict, Items: 1})
	}
	return value, created, err
}

// getOrCreate is GetOrCreate under the lock; evicted reports that an item
// was evicted to make room.
func (c *Cache[K, V]) getOrCreate(id K, v V, terminal bool) (value V, created, evicted bool, err error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return value, false, false, ErrClosed
	}
	if e, ok := c.items[id]; ok && !e.deleting {
		c.stats.Hits++
		c.lru.touch(e)
		return e.value, false, false, nil
	}
	c.stats.Misses++
	if old, ok := c.items[id]; ok {
		c.removeLocked(old)
	} else if c.cfg.maxItems > 0 && len(c.items) >= c.cfg.maxItems {
		c.removeLocked(c.lru.oldest())
		c.stats.Evictions++
		evicted = true
	}
	c.version++
	e := &entry[K, V]{id: id, value: v, version: c.version, terminal: terminal}
	c.items[id] = e
	c.lru.push(e)
	c.stats.Created++
	if c.cfg.syncOnCreate && !terminal {
		c.fresh[id] = struct{}{}
		select {
		case c.kick <- struct{}{}:
		default: // the loop is already due to look
		}
	}
	return v, true, evicted, nil
}

// Get returns the value of the item id. It returns [ErrNotFound] (not
// wrapped) if the item is not in the set, and [ErrClosed] after Close. An
// item marked by [Cache.DeleteDelayed] is found until the next cycle.
func (c *Cache[K, V]) Get(id K) (V, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	var zero V
	if c.closed {
		return zero, ErrClosed
	}
	e, ok := c.items[id]
	if !ok {
		c.stats.Misses++
		return zero, ErrNotFound
	}
	c.stats.Hits++
	c.lru.touch(e)
	return e.value, nil
}

// Update replaces the value of the item id, which must be in the set: it
// returns [ErrNotFound] (not wrapped) if it is not, and never creates it. A
// result of a sync call in flight for the item is discarded: the update wins.
// Update returns [ErrClosed] after Close.
func (c *Cache[K, V]) Update(id K, v V) error {
	terminal := c.isTerminal(v)
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return ErrClosed
	}
	e, ok := c.items[id]
	if !ok {
		return ErrNotFound
	}
	c.version++
	e.value, e.terminal, e.version = v, terminal, c.version
	c.lru.touch(e)
	return nil
}

// Delete removes the item id from the set at once; a result of a sync call
// in flight for it is discarded. Deleting a missing id does nothing. Delete
// returns [ErrClosed] after Close.
func (c *Cache[K, V]) Delete(id K) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return ErrClosed
	}
	if e, ok := c.items[id]; ok {
		c.removeLocked(e)
	}
	return nil
}

// DeleteDelayed marks the item id for removal at the start of the next
// cycle. Until then [Cache.Get] and [Cache.Update] still find it and Len
// counts it, but it is never synced again, and [Cache.GetOrCreate] replaces
// it with a new item that the mark does not touch. Marking a missing id does
// nothing. DeleteDelayed returns [ErrClosed] after Close.
func (c *Cache[K, V]) DeleteDelayed(id K) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return ErrClosed
	}
	if e, ok := c.items[id]; ok {
		e.deleting = true
		delete(c.fresh, id)
	}
	return nil
}

// Len returns the number of items in the set, counting those marked by
// DeleteDelayed.
func (c *Cache[K, V]) Len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.items)
}

// removeLocked removes e from the set. Its mark in held, if any, stays until
// its sync call returns, so that a re-created item of the same id is not
// synced while the old call runs.
func (c *Cache[K, V]) removeLocked(e *entry[K, V]) {
	delete(c.items, e.id)
	delete(c.fresh, e.id)
	c.lru.remove(e)
}

func (c *Cache[K, V]) isTerminal(v V) bool {
	return c.isTerminalFn != nil && c.isTerminalFn(v)
}
