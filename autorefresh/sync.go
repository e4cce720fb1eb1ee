package autorefresh

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"runtime/debug"
	"time"

	"github.com/herdcache/herd/flight"
)

// A batch is the unit of work of one sync call. Between its cut and the end
// of its call, held maps each of its ids to it: a mark is removed only by
// identity (held[id] == b), so that a late call never frees its successor's
// items.
type batch[K comparable, V any] struct {
	items []Item[K, V]
	// Written under Cache.mu when the call starts.
	versions []uint64  // the entries' versions read with the items' values
	started  bool      // the call has started; the marks may now expire
	deadline time.Time // the call's context ends then, and its marks expire
}

// expired reports whether b's marks no longer hold its items: its call
// started and passed its deadline without returning. A batch waiting for a
// worker never expires: it cannot be lost, only dropped by Close.
func (b *batch[K, V]) expired(now time.Time) bool {
	return b.started && !now.Before(b.deadline)
}

// loop runs the cycles and hands the batches to the workers until ctx ends.
// It is the only goroutine that cuts batches, so a cut and the marking of its
// items need not happen under one lock.
func (c *Cache[K, V]) loop(ctx context.Context) {
	defer func() {
		c.mu.Lock()
		c.closed = true // when Start's ctx ended rather than Close
		c.mu.Unlock()
		c.wg.Wait()
		c.cancel()
		close(c.done)
	}()
	ticker := time.NewTicker(c.opts.ResyncPeriod)
	defer ticker.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-ticker.C:
			c.dispatch(ctx, c.cycle())
		case <-c.kick:
			c.dispatch(ctx, c.cutFresh())
		}
	}
}

// cycle removes the items marked by DeleteDelayed, forgets the marks of lost
// calls, and cuts every item that is neither terminal nor held into batches.
func (c *Cache[K, V]) cycle() []*batch[K, V] {
	now := time.Now()
	c.mu.Lock()
	for id, b := range c.held {
		if b.expired(now) {
			delete(c.held, id)
		}
	}
	items := make([]Item[K, V], 0, len(c.items))
	skipped := 0
	for id, e := range c.items {
		switch {
		case e.deleting:
			c.removeLocked(e)
		case e.terminal:
		case c.held[id] != nil:
			skipped++
		default:
			items = append(items, Item[K, V]{ID: id, Value: e.value})
		}
	}
	clear(c.fresh) // this cut covers them
	c.stats.Cycles++
	c.stats.LastCycleItems = len(items)
	c.stats.SkippedHeld += uint64(skipped)
	c.mu.Unlock()
	c.observe(Event{Kind: EventCycle, Items: len(items)})
	return c.batches(items)
}

// cutFresh cuts the items created with SyncOnCreate since the last cut.
func (c *Cache[K, V]) cutFresh() []*batch[K, V] {
	c.mu.Lock()
	var items []Item[K, V]
	for id := range c.fresh {
		// fresh holds only ids in the set: removeLocked forgets them.
		if e := c.items[id]; !e.terminal && !e.deleting && c.held[id] == nil {
			items = append(items, Item[K, V]{ID: id, Value: e.value})
		}
	}
	clear(c.fresh)
	c.mu.Unlock()
	return c.batches(items)
}

// batches groups the items of a cut into batches of at most BatchSize,
// through the Batcher if there is one.
func (c *Cache[K, V]) batches(items []Item[K, V]) []*batch[K, V] {
	if len(items) == 0 {
		return nil
	}
	size := c.opts.BatchSize
	if c.opts.Batcher == nil {
		out := make([]*batch[K, V], 0, (len(items)+size-1)/size)
		for len(items) > 0 {
			n := min(size, len(items))
			out = append(out, &batch[K, V]{items: items[:n:n]})
			items = items[n:]
		}
		return out
	}

	groups := c.callBatcher(items)
	index := make(map[K]int, len(items))
	for i, it := range items {
		index[it.ID] = i
	}
	taken := make([]bool, len(items))
	var out []*batch[K, V]
	strays := 0
	add := func(group []Item[K, V], fromBatcher bool) {
		var cur *batch[K, V]
		for _, it := range group {
			i, ok := index[it.ID]
			if !ok || taken[i] {
				if fromBatcher {
					strays++
				}
				continue
			}
			taken[i] = true
			if cur == nil || len(cur.items) == size {
				cur = &batch[K, V]{items: make([]Item[K, V], 0, min(size, len(group)))}
				out = append(out, cur)
			}
			cur.items = append(cur.items, items[i])
		}
	}
	for _, g := range groups {
		add(g, true)
	}
	left := 0
	for _, t := range taken {
		if !t {
			left++
		}
	}
	if left > 0 {
		rest := make([]Item[K, V], 0, left)
		for i, t := range taken {
			if !t {
				rest = append(rest, items[i])
			}
		}
		add(rest, false)
	}
	if strays > 0 || left > 0 {
		c.debugLog.Log(context.Background(), c.opts.Logger, slog.LevelDebug,
			"autorefresh: batcher did not return each item once",
			slog.Int("unknown_or_repeated", strays), slog.Int("left_out", left))
	}
	return out
}

