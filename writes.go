package herd

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/herdcache/herd/internal/check"
	"github.com/herdcache/herd/internal/keymap"
	"github.com/herdcache/herd/store"
)

// Writes win (invariant 4 of the design): a Set or Delete that lands while a
// load of the key is in flight is not overwritten by the load's result.
//
// In the process, the writeGuard sees to it: a load registers when it
// starts; Set and Delete mark the key's registration as superseded; the load
// stores its result only if it was not.
//
// Across processes, the store does, when it is a store.Versioned: a load
// reads the key's version before its loader runs (writeBase), and writes its
// result back with SetIf or DeleteIf on that version, so that a write by any
// other process or client since then wins. A load that ran longer than the
// store remembers versions is not written back at all.

// Set stores v under key as if it had just been loaded. It wins over a load
// or refresh of key in flight, in this process and, over a store.Versioned,
// in every process sharing the store: that load's result is not stored. If a
// load of this process is storing its result at this moment, Set waits for
// it, within ctx.
func (c *Cache[T]) Set(ctx context.Context, key string, v T) error {
	check.Context(ctx, "herd")
	if c.closed.Load() {
		return ErrClosed
	}
	e, _ := c.newEntry(v, time.Now(), nil)
	c.backoff.succeeded(key)
	err := c.writes.supersede(ctx, key, func() error {
		return c.guard(ctx, func() error { return c.store.Set(ctx, key, e) })
	})
	if err != nil {
		c.storeError(ctx, "set", key, err)
		return fmt.Errorf("herd: set %q: %w", key, err)
	}
	return nil
}

// Delete removes key from the cache. It wins over a load or refresh of key in
// flight, as [Cache.Set] does, and a Get that starts after Delete returns
// does not share that load but loads again.
func (c *Cache[T]) Delete(ctx context.Context, key string) error {
	check.Context(ctx, "herd")
	if c.closed.Load() {
		return ErrClosed
	}
	err := c.writes.supersede(ctx, key, func() error {
		return c.guard(ctx, func() error { return c.store.Delete(ctx, key) })
	})
	// A load in flight read the source before this Delete: callers from now
	// on must not join it.
	c.flight.Forget(key)
	if err != nil {
		c.storeError(ctx, "delete", key, err)
		return fmt.Errorf("herd: delete %q: %w", key, err)
	}
	return nil
}

// writeBase is what a load's write-back is conditional on: the key's
// version in a store.Versioned, read before the loader ran.
type writeBase struct {
	ok      bool          // the version is known
	version store.Version // the key's version when the load began
	at      int64         // when it was read, Unix nanoseconds
}

// writeBack stores what jobs loaded (or removes their keys), each unless a
// Set or Delete of its key superseded it in this process, or, over a
// store.Versioned, anything wrote the key since its version was read: in
// one bulk call when the store has it, bounded by StoreTimeout. The events
// come after every write is finished, as an observer may Set a key, which
// waits for that.
func (c *Cache[T]) writeBack(r *loadRun[T], jobs []*job[T]) {
	ctx := r.callCtx
	if ctx.Done() != nil {
		ctx = context.WithoutCancel(ctx)
	}
	if !c.inProcess { // an in-process store never blocks; a timer would cost more than the write
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, c.cfg.storeTimeout)
		defer cancel()
	}
	if len(jobs) == 1 { // a load of one key, the usual case: no bookkeeping
		j := jobs[0]
		if j.done || !j.stored || !c.writes.startWrite(&j.reg) {
			return
		}
		err := c.guard(r.callCtx, func() error { return c.writeOne(ctx, j) })
		c.writes.finishWrite(&j.reg)
		c.wrote(j, err)
		return
	}
	var idx []int
	for i, j := range jobs {
		if j != nil && !j.done && j.stored && c.writes.startWrite(&j.reg) {
			idx = append(idx, i)
		}
	}
	if len(idx) == 0 {
		return
	}
	errs := c.writeMany(r.callCtx, ctx, jobs, idx)
	for _, i := range idx {
		c.writes.finishWrite(&jobs[i].reg)
	}
	for k, i := range idx {
		c.wrote(jobs[i], errs[k])
	}
}

