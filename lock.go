package herd

import (
	"context"
	"errors"
	"time"

	"github.com/herdcache/herd/internal/health"
	"github.com/herdcache/herd/store"
)

// The lock protocol of a load with [WithLocker]: what a process does about
// other processes that may be loading the same key. It is the second step
// of the load pipeline (pipeline.go), run for all the keys of a batch at
// once.
//
//   - A job tries its key's lock, bounded by StoreTimeout; the jobs of a
//     batch try theirs in one bulk call when the locker is a
//     store.BulkLocker. A locker that fails or hangs costs a load without
//     the lock, counted as a store error.
//   - Holding it, it reads the store again (the pipeline's version read):
//     the previous holder may have stored the value after this process
//     missed it. If so, that value is the answer.
//   - Otherwise it loads under the lock, while one lease keeper per run
//     extends the leases of all its locks every third of their TTL, and
//     releases it once the value is in the store. A lease lost all the same
//     (the backend did not answer Extend in time) does not stop the load:
//     its write-back is conditional on the key's version, so it cannot
//     overwrite a later holder's value.
//   - Another process holding the lock: a background refresh gives up
//     (counted as skipped); a foreground load waits for that process's
//     value to appear in the store, within its context, while the rest of
//     its batch goes on. After each lock TTL without a value it tries the
//     lock again: still held means the holder is alive and extending (wait
//     on), free means the holder died (take it and load). It loads without
//     the lock at once if the store fails.
//
// Every lock call is bounded by StoreTimeout; none makes a caller wait for a
// value already in hand.

// lockJobs runs the lock protocol for jobs, and returns the keeper of the
// leases taken, or nil. A job whose key another process holds is waited
// for: in place when it is the only job of its run; otherwise on a
// goroutine of its own, which takes the job over (its place in jobs is set
// to nil) while the rest of the run goes on.
func (c *Cache[T]) lockJobs(r *loadRun[T], jobs []*job[T]) *lease {
	results := c.tryLocks(r.ctx, jobs)
	var held []heldLock
	for i, j := range jobs {
		res := results[i]
		switch {
		case res.Err == nil:
			j.extra().lock = res.Lock
			held = append(held, heldLock{j.key, res.Lock})
		case !errors.Is(res.Err, store.ErrLocked):
			c.hold(j, note{kind: EventStoreError, op: "lock", err: res.Err})
			j.unlock = true
		case j.refresh:
			c.hold(j, note{kind: EventRefreshSkipped})
			c.settle(j, store.Entry[T]{}, errLockedElsewhere)
			j.done = true
		case len(jobs) == 1:
			c.hold(j, note{kind: EventLockWait})
			c.awaitHolder(r, j)
			if lk := j.lock(); lk != nil {
				held = append(held, heldLock{j.key, lk})
			}
		default:
			c.hold(j, note{kind: EventLockWait})
			jobs[i] = nil
			c.detach(r, j)
		}
	}
	if len(held) == 0 {
		return nil
	}
	return c.keepLeases(r.callCtx, held)
}

// tryLocks tries the locks of jobs' keys, in one bulk call if the locker
// has it, each bounded by StoreTimeout.
func (c *Cache[T]) tryLocks(ctx context.Context, jobs []*job[T]) []store.LockResult {
	out := make([]store.LockResult, len(jobs))
	if b, ok := c.cfg.locker.(store.BulkLocker); ok && len(jobs) > 1 {
		keys := make([]string, len(jobs))
		for i, j := range jobs {
			keys[i] = j.key
		}
		tctx, cancel := c.storeBound(ctx)
		defer cancel()
		var res []store.LockResult
		err := c.guardLoad(ctx, func() error {
			res = b.TryLockMany(tctx, keys, c.cfg.lockTTL)
			for _, r := range res {
				if r.Err != nil && !errors.Is(r.Err, store.ErrLocked) {
					return r.Err
				}
			}
			return nil
		})
		for i := range out {
			switch {
			case errors.Is(err, errStoreDown):
				out[i].Err = err
			case i < len(res):
				out[i] = res[i]
			default:
				out[i].Err = errShortReply
			}
		}
		return out
	}
	eachKey(len(jobs), func(i int) { out[i].Lock, out[i].Err = c.tryLock(ctx, jobs[i].key) })
	return out
}

