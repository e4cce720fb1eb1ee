package autorefresh

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/herdcache/herd/flight"
	"github.com/herdcache/herd/internal/catch"
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
	ticker := time.NewTicker(c.cfg.resyncPeriod)
	defer ticker.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-ticker.C:
			c.dispatch(ctx, c.cycle(ctx))
		case <-c.kick:
			c.dispatch(ctx, c.cutFresh(ctx))
		}
	}
}

// cycle removes the items marked by DeleteDelayed, forgets the marks of lost
// calls, and cuts every item that is neither terminal nor held into batches.
// ctx is the loop's, for the logs and the callbacks.
func (c *Cache[K, V]) cycle(ctx context.Context) []*batch[K, V] {
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
	c.guard(ctx, "observer", func() { c.observe(Event{Kind: EventCycle, Items: len(items)}) })
	return c.batches(ctx, items)
}

// cutFresh cuts the items created with SyncOnCreate since the last cut.
func (c *Cache[K, V]) cutFresh(ctx context.Context) []*batch[K, V] {
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
	return c.batches(ctx, items)
}

// batches groups the items of a cut into batches of at most BatchSize,
// through the Batcher if there is one.
func (c *Cache[K, V]) batches(ctx context.Context, items []Item[K, V]) []*batch[K, V] {
	if len(items) == 0 {
		return nil
	}
	if c.batcher != nil {
		if out, ok := c.batcherBatches(ctx, items); ok {
			return out
		}
	}
	size := c.cfg.batchSize
	out := make([]*batch[K, V], 0, (len(items)-1)/size+1) // not len+size-1: size may be MaxInt
	for len(items) > 0 {
		n := min(size, len(items))
		out = append(out, &batch[K, V]{items: items[:n:n]})
		items = items[n:]
	}
	return out
}

// batcherBatches groups the items as the Batcher says, within the rules the
// Batcher's documentation gives. ok is false when the Batcher panicked (or
// returned ids that cannot be map keys): the panic is recovered, counted and
// logged, and the caller cuts the default batches instead.
func (c *Cache[K, V]) batcherBatches(ctx context.Context, items []Item[K, V]) (out []*batch[K, V], ok bool) {
	ok = c.guard(ctx, "batcher", func() {
		// The Batcher gets its own copy: the items are read again after it returns.
		groups := c.batcher(append([]Item[K, V](nil), items...))
		out = c.regroup(ctx, items, groups)
	})
	return out, ok
}

// regroup turns the Batcher's groups into batches of the cut's items.
func (c *Cache[K, V]) regroup(ctx context.Context, items []Item[K, V], groups [][]Item[K, V]) []*batch[K, V] {
	size := c.cfg.batchSize
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
	var rest []Item[K, V]
	for i, t := range taken {
		if !t {
			rest = append(rest, items[i])
		}
	}
	add(rest, false)
	if strays > 0 || len(rest) > 0 {
		c.guard(ctx, "logger", func() {
			c.debugLog.Log(ctx, c.cfg.logger, slog.LevelDebug,
				"autorefresh: batcher did not return each item once",
				slog.Int("unknown_or_repeated", strays), slog.Int("left_out", len(rest)))
		})
	}
	return out
}

// guard runs f, which calls a callback of the user's (what names it), on one
// of the cache's own goroutines, and reports whether f returned. A panic in
// it is recovered, counted in Stats.CallbackPanics and logged, so that the
// goroutine goes on; a runtime.Goexit is let through.
func (c *Cache[K, V]) guard(ctx context.Context, what string, f func()) (returned bool) {
	p := catch.Call(f, nil) // a runtime.Goexit ends the goroutine, and the worker's defer replaces it
	if p == nil {
		return true
	}
	pe := &flight.PanicError{Value: p.Value, Stack: p.Stack}
	c.mu.Lock()
	c.stats.CallbackPanics++
	c.mu.Unlock()
	defer func() { _ = recover() }() // the logger may be what panicked
	c.panicLog.Log(ctx, c.cfg.logger, slog.LevelError, "autorefresh: "+what+" panicked; the cache goes on",
		slog.Any("err", pe), slog.String("stack", string(pe.Stack)))
	return false
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
	defer c.wg.Done()
	catch.Unwound(func() { c.runBatches(ctx) }, func() {
		// The sync function called runtime.Goexit (run has already
		// recovered from any panic). Keep the pool at its size; Add comes
		// before Done, so the counter never touches zero.
		c.wg.Add(1)
		go c.worker(ctx)
	})
}