// wrote counts the outcome of j's write-back.
func (c *Cache[T]) wrote(j *job[T], err error) {
	switch {
	case err == nil:
	case errors.Is(err, store.ErrConflict):
		c.record(j, &c.stats.writeConflicts, Event{Kind: EventWriteConflict, Key: j.key})
	default:
		c.storeError(j, "write back", j.key, err)
	}
}

// writeOne is the store write of j's write-back, which startWrite allowed.
func (c *Cache[T]) writeOne(ctx context.Context, j *job[T]) error {
	if j.done || !j.stored {
		return nil
	}
	if err := c.writable(j); err != nil || c.versioned == nil {
		switch {
		case err != nil:
			return errSkip(err)
		case j.write != nil:
			return c.store.Set(ctx, j.key, *j.write)
		default:
			return c.store.Delete(ctx, j.key)
		}
	}
	if j.write != nil {
		return c.versioned.SetIf(ctx, j.key, *j.write, j.base.version)
	}
	return c.versioned.DeleteIf(ctx, j.key, j.base.version)
}

// errNoBase is what writable says of a job whose version read failed: its
// write-back is skipped, as nothing safe can be written.
var errNoBase = errors.New("herd: the version read before the load failed")

// errSkip turns writable's answer into writeOne's: nothing to count for a
// job whose version read failed (it was counted then).
func errSkip(err error) error {
	if errors.Is(err, errNoBase) {
		return nil
	}
	return err
}

// writable reports whether j's result may be written back conditionally,
// over a store.Versioned: its version was read, and not so long ago that
// the store may have forgotten a write made meanwhile (a conflict, then).
func (c *Cache[T]) writable(j *job[T]) error {
	switch {
	case c.versioned == nil:
		return nil
	case !j.base.ok:
		return errNoBase
	case c.since(j.base.at, j.at) >= c.versioned.VersionRetention():
		return store.ErrConflict
	}
	return nil
}

// since is how long ago t (Unix nanoseconds) was: measured from now on a
// remote store, whose writes may follow the load's end by round trips; from
// the load's end, loaded, on an in-process store.
func (c *Cache[T]) since(t, loaded int64) time.Duration {
	if c.inProcess {
		return time.Duration(loaded - t)
	}
	return time.Since(time.Unix(0, t))
}

// writeMany is the store writes, on ctx within outer, of the write-backs of jobs[i] for each i in
// idx, in the order of idx, in one bulk call if the store has it.
func (c *Cache[T]) writeMany(outer, ctx context.Context, jobs []*job[T], idx []int) []error {
	errs := make([]error, len(idx))
	if c.inProcess { // in-process: no call blocks, and the store is never down
		for k, i := range idx {
			errs[k] = c.writeOne(ctx, jobs[i])
		}
		return errs
	}
	b, bulk := c.store.(store.BulkVersioned[T])
	if !bulk {
		eachKey(len(idx), func(k int) { errs[k] = c.guard(outer, func() error { return c.writeOne(ctx, jobs[idx[k]]) }) })
		return errs
	}
	writes := make([]store.ConditionalWrite[T], 0, len(idx))
	at := make([]int, 0, len(idx)) // the index in idx of each write
	for k, i := range idx {
		j := jobs[i]
		if err := c.writable(j); err != nil {
			errs[k] = errSkip(err)
			continue
		}
		w := store.ConditionalWrite[T]{Key: j.key, Version: j.base.version, Delete: j.write == nil}
		if j.write != nil {
			w.Entry = *j.write
		}
		writes = append(writes, w)
		at = append(at, k)
	}
	if len(writes) == 0 {
		return errs
	}
	var werrs []error
	if err := c.guard(outer, func() error {
		werrs = fill(b.WriteIf(ctx, writes), len(writes))
		return firstUnavailable(outer, werrs)
	}); errors.Is(err, errStoreDown) {
		werrs = fill(nil, len(writes), err)
	}
	for n, err := range werrs {
		errs[at[n]] = err
	}
	return errs
}