// tryLock tries the lock of key, bounded by StoreTimeout, through the
// store's health.
func (c *Cache[T]) tryLock(ctx context.Context, key string) (lk store.Lock, err error) {
	tctx, cancel := c.storeBound(ctx)
	defer cancel()
	err = c.guardLoad(ctx, func() (err error) {
		lk, err = c.cfg.locker.TryLock(tctx, key, c.cfg.lockTTL)
		return err
	})
	return lk, err
}

// detach hands j, whose key another process holds, to a goroutine of its
// own that waits for that process's value, or loads the key alone if it
// must, then finishes j. Close waits for it.
func (c *Cache[T]) detach(r *loadRun[T], j *job[T]) {
	// The run's context ends with the run: j gets one of its own, with the
	// same deadline.
	ctx, cancel := r.callCtx, context.CancelFunc(func() {})
	if d, ok := r.ctx.Deadline(); ok {
		ctx, cancel = context.WithDeadline(r.callCtx, d)
	}
	one := &loadRun[T]{callCtx: r.callCtx, ctx: ctx, many: r.many}
	j.Context = ctx
	c.loads.Add(1) // the run counts as a load, which Close has not passed
	go func() {
		defer c.loads.Done()
		defer cancel()
		defer c.finish(j)
		jobs := []*job[T]{j}
		var kept *lease
		defer func() {
			c.release(one, kept, jobs)
			c.writes.end(j.key, &j.reg)
		}()
		c.awaitHolder(one, j)
		if lk := j.lock(); lk != nil {
			kept = c.keepLeases(one.callCtx, []heldLock{{j.key, lk}})
		}
		c.readVersions(one, jobs)
		c.callLoaders(one, jobs)
		c.writeBack(one, jobs)
		c.release(one, kept, jobs)
		kept = nil
		c.publishRest(j)
	}()
}

// awaitHolder waits for the process holding j's key to store its value,
// which settles j; after each lock TTL without it, it tries the lock again.
// It returns with j settled (done), holding the lock, or told to load
// without it (the store failed, or j's context ended).
func (c *Cache[T]) awaitHolder(r *loadRun[T], j *job[T]) {
	for {
		e, w, err := c.waitForHolder(r.ctx, j.key)
		if err != nil {
			c.hold(j, note{kind: EventStoreError, op: "get", err: err})
		}
		switch w {
		case holderDelivered:
			c.settle(j, e, nil)
			j.done = true
			return
		case holderUnknown:
			j.unlock = true
			return
		}
		// The lease ran for a whole TTL without a value: the holder either
		// keeps extending it (a slow load: wait on) or died (its lease has
		// expired: take the lock).
		lk, err := c.tryLock(r.ctx, j.key)
		switch {
		case err == nil:
			j.extra().lock = lk
			return
		case !errors.Is(err, store.ErrLocked):
			c.hold(j, note{kind: EventStoreError, op: "lock", err: err})
			j.unlock = true
			return
		}
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
// for at most the lock TTL. It gives up at once when the store fails (and
// returns its error): the caller then loads itself rather than poll a dead
// server.
func (c *Cache[T]) waitForHolder(ctx context.Context, key string) (store.Entry[T], holderWait, error) {
	deadline := time.NewTimer(c.cfg.lockTTL)
	defer deadline.Stop()
	wait := holderPollFirst
	for {
		poll := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			poll.Stop()
			return store.Entry[T]{}, holderUnknown, nil
		case <-deadline.C:
			poll.Stop()
			return store.Entry[T]{}, holderSilent, nil
		case <-poll.C:
		}
		gctx, cancel := c.storeBound(ctx)
		var (
			e  store.Entry[T]
			ok bool
		)
		err := c.guard(ctx, func() (err error) {
			e, ok, err = c.store.Get(gctx, key)
			return err
		})
		cancel()
		if err != nil {
			return store.Entry[T]{}, holderUnknown, err
		}
		if ok && !e.Expired(time.Now()) {
			return e, holderDelivered, nil
		}
		wait = min(2*wait, holderPollMax)
	}
}

// A lease keeps the locks of a run: it extends them every third of the
// lock TTL, all in one bulk call when the locker has it, until the run
// releases them. Its failures are counted at once and handed on to the
// observer and the log by the run, once its results are published.
type lease struct {
	held   []heldLock // the locks still held, the keeper's own: a lost lease leaves
	failed []keyError // the keeper's own until kept is closed
	stop   chan struct{}
	kept   chan struct{} // closed when the keeper has returned
}

type keyError struct {
	key string
	err error
}

// A heldLock is a lock and its key.
type heldLock struct {
	key  string
	lock store.Lock
}

// keepLeases starts extending the leases of locks.
func (c *Cache[T]) keepLeases(ctx context.Context, locks []heldLock) *lease {
	l := &lease{held: locks, stop: make(chan struct{}), kept: make(chan struct{})}
	go c.keep(context.WithoutCancel(ctx), l)
	return l
}

func (c *Cache[T]) keep(ctx context.Context, l *lease) {
	defer close(l.kept)
	every := max(c.cfg.lockTTL/3, time.Millisecond)
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-l.stop:
			return
		case <-t.C:
		}
		// The call may take until the lease would end: a slow answer that
		// still extends it is better than giving up on a live lease.
		ectx, cancel := context.WithTimeout(ctx, min(c.cfg.storeTimeout, c.cfg.lockTTL-every))
		errs := c.extend(ctx, ectx, l.held)
		cancel()
		n := 0
		for i, err := range errs {
			if err != nil {
				c.stats.storeErrors.Add(1)
				l.failed = append(l.failed, keyError{l.held[i].key, err})
			}
			if !errors.Is(err, store.ErrNotHeld) {
				l.held[n] = l.held[i]
				n++
			}
		}
		l.held = l.held[:n]
		if n == 0 {
			return
		}
	}
}

