package herd

import (
	"context"
	"errors"
	"time"

	"github.com/herdcache/herd/flight"
	"github.com/herdcache/herd/store"
)

// The lock protocol of a load with [WithLocker]: what a process does about
// other processes that may be loading the same key.
//
//   - It tries the key's lock, bounded by StoreTimeout. A locker that fails
//     or hangs costs a load without the lock, counted as a store error.
//   - Holding it, it reads the store again: the previous holder may have
//     stored the value after this process missed it. If so, that value is
//     the answer, and the lock is released.
//   - Otherwise it loads under the lock, extending the lease every third of
//     its TTL while the loader runs, and releases it once the value is in the
//     store. A lease lost all the same (the backend did not answer Extend in
//     time) does not stop the load: its write-back is conditional on the
//     key's version, so it cannot overwrite a later holder's value.
//   - Another process holding the lock: a background refresh gives up
//     (counted as skipped); a foreground load waits for that process's value
//     to appear in the store, within its context. After each lock TTL
//     without a value it tries the lock again: still held means the holder
//     is alive and extending (wait on), free means the holder died (take it
//     and load). It loads without the lock at once if the store fails.
//
// Every lock call is bounded by StoreTimeout; none makes a caller wait for a
// value already in hand.

// What a load does about another process that may be loading the same key.
type lockOutcome uint8

const (
	loadUnlocked lockOutcome = iota // the locker failed or the holder never stored a value: load anyway
	loadLocked                      // this process holds the lock: load, then release
	skipRefresh                     // a refresh found the key locked: another process refreshes it
	holderStored                    // the holder stored an entry: use it
)

// lockedLoad is the state of a load under the lock protocol.
type lockedLoad[T any] struct {
	c       *Cache[T]
	key     string
	outcome lockOutcome
	entry   store.Entry[T] // for holderStored
	base    writeBase      // the version read under the lock, for loadLocked

	lock store.Lock
	stop chan struct{} // closed to stop the lease keeper
	kept chan struct{} // closed when the lease keeper has returned
}

// lockLoad runs the lock protocol for a load of key. ctx is the load's
// context; callCtx the flight call's, on which a value found in the store is
// published.
func (c *Cache[T]) lockLoad(ctx, callCtx context.Context, key string, refresh bool) *lockedLoad[T] {
	l := &lockedLoad[T]{c: c, key: key}
	for waited := false; ; waited = true {
		tctx, cancel := c.storeBound(ctx)
		lk, err := c.cfg.locker.TryLock(tctx, key, c.cfg.lockTTL)
		cancel()
		switch {
		case err == nil:
			// The lease is kept from now on: the read below may be slow.
			l.lock = lk
			l.stop, l.kept = make(chan struct{}), make(chan struct{})
			go c.keepLease(context.WithoutCancel(callCtx), key, lk, l.stop, l.kept)
			e, found, base := c.readForLoad(ctx, key)
			if !refresh && found && !e.Expired(time.Now()) {
				if !e.NotFound {
					flight.Publish(callCtx, e) // the value reaches the callers before the unlock
				}
				l.release(callCtx)
				l.outcome, l.entry = holderStored, e
				return l
			}
			l.outcome, l.base = loadLocked, base
			return l
		case !errors.Is(err, store.ErrLocked):
			c.storeError(ctx, "lock", key, err)
			l.outcome = loadUnlocked
			return l
		case refresh:
			c.event(ctx, &c.stats.refreshesSkipped, EventRefreshSkipped, key)
			l.outcome = skipRefresh
			return l
		}
		if !waited {
			c.event(ctx, &c.stats.lockWaits, EventLockWait, key)
		}
		e, w := c.waitForHolder(ctx, key)
		switch w {
		case holderDelivered:
			l.outcome, l.entry = holderStored, e
			return l
		case holderSilent:
			// The lease ran for a whole TTL without a value: the holder
			// either keeps extending it (a slow load: wait on) or died
			// (its lease has expired: take the lock).
			continue
		}
		l.outcome = loadUnlocked
		return l
	}
}

// release stops extending the lease and releases it.
func (l *lockedLoad[T]) release(callCtx context.Context) {
	close(l.stop)
	<-l.kept
	l.c.unlock(callCtx, l.key, l.lock)
}

// keepLease extends the lease of lk every third of the lock TTL until stop
// is closed or the lease is lost.
func (c *Cache[T]) keepLease(ctx context.Context, key string, lk store.Lock, stop <-chan struct{}, kept chan<- struct{}) {
	defer close(kept)
	every := max(c.cfg.lockTTL/3, time.Millisecond)
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-stop:
			return
		case <-t.C:
		}
		// The call may take until the lease would end: a slow answer that
		// still extends it is better than giving up on a live lease.
		ectx, cancel := context.WithTimeout(ctx, min(c.cfg.storeTimeout, c.cfg.lockTTL-every))
		err := lk.Extend(ectx, c.cfg.lockTTL)
		cancel()
		switch {
		case err == nil:
		case errors.Is(err, store.ErrNotHeld):
			c.storeError(ctx, "extend", key, err)
			return
		default:
			c.storeError(ctx, "extend", key, err)
		}
	}
}

// unlock releases lk, bounded by StoreTimeout. A lease that already expired
// is not an error.
func (c *Cache[T]) unlock(callCtx context.Context, key string, lk store.Lock) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(callCtx), c.cfg.storeTimeout)
	defer cancel()
	if err := lk.Unlock(ctx); err != nil && !errors.Is(err, store.ErrNotHeld) {
		c.storeError(ctx, "unlock", key, err)
	}
}

// Polling of the store while another process holds a key's lock.
const (
	holderPollFirst = 5 * time.Millisecond
	holderPollMax   = 100 * time.Millisecond
)

// How a wait for another process's value ended.
type holderWait uint8

const (
	holderDelivered holderWait = iota // its entry appeared in the store
	holderSilent                      // nothing for a whole lock TTL
	holderUnknown                     // the store failed or ctx ended: load without the lock
)

// waitForHolder polls the store until an unexpired entry for key appears,
// for at most the lock TTL. It gives up at once when the store fails: the
// caller then loads itself rather than poll a dead server.
func (c *Cache[T]) waitForHolder(ctx context.Context, key string) (store.Entry[T], holderWait) {
	deadline := time.NewTimer(c.cfg.lockTTL)
	defer deadline.Stop()
	wait := holderPollFirst
	for {
		poll := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			poll.Stop()
			return store.Entry[T]{}, holderUnknown
		case <-deadline.C:
			poll.Stop()
			return store.Entry[T]{}, holderSilent
		case <-poll.C:
		}
		gctx, cancel := c.storeBound(ctx)
		e, ok, err := c.store.Get(gctx, key)
		cancel()
		if err != nil {
			c.storeError(ctx, "get", key, err)
			return store.Entry[T]{}, holderUnknown
		}
		if ok && !e.Expired(time.Now()) {
			return e, holderDelivered
		}
		wait = min(2*wait, holderPollMax)
	}
}