// writeGuard makes a Set or Delete win over a load of the same key that was
// in flight in this process when it landed.
//
// Its registry holds only keys with a load or a Set or Delete in flight, so
// it is bounded by them; it is striped, so that loads of different keys
// rarely share a mutex, and gives back its memory after a burst (see
// keymap). No mutex is held during a store call.
type writeGuard struct {
	keys keymap.Striped[guarded]
}

// guarded is what the write guard knows of a key.
type guarded struct {
	load *registration // the load in flight, if any
	// setting counts the Sets and Deletes of the key that are writing to
	// the store: a load that begins meanwhile is superseded at once, as
	// the write may land after the load read the source.
	setting int
}

// A registration is a load's entry in the write guard; the load owns its
// memory.
type registration struct {
	stripe *keymap.Stripe[guarded] // the key's, set by begin
	// Guarded by the stripe's mutex.
	superseded bool
	writing    bool // the load is storing its result
	// written is made by a Set or Delete that arrives while the load is
	// storing its result, and closed when that write is done, so that the
	// Set lands after it.
	written chan struct{}
}

// put sets what the guard knows of key, in its stripe s, under s.Mu: a key
// it knows nothing of leaves the registry.
func put(s *keymap.Stripe[guarded], key string, g guarded) {
	if g.load == nil && g.setting == 0 {
		s.Delete(key)
		return
	}
	s.Put(key, g)
}

// begin registers a load of key, as p.
func (g *writeGuard) begin(key string, p *registration) {
	s := g.keys.Stripe(key)
	p.stripe = s
	s.Mu.Lock()
	k, _ := s.Get(key)
	k.load = p
	p.superseded = k.setting > 0
	put(s, key, k)
	s.Mu.Unlock()
}

// end unregisters the load of key that registered p. Removing by identity
// keeps a late load from removing a later one's registration.
func (g *writeGuard) end(key string, p *registration) {
	s := p.stripe
	s.Mu.Lock()
	if k, _ := s.Get(key); k.load == p {
		k.load = nil
		put(s, key, k)
	}
	s.Mu.Unlock()
}

// startWrite reports whether the load that registered p may store its
// result, which it must then follow with finishWrite: no Set or Delete
// superseded it.
func (g *writeGuard) startWrite(p *registration) bool {
	s := p.stripe
	s.Mu.Lock()
	defer s.Mu.Unlock()
	if p.superseded {
		return false
	}
	p.writing = true
	return true
}

// finishWrite ends the write that startWrite allowed, releasing a Set or
// Delete that waits for it.
func (g *writeGuard) finishWrite(p *registration) {
	s := p.stripe
	s.Mu.Lock()
	p.writing = false
	written := p.written
	s.Mu.Unlock()
	if written != nil {
		close(written)
	}
}

// supersede marks the load of key in flight, if any, so that its result is
// not stored, waits within ctx for a result being stored at this moment,
// then runs write; a load of key that begins before write returns is
// marked too.
func (g *writeGuard) supersede(ctx context.Context, key string, write func() error) error {
	s := g.keys.Stripe(key)
	s.Mu.Lock()
	var written chan struct{}
	k, _ := s.Get(key)
	if p := k.load; p != nil {
		p.superseded = true
		if p.writing {
			if p.written == nil {
				p.written = make(chan struct{})
			}
			written = p.written
		}
	}
	k.setting++
	put(s, key, k)
	s.Mu.Unlock()
	defer func() {
		s.Mu.Lock()
		k, _ := s.Get(key)
		k.setting--
		put(s, key, k)
		s.Mu.Unlock()
	}()
	if written != nil {
		select {
		case <-written:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return write()
}