// extend extends locks on ectx, bounded within ctx, in one bulk call if the
// locker has it.
func (c *Cache[T]) extend(ctx, ectx context.Context, held []heldLock) []error {
	if b, ok := c.cfg.locker.(store.BulkLocker); ok && len(held) > 1 {
		locks := make([]store.Lock, len(held))
		for i, h := range held {
			locks[i] = h.lock
		}
		var errs []error
		if err := c.guard(ctx, func() error {
			errs = fill(b.ExtendMany(ectx, locks, c.cfg.lockTTL), len(held))
			return firstUnavailable(ctx, errs)
		}); errors.Is(err, errStoreDown) {
			return fill(nil, len(held), err)
		}
		return errs
	}
	errs := make([]error, len(held))
	eachKey(len(held), func(i int) {
		errs[i] = c.guard(ctx, func() error { return held[i].lock.Extend(ectx, c.cfg.lockTTL) })
	})
	return errs
}

// firstUnavailable returns the first of errs that says the store could not
// be reached, which tells the store's health how a bulk call went.
func firstUnavailable(ctx context.Context, errs []error) error {
	for _, err := range errs {
		if health.Unavailable(ctx, err) {
			return err
		}
	}
	return nil
}

// fill returns errs with n entries, those a short reply left out set to
// with (errShortReply when not given).
func fill(errs []error, n int, with ...error) []error {
	missing := errShortReply
	if len(with) > 0 {
		missing = with[0]
	}
	for len(errs) < n {
		errs = append(errs, missing)
	}
	return errs[:n]
}

// release stops the lease keeper, if any, and releases the locks of jobs,
// bounded by StoreTimeout, in one bulk call if the locker has it. A lease
// that already expired is not an error.
func (c *Cache[T]) release(r *loadRun[T], l *lease, jobs []*job[T]) {
	if l != nil {
		close(l.stop)
		<-l.kept
		for _, f := range l.failed {
			c.notify(r.callCtx, Event{Kind: EventStoreError, Key: f.key, Err: f.err})
			c.logStoreError(r.callCtx, "extend", f.key, f.err)
		}
	}
	var (
		locks []store.Lock
		owner []*job[T]
	)
	for _, j := range jobs {
		if j == nil {
			continue
		}
		if lk := j.lock(); lk != nil {
			locks = append(locks, lk)
			owner = append(owner, j)
			j.x.lock = nil
		}
	}
	if len(locks) == 0 {
		return
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(r.callCtx), c.cfg.storeTimeout)
	defer cancel()
	var errs []error
	if b, ok := c.cfg.locker.(store.BulkLocker); ok && len(locks) > 1 {
		if err := c.guard(r.callCtx, func() error {
			errs = fill(b.UnlockMany(ctx, locks), len(locks))
			return firstUnavailable(r.callCtx, errs)
		}); errors.Is(err, errStoreDown) {
			errs = fill(nil, len(locks), err)
		}
	} else {
		errs = make([]error, len(locks))
		eachKey(len(locks), func(i int) { errs[i] = c.guard(r.callCtx, func() error { return locks[i].Unlock(ctx) }) })
	}
	for i, err := range errs {
		if err != nil && !errors.Is(err, store.ErrNotHeld) {
			c.hold(owner[i], note{kind: EventStoreError, op: "unlock", err: err})
		}
	}
}