// callBatcher returns the Batcher's groups, or nil if it panicked.
func (c *Cache[K, V]) callBatcher(items []Item[K, V]) (groups [][]Item[K, V]) {
	defer func() {
		if r := recover(); r != nil {
			c.panicLog.Log(context.Background(), c.opts.Logger, slog.LevelError,
				"autorefresh: batcher panicked; using the default batches",
				slog.Any("panic", r), slog.String("stack", string(debug.Stack())))
			groups = nil
		}
	}()
	// The Batcher gets its own copy: the items are read again after it returns.
	return c.opts.Batcher(append([]Item[K, V](nil), items...))
}

// dispatch marks the batches' items as held and hands the batches to the
// workers one by one, until ctx ends. A cycle whose batches are not all
// taken by the time the next is due delays it: ticks are not queued.
func (c *Cache[K, V]) dispatch(ctx context.Context, batches []*batch[K, V]) {
	if len(batches) == 0 {
		return
	}
	c.mu.Lock()
	for _, b := range batches {
		for _, it := range b.items {
			c.held[it.ID] = b
		}
	}
	c.mu.Unlock()
	for _, b := range batches {
		select {
		case c.work <- b:
		case <-ctx.Done():
			return // closing: the marks no longer matter
		}
	}
}

// worker runs batches until ctx ends.
func (c *Cache[K, V]) worker(ctx context.Context) {
	returned := false
	defer func() {
		if !returned {
			// The sync function called runtime.Goexit (run has already
			// recovered from any panic). Keep the pool at its size; Add
			// comes before Done, so the counter never touches zero.
			c.wg.Add(1)
			go c.worker(ctx)
		}
		c.wg.Done()
	}()
	for {
		select {
		case <-ctx.Done():
			returned = true
			return
		case b := <-c.work:
			if ctx.Err() != nil || (c.limiter != nil && c.limiter.Wait(ctx) != nil) {
				c.release(b) // closing
				continue
			}
			c.run(b)
		}
	}
}

// release forgets b's marks without a call.
func (c *Cache[K, V]) release(b *batch[K, V]) {
	c.mu.Lock()
	c.unmarkLocked(b)
	c.mu.Unlock()
}

func (c *Cache[K, V]) unmarkLocked(b *batch[K, V]) {
	for _, it := range b.items {
		if c.held[it.ID] == b {
			delete(c.held, it.ID)
		}
	}
}

