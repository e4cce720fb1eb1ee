package herd

import (
	"context"
	"errors"
	"fmt"
	"hash/maphash"
	"sync"
	"time"

	"github.com/herdcache/herd/store"
)

// Writes win (invariant 4 of the design): a Set or Delete that lands while a
// load of the key is in flight is not overwritten by the load's result.
//
// In the process, the writeGuard sees to it: a load registers a pendingWrite
// when it starts; Set and Delete mark the key's pendingWrite as superseded;
// the load stores its result only if it was not.
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
	mustContext(ctx)
	if c.closed.Load() {
		return ErrClosed
	}
	e, _ := c.newEntry(v, time.Now(), nil)
	c.backoff.succeeded(key)
	err := c.writes.supersede(ctx, key, func() error { return c.store.Set(ctx, key, e) })
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
	mustContext(ctx)
	if c.closed.Load() {
		return ErrClosed
	}
	err := c.writes.supersede(ctx, key, func() error { return c.store.Delete(ctx, key) })
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
	read    bool          // the version was read (successfully or not)
	ok      bool          // the version is known
	version store.Version // the key's version when the load began
	at      time.Time     // when it was read
}

// readForLoad reads the entry and, from a store.Versioned, the version of key
// at the start of a load, bounded by StoreTimeout. A failed read is counted:
// the load goes on, but its result is not written back.
func (c *Cache[T]) readForLoad(ctx context.Context, key string) (store.Entry[T], bool, writeBase) {
	rctx := ctx
	if c.local == nil { // an in-process store never blocks
		var cancel context.CancelFunc
		rctx, cancel = c.storeBound(ctx)
		defer cancel()
	}
	base := writeBase{read: true, at: time.Now()}
	var (
		e     store.Entry[T]
		found bool
		err   error
	)
	if c.versioned != nil {
		e, base.version, found, err = c.versioned.GetVersion(rctx, key)
	} else {
		e, found, err = c.store.Get(rctx, key)
	}
	if err != nil {
		c.storeError(ctx, "get", key, err)
		return store.Entry[T]{}, false, base
	}
	base.ok = true
	return e, found, base
}

// writeBack stores the entry a load produced (or removes the key when e is
// nil), unless a Set or Delete of the key superseded the load in this
// process, or, over a store.Versioned, anything wrote the key since base.
//
// now is the time the load's value arrived; a remote store's write time is
// read again, as the writes of a batch may follow it by round trips.
func (c *Cache[T]) writeBack(ctx context.Context, key string, pending *pendingWrite, base writeBase, e *store.Entry[T], now time.Time) {
	if !c.writes.startWrite(pending) {
		return
	}
	err := c.storeWriteBack(ctx, key, pending, base, e, now)
	// The events come after the write is finished, as an observer may Set
	// the key, which waits for that.
	switch {
	case err == nil:
	case errors.Is(err, store.ErrConflict):
		c.event(ctx, &c.stats.writeConflicts, EventWriteConflict, key)
	default:
		c.storeError(ctx, "write back", key, err)
	}
}

// storeWriteBack is writeBack's store write, which startWrite allowed; it
// finishes it, whatever happens.
func (c *Cache[T]) storeWriteBack(ctx context.Context, key string, pending *pendingWrite, base writeBase, e *store.Entry[T], now time.Time) error {
	defer c.writes.finishWrite(pending)
	if c.local == nil {
		now = time.Now()
	}
	switch {
	case c.versioned == nil && e != nil:
		return c.store.Set(ctx, key, *e)
	case c.versioned == nil:
		return c.store.Delete(ctx, key)
	case !base.ok:
		return nil // the version read failed and was counted: nothing safe to write
	case now.Sub(base.at) >= c.versioned.VersionRetention():
		return store.ErrConflict // the store may have forgotten a write made meanwhile
	case e != nil:
		return c.versioned.SetIf(ctx, key, *e, base.version)
	default:
		return c.versioned.DeleteIf(ctx, key, base.version)
	}
}