// runBatches is a worker's loop: it runs batches until ctx ends.
func (c *Cache[K, V]) runBatches(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
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
	b.started, b.deadline = true, start.Add(c.cfg.syncTimeout)
	c.mu.Unlock()
	if n == 0 {
		return
	}

	ctx, cancel := context.WithDeadline(c.runCtx, b.deadline)
	var res outcome[K, V]
	// Whatever the call does, its marks must be freed: finish also runs
	// while a runtime.Goexit unwinds the worker.
	end := func() {
		cancel()
		res.latency = time.Since(start)
		c.finish(b, &res)
	}
	p := catch.Call(func() { c.call(ctx, b, &res) }, func() {
		res.panicked = true
		res.err = fmt.Errorf("autorefresh: sync: %w", flight.ErrGoexit)
		end()
	})
	if p != nil {
		res.panicked = true
		res.err = &flight.PanicError{Value: p.Value, Stack: p.Stack}
	}
	end()
}

// call calls the sync function with b's items and prepares its results in
// res for finish.
func (c *Cache[K, V]) call(ctx context.Context, b *batch[K, V], res *outcome[K, V]) {
	res.results, res.err = c.sync(ctx, b.items)
	if res.err == nil {
		// The results' ids and values are the sync function's: hashing the
		// ids and calling IsTerminal run here, where a panic counts as the
		// call's, and not under the lock in finish.
		index := make(map[K]int, len(b.items))
		for i, it := range b.items {
			index[it.ID] = i
		}
		res.slots = make([]int, len(res.results))
		res.terminal = make([]bool, len(res.results))
		for i, r := range res.results {
			j, ok := index[r.ID]
			if !ok || r.Action > Delete {
				j = -1
			}
			res.slots[i] = j
			if r.Action == Update {
				res.terminal[i] = c.isTerminal(r.Value)
			}
		}
	}
}

// outcome is what a sync call returned, prepared for finish.
type outcome[K comparable, V any] struct {
	results  []Result[K, V]
	slots    []int  // the index in the batch of each result's item; -1: unknown id or action
	terminal []bool // for each Update result, IsTerminal of its value
	err      error
	panicked bool // err is a *flight.PanicError or wraps flight.ErrGoexit
	latency  time.Duration
}

// finish applies the results of b's call, frees its marks, counts, logs and
// tells the observer.
func (c *Cache[K, V]) finish(b *batch[K, V], res *outcome[K, V]) {
	discarded, unknown := c.apply(b, res)
	ctx := c.runCtx
	log := c.cfg.logger
	ev := Event{Kind: EventSync, Items: len(b.items), Duration: res.latency, Err: res.err}
	switch {
	case res.panicked:
		ev.Kind = EventSyncPanic
	case res.err != nil:
		ev.Kind = EventSyncError
	}
	c.guard(ctx, "logger", func() {
		switch {
		case res.panicked:
			attrs := []slog.Attr{slog.Int("items", len(b.items)), slog.Any("err", res.err)}
			var pe *flight.PanicError
			if errors.As(res.err, &pe) {
				attrs = append(attrs, slog.Any("panic", pe.Value), slog.String("stack", string(pe.Stack)))
			}
			c.panicLog.Log(ctx, log, slog.LevelError, "autorefresh: sync panicked; its items are kept", attrs...)
		case res.err != nil:
			c.errLog.Log(ctx, log, slog.LevelWarn, "autorefresh: sync failed; its items are kept",
				slog.Int("items", len(b.items)), slog.Duration("latency", res.latency), slog.Any("err", res.err))
		}
		if unknown > 0 {
			c.debugLog.Log(ctx, log, slog.LevelDebug, "autorefresh: sync returned results for ids not in its batch or with an unknown action",
				slog.Int("results", unknown))
		}
	})
	c.guard(ctx, "observer", func() {
		c.observe(ev)
		if discarded > 0 {
			c.observe(Event{Kind: EventDiscard, Items: discarded})
		}
	})
}

// apply applies the results of b's call under the lock, frees its marks and
// counts the call.
func (c *Cache[K, V]) apply(b *batch[K, V], res *outcome[K, V]) (discarded, unknown int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	// A call that returns after its deadline is lost even if no cycle has
	// synced its items again yet: its results may be older than anything.
	lost := !time.Now().Before(b.deadline)
	if res.err == nil {
		for i, r := range res.results {
			j := res.slots[i]
			switch {
			case j < 0:
				unknown++
				continue
			case r.Action == Unchanged:
				continue
			}
			id := b.items[j].ID
			e := c.items[id]
			if lost || e == nil || e.version != b.versions[j] || c.held[id] != b {
				discarded++ // the call was lost, or the item changed
				continue
			}
			if r.Action == Update {
				c.version++
				e.value, e.terminal, e.version = r.Value, res.terminal[i], c.version
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
	c.stats.SyncTime += res.latency
	c.stats.ResultsDiscarded += uint64(discarded)
	switch {
	case res.panicked:
		c.stats.SyncPanics++
	case res.err != nil:
		c.stats.SyncErrors++
	}
	return discarded, unknown
}