// run calls the sync function with b and applies its results. It reads the
// items' values at the start of the call, so that the call gets the latest
// ones, and drops the items that have since been removed, marked by
// DeleteDelayed or become terminal.
func (c *Cache[K, V]) run(b *batch[K, V]) {
	start := time.Now()
	c.mu.Lock()
	if c.closed {
		// Close was called since the worker took b: no call starts after
		// Close, which sets closed under the same lock.
		c.unmarkLocked(b)
		c.mu.Unlock()
		return
	}
	n := 0
	b.versions = make([]uint64, len(b.items))
	for _, it := range b.items {
		e, ok := c.items[it.ID]
		if !ok || e.terminal || e.deleting || c.held[it.ID] != b {
			if c.held[it.ID] == b {
				delete(c.held, it.ID)
			}
			continue
		}
		b.items[n] = Item[K, V]{ID: it.ID, Value: e.value}
		b.versions[n] = e.version
		n++
	}
	clear(b.items[n:]) // let go of the dropped values
	b.items, b.versions = b.items[:n], b.versions[:n]
	b.started, b.deadline = true, start.Add(c.opts.SyncTimeout)
	c.mu.Unlock()
	if n == 0 {
		return
	}

	ctx, cancel := context.WithDeadline(c.runCtx, b.deadline)
	var (
		results  []Result[K, V]
		terminal []bool
		err      error
		returned bool
	)
	// One deferred function tells a panic from a runtime.Goexit: recover
	// returns nil for the second. Either way the call's marks must be freed,
	// which is why finish runs here and not after the call.
	defer func() {
		panicked := false
		if !returned {
			panicked = true
			if r := recover(); r != nil {
				err = &flight.PanicError{Value: r, Stack: debug.Stack()}
			} else {
				err = fmt.Errorf("autorefresh: sync: %w", flight.ErrGoexit)
			}
		}
		cancel()
		c.finish(b, results, terminal, err, panicked, time.Since(start))
	}()
	results, err = c.sync(ctx, b.items)
	if err == nil {
		terminal = make([]bool, len(results))
		for i, r := range results {
			if r.Action == Update {
				terminal[i] = c.isTerminal(r.Value)
			}
		}
	}
	returned = true
}

// finish applies the results of b's call, frees its marks, counts, logs and
// tells the observer.
func (c *Cache[K, V]) finish(b *batch[K, V], results []Result[K, V], terminal []bool, err error, panicked bool, latency time.Duration) {
	var discarded, unknown int
	c.mu.Lock()
	// A call that returns after its deadline is lost even if no cycle has
	// synced its items again yet: its results may be older than anything.
	lost := !time.Now().Before(b.deadline)
	if err == nil && len(results) > 0 {
		index := make(map[K]int, len(b.items))
		for i, it := range b.items {
			index[it.ID] = i
		}
		for i, r := range results {
			j, ok := index[r.ID]
			if !ok || r.Action > Delete {
				unknown++
				continue
			}
			if r.Action == Unchanged {
				continue
			}
			e := c.items[r.ID]
			if lost || e == nil || e.version != b.versions[j] || c.held[r.ID] != b {
				discarded++ // the call was lost, or the item changed
				continue
			}
			if r.Action == Update {
				c.version++
				e.value, e.terminal, e.version = r.Value, terminal[i], c.version
				c.stats.Updated++
			} else {
				c.removeLocked(e)
				c.stats.Deleted++
			}
		}
	}
	c.unmarkLocked(b)
	c.stats.Syncs++
	c.stats.ItemsSynced += uint64(len(b.items))
	c.stats.SyncTime += latency
	c.stats.ResultsDiscarded += uint64(discarded)
	switch {
	case panicked:
		c.stats.SyncPanics++
	case err != nil:
		c.stats.SyncErrors++
	}
	c.mu.Unlock()

	log := c.opts.Logger
	ctx := c.runCtx
	ev := Event{Kind: EventSync, Items: len(b.items), Duration: latency, Err: err}
	switch {
	case panicked:
		ev.Kind = EventSyncPanic
		attrs := []slog.Attr{slog.Int("items", len(b.items)), slog.Any("err", err)}
		var pe *flight.PanicError
		if errors.As(err, &pe) {
			attrs = append(attrs, slog.Any("panic", pe.Value), slog.String("stack", string(pe.Stack)))
		}
		c.panicLog.Log(ctx, log, slog.LevelError, "autorefresh: sync panicked; its items are kept", attrs...)
	case err != nil:
		ev.Kind = EventSyncError
		c.errLog.Log(ctx, log, slog.LevelWarn, "autorefresh: sync failed; its items are kept",
			slog.Int("items", len(b.items)), slog.Duration("latency", latency), slog.Any("err", err))
	}
	if unknown > 0 {
		c.debugLog.Log(ctx, log, slog.LevelDebug, "autorefresh: sync returned results for ids not in its batch or with an unknown action",
			slog.Int("results", unknown))
	}
	c.observe(ev)
	if discarded > 0 {
		c.observe(Event{Kind: EventDiscard, Items: discarded})
	}
}