// writeGuard makes a Set or Delete win over a load of the same key that was
// in flight in this process when it landed.
//
// The map holds only keys with a load in flight, so it is bounded by them.
// It is split into stripes so that loads of different keys rarely share a
// mutex, and no mutex is held during a store call. A stripe's map is
// dropped when it empties after a burst, so that memory returns to its idle
// size.
type writeGuard struct {
	seed    maphash.Seed
	once    sync.Once
	stripes [64]guardStripe
}

type guardStripe struct {
	mu   sync.Mutex
	m    map[string]*pendingWrite
	peak int // the largest len(m) since m was made
	// setting counts the Sets and Deletes of each key that are writing to
	// the store: a load that begins meanwhile is superseded at once, as
	// the write may land after the load read the source.
	setting     map[string]int
	settingPeak int
}

// shrinkAbove is the size past which an emptied map is dropped rather than
// kept: Go maps do not give back their buckets.
const shrinkAbove = 64

// A pendingWrite is a load's registration; the load owns its memory.
type pendingWrite struct {
	stripe *guardStripe // the key's, set by begin
	// Guarded by the stripe's mutex.
	superseded bool
	writing    bool // the load is storing its result
	// written is made by a Set or Delete that arrives while the load is
	// storing its result, and closed when that write is done, so that the
	// Set lands after it.
	written chan struct{}
}

func (g *writeGuard) stripe(key string) *guardStripe {
	g.once.Do(func() { g.seed = maphash.MakeSeed() })
	return &g.stripes[maphash.String(g.seed, key)%uint64(len(g.stripes))]
}

// begin registers a load of key, as p.
func (g *writeGuard) begin(key string, p *pendingWrite) {
	s := g.stripe(key)
	p.stripe = s
	s.mu.Lock()
	if s.m == nil {
		s.m = make(map[string]*pendingWrite)
	}
	s.m[key] = p
	s.peak = max(s.peak, len(s.m))
	p.superseded = s.setting[key] > 0
	s.mu.Unlock()
}

// end unregisters the load of key that registered p. Removing by identity
// keeps a late load from removing a later one's registration.
func (g *writeGuard) end(key string, p *pendingWrite) {
	s := p.stripe
	s.mu.Lock()
	if s.m[key] == p {
		delete(s.m, key)
		if len(s.m) == 0 && s.peak > shrinkAbove {
			s.m, s.peak = nil, 0
		}
	}
	s.mu.Unlock()
}

// startWrite reports whether the load that registered p may store its
// result, which it must then follow with finishWrite: no Set or Delete
// superseded it.
func (g *writeGuard) startWrite(p *pendingWrite) bool {
	s := p.stripe
	s.mu.Lock()
	defer s.mu.Unlock()
	if p.superseded {
		return false
	}
	p.writing = true
	return true
}

// finishWrite ends the write that startWrite allowed, releasing a Set or
// Delete that waits for it.
func (g *writeGuard) finishWrite(p *pendingWrite) {
	s := p.stripe
	s.mu.Lock()
	p.writing = false
	written := p.written
	s.mu.Unlock()
	if written != nil {
		close(written)
	}
}

// supersede marks the load of key in flight, if any, so that its result is
// not stored, waits within ctx for a result being stored at this moment,
// then runs write; a load of key that begins before write returns is
// marked too.
func (g *writeGuard) supersede(ctx context.Context, key string, write func() error) error {
	s := g.stripe(key)
	s.mu.Lock()
	var written chan struct{}
	if p := s.m[key]; p != nil {
		p.superseded = true
		if p.writing {
			if p.written == nil {
				p.written = make(chan struct{})
			}
			written = p.written
		}
	}
	if s.setting == nil {
		s.setting = make(map[string]int)
	}
	s.setting[key]++
	s.settingPeak = max(s.settingPeak, len(s.setting))
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		if s.setting[key]--; s.setting[key] == 0 {
			delete(s.setting, key)
			if len(s.setting) == 0 && s.settingPeak > shrinkAbove {
				s.setting, s.settingPeak = nil, 0
			}
		}
		s.mu.Unlock()
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
