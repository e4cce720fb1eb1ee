package herd

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"time"

	"github.com/herdcache/herd/flight"
	"github.com/herdcache/herd/internal/callgroup"
	"github.com/herdcache/herd/internal/catch"
	"github.com/herdcache/herd/internal/fanout"
	"github.com/herdcache/herd/store"
)

// The load pipeline: how a key is loaded, whoever asks for it.
//
// A key's load is a job. A job
//
//  1. registers with the write guard, so that a Set or Delete of the key in
//     this process wins over it (writes.go);
//  2. with [WithLocker], takes the key's lock, or waits for the process
//     that holds it and uses the value it stores (lock.go);
//  3. reads the key's version (and entry) from a store.Versioned, or the
//     entry under the lock: a value stored meanwhile by another load is
//     used rather than loaded again;
//  4. calls the loader;
//  5. publishes its result to the key's callers, who need not wait for what
//     follows;
//  6. writes the result back, conditional on the version it read;
//  7. releases the lock, and frees the key for the next load.
//
// Get and a background refresh run one job on a call of the cache's call
// group; GetMany and its background refreshes run N jobs on N claimed
// calls, whose loader calls are one call of the batch loader and whose
// store steps are one bulk call each when the store has them
// (store.BulkLocker, store.BulkVersioned), so that whatever a load of one
// key guarantees, a batch guarantees for each of its keys.
//
// Observers and log handlers of a job run only once its result is
// published: a callback may then Get the key it is told about, and gets the
// published result rather than waiting for the load that waits for it.

// A job is one key's load.
type job[T any] struct {
	// Context is the loader's context for a job loaded alone: the run's,
	// with SetTTL's slot (see Value).
	context.Context

	key  string
	reg  registration // with the write guard
	base writeBase    // what the write-back is conditional on
	ttl  entryTTL     // SetTTL's choice for this key

	// The outcome: err is the callers' error (nil with a value), write what
	// the store gets when stored is set (nil: remove the key), at when the
	// loader returned (Unix nanoseconds).
	err   error
	write *store.Entry[T]
	at    int64

	x *jobExtra[T] // what only batches, locks and held callbacks need

	refresh   bool // a background refresh
	unlock    bool // the lock protocol is over: load without the lock
	done      bool // settled without a load
	stored    bool // the outcome goes to the store
	published bool // the outcome reached the callers

	// alone is the run of a job loaded alone: the slice of jobs the
	// pipeline takes, held in the job so that it costs no allocation.
	alone [1]*job[T]
}

// jobExtra is the part of a job that a load of one key without a locker,
// the usual miss, does without: a job stays small, as every miss makes one.
type jobExtra[T any] struct {
	claim *entryClaim[T] // the call a batch claimed; nil for a call of the call group
	lock  store.Lock     // the key's lock, while held
	notes []note         // callbacks held until the outcome is published
}

func (j *job[T]) extra() *jobExtra[T] {
	if j.x == nil {
		j.x = new(jobExtra[T])
	}
	return j.x
}

func (j *job[T]) lock() store.Lock {
	if j.x == nil {
		return nil
	}
	return j.x.lock
}

func (j *job[T]) claim() *entryClaim[T] {
	if j.x == nil {
		return nil
	}
	return j.x.claim
}

// Value is the context's Value, with SetTTL's slot.
func (j *job[T]) Value(key any) any {
	if _, ok := key.(entryTTLKey); ok {
		return &j.ttl
	}
	return j.Context.Value(key)
}

// A loadRun is one pass of jobs through the pipeline: what they share.
type loadRun[T any] struct {
	callCtx context.Context // detached from the callers, with the values of the first
	ctx     context.Context // callCtx bounded by LoadTimeout
	one     Loader[T]       // the loader of a run of one job, or
	many    BatchLoader[T]  // the batch loader of the jobs
}

// A note is a callback that a job holds until its result is published.
type note struct {
	kind EventKind // EventStoreError, EventLockWait, EventRefreshSkipped or EventLoad
	op   string    // for EventStoreError
	took time.Duration
	err  error
}

// hold counts an event of j at once, and keeps its callbacks (observer,
// log) for when j's result is published, or runs them now if it is.
func (c *Cache[T]) hold(j *job[T], n note) {
	switch n.kind {
	case EventStoreError:
		if errors.Is(n.err, errStoreDown) {
			n.kind = EventStoreSkipped
			c.stats.storeSkipped.Add(1)
			break
		}
		c.stats.storeErrors.Add(1)
	case EventLockWait:
		c.stats.lockWaits.Add(1)
	case EventRefreshSkipped:
		c.stats.refreshesSkipped.Add(1)
	}
	if j.published {
		c.handOn(j, n)
		return
	}
	x := j.extra()
	x.notes = append(x.notes, n)
}

// handOn runs the callbacks of an event that hold counted.
func (c *Cache[T]) handOn(j *job[T], n note) {
	ev := Event{Kind: n.kind, Key: j.key, Err: n.err, Duration: n.took}
	c.notify(j, ev)
	if n.kind == EventStoreError {
		c.logStoreError(j, n.op, j.key, n.err)
	}
}

// publish gives e and err to j's callers, then hands on the callbacks j
// held. It returns the callers' copy of e, which is not modified from then
// on, or nil for a failure.
func (c *Cache[T]) publish(j *job[T], e store.Entry[T], err error) *store.Entry[T] {
	if j.published {
		return nil
	}
	j.err, j.published = err, true
	// A value is shared with the callers that arrive until it is in the
	// store. A failure or a "not found" is not: the key is free at once,
	// and they load again (a "not found" is published once its write-back
	// is done and the lock released, and cached only under NegativeTTL).
	failed := err != nil
	var p *store.Entry[T]
	switch cl := j.claim(); {
	case cl != nil && failed:
		cl.Release(e, err)
	case cl != nil:
		p = cl.Publish(e, err)
	case failed:
		callgroup.Release(j, e, err)
	default:
		p = callgroup.Publish(j, e, err)
	}
	if j.x != nil {
		for _, n := range j.x.notes {
			c.handOn(j, n)
		}
		j.x.notes = nil
	}
	return p
}

// publishRest publishes the outcome of j if its loader's answer has not
// been: a "not found", which waits for its write-back and the release of
// its lock.
func (c *Cache[T]) publishRest(j *job[T]) {
	if !j.published {
		c.publish(j, store.Entry[T]{NotFound: errors.Is(j.err, ErrNotFound)}, j.err)
	}
}

// settle ends j before its loader runs, with the entry e another load
// stored, or with err.
func (c *Cache[T]) settle(j *job[T], e store.Entry[T], err error) {
	if err == nil && e.NotFound {
		err = ErrNotFound
	}
	c.publish(j, e, err)
}

// run runs jobs through the pipeline, on the run's goroutine. When it
// returns, every job it kept is published and its lock released; the
// caller frees the keys. A panic or runtime.Goexit of the loader reaches the
// jobs' callers as an error; what else escapes (a store that panics) goes
// on up the goroutine, and the caller publishes the jobs left.
func (c *Cache[T]) run(r *loadRun[T], jobs []*job[T]) {
	for _, j := range jobs {
		c.writes.begin(j.key, &j.reg)
	}
	var kept *lease
	defer func() {
		c.release(r, kept, jobs) // when something escaped: nothing is left to release otherwise
		for _, j := range jobs {
			if j != nil {
				c.writes.end(j.key, &j.reg)
			}
		}
	}()
	if c.cfg.locker != nil {
		kept = c.lockJobs(r, jobs)
	}
	c.readVersions(r, jobs)
	c.callLoaders(r, jobs)
	c.writeBack(r, jobs)
	c.release(r, kept, jobs)
	kept = nil
	for _, j := range jobs {
		if j != nil {
			c.publishRest(j) // a "not found", once the store and the lock are done with
		}
	}
}

// readVersions reads, for the jobs that need it, the key's version and
// entry before their loader runs: from a store.Versioned, or the entry
// alone under the key's lock. A job whose key has, by then, an entry
// another load stored (fresh, for a refresh; unexpired, for a load) is
// settled with it.
func (c *Cache[T]) readVersions(r *loadRun[T], jobs []*job[T]) {
	need := func(j *job[T]) bool { return j != nil && !j.done && (c.versioned != nil || j.lock() != nil) }
	if len(jobs) == 1 { // a load of one key, the usual case: no bookkeeping
		if j := jobs[0]; need(j) {
			c.applyRead(j, c.readOne(r.ctx, j.key))
		}
		return
	}
	if c.inProcess { // in-process: one key after another, no bookkeeping
		for _, j := range jobs {
			if need(j) {
				c.applyRead(j, c.readOne(r.ctx, j.key))
			}
		}
		return
	}
	var idx []int
	for i, j := range jobs {
		if need(j) {
			idx = append(idx, i)
		}
	}
	if len(idx) == 0 {
		return
	}
	reads := c.readVersionsOf(r.ctx, jobs, idx)
	for k, i := range idx {
		c.applyRead(jobs[i], reads[k])
	}
}

// applyRead takes what a job's version read found.
func (c *Cache[T]) applyRead(j *job[T], rd versionRead[T]) {
	if rd.Err != nil {
		c.hold(j, note{kind: EventStoreError, op: "get", err: rd.Err})
		return
	}
	j.base = writeBase{ok: true, version: rd.Version, at: rd.at.UnixNano()}
	if rd.Found && settled(&rd.Entry, rd.checked, j.refresh) {
		c.settle(j, rd.Entry, nil)
		j.done = true
	}
}

// A versionRead is a store.VersionedRead with the time of the read (that of
// the version, for the retention) and the time its entry was judged at.
type versionRead[T any] struct {
	store.VersionedRead[T]
	at, checked time.Time
}

// readVersionsOf reads the version and entry of the keys of jobs[i] for
// each i in idx, bounded by StoreTimeout, in one bulk call if the store has
// it, and returns them in the order of idx.
func (c *Cache[T]) readVersionsOf(ctx context.Context, jobs []*job[T], idx []int) []versionRead[T] {
	out := make([]versionRead[T], len(idx))
	if b, ok := c.store.(store.BulkVersioned[T]); ok {
		sctx, cancel := c.storeBound(ctx)
		defer cancel()
		keys := make([]string, len(idx))
		for k, i := range idx {
			keys[k] = jobs[i].key
		}
		at := time.Now()
		var reads []store.VersionedRead[T]
		err := c.guardLoad(ctx, func() error {
			reads = b.GetVersions(sctx, keys)
			return firstErr(reads)
		})
		now := time.Now()
		for k := range idx {
			out[k] = versionRead[T]{at: at, checked: now}
			switch {
			case errors.Is(err, errStoreDown):
				out[k].Err = err
			case k < len(reads):
				out[k].VersionedRead = reads[k]
			default:
				out[k].Err = errShortReply
			}
		}
		return out
	}
	eachKey(len(idx), func(k int) { out[k] = c.readOne(ctx, jobs[idx[k]].key) })
	return out
}

// firstErr returns the first error of reads, which tells the store's health
// how the bulk call went.
func firstErr[T any](reads []store.VersionedRead[T]) error {
	for _, rd := range reads {
		if rd.Err != nil {
			return rd.Err
		}
	}
	return nil
}

// errShortReply is the error of the keys a bulk call of a store left
// without a result.
var errShortReply = errors.New("herd: the store's bulk reply has fewer results than keys")

// readOne reads the version and entry of key, or the entry alone from a
// store that has no versions, bounded by StoreTimeout unless the store is
// in-process.
func (c *Cache[T]) readOne(ctx context.Context, key string) (rd versionRead[T]) {
	rctx := ctx
	if !c.inProcess {
		var cancel context.CancelFunc
		rctx, cancel = c.storeBound(ctx)
		defer cancel()
	}
	rd.at = time.Now()
	rd.Err = c.guardLoad(ctx, func() (err error) {
		if c.versioned != nil {
			rd.Entry, rd.Version, rd.Found, err = c.versioned.GetVersion(rctx, key)
		} else {
			rd.Entry, rd.Found, err = c.store.Get(rctx, key)
		}
		return err
	})
	// A remote read is judged when it arrives; an in-process one at its
	// version's time, which is the same moment.
	rd.checked = rd.at
	if !c.inProcess {
		rd.checked = time.Now()
	}
	if rd.Err != nil {
		rd.Entry, rd.Found = store.Entry[T]{}, false
	}
	return rd
}

// settled reports whether an entry read at the start of a load makes the
// load needless: unexpired for a load, and not stale either for a refresh.
func settled[T any](e *store.Entry[T], now time.Time, refresh bool) bool {
	if e.Expired(now) {
		return false
	}
	return !refresh || e.RefreshAt.IsZero() || now.Before(e.RefreshAt)
}

// callLoaders calls the run's loader for jobs, once, and sets each job's
// outcome: the entry its callers get and what to store. The key of a
// loader that fails, panics or calls runtime.Goexit backs off. A
// runtime.Goexit publishes the jobs' error before it goes on up the
// goroutine.
func (c *Cache[T]) callLoaders(r *loadRun[T], jobs []*job[T]) {
	if r.one != nil {
		if j := jobs[0]; !j.done {
			c.callLoader(r, j)
		}
		return
	}
	var toLoad []*job[T]
	for _, j := range jobs {
		if j != nil && !j.done {
			toLoad = append(toLoad, j)
		}
	}
	if len(toLoad) > 0 {
		c.callBatchLoader(r, toLoad)
	}
}

// outcome takes j's loader's answer: a value is published at once, and
// stored; a "not found" is stored, then published (see publishRest); a
// failure is published, and the key backs off.
func (c *Cache[T]) outcome(j *job[T], v T, err error, at time.Time, ttl *entryTTL) {
	j.at = at.UnixNano()
	switch {
	case err == nil:
		c.backoff.succeeded(j.key)
		e, keep := c.newEntry(v, at, ttl)
		p := c.publish(j, e, nil)
		j.stored = true
		if keep {
			j.write = p
		}
	case errors.Is(err, ErrNotFound):
		c.backoff.succeeded(j.key) // the source answered
		j.err, j.stored = err, true
		if c.cfg.negativeTTL > 0 {
			ne := c.negativeEntry(at)
			j.write = &ne
		}
	default:
		c.backoff.failed(j.key, at, &c.cfg)
		c.publish(j, store.Entry[T]{}, err)
	}
}

// callLoader calls the loader of a run of one job, on the job's context.
func (c *Cache[T]) callLoader(r *loadRun[T], j *job[T]) {
	start := time.Now()
	var (
		v   T
		err error
	)
	p := catch.Call(func() { v, err = r.one(j, j.key) }, func() {
		c.loaderEnded(j, time.Since(start), panicErrors{}.Goexit())
	})
	if p != nil {
		err = panicErrors{}.Panic(p)
		c.loaderEnded(j, time.Since(start), err)
		return
	}
	end := time.Now()
	c.stats.loads.add() // counted before the callers get the outcome
	c.stats.loadNanos.addN(uint64(end.Sub(start)))
	if err != nil && !errors.Is(err, ErrNotFound) {
		c.stats.loadErrors.Add(1)
	}
	c.outcome(j, v, err, end, &j.ttl)
	if c.cfg.observer != nil {
		c.hold(j, note{kind: EventLoad, took: end.Sub(start), err: err})
	}
}

// loaderEnded records a loader of one job that panicked or called
// runtime.Goexit: err reaches the callers, and the key backs off.
func (c *Cache[T]) loaderEnded(j *job[T], took time.Duration, err error) {
	end := time.Now()
	c.backoff.failed(j.key, end, &c.cfg)
	j.at = end.UnixNano()
	c.stats.loads.add() // counted before the callers get the outcome
	c.stats.loadNanos.addN(uint64(took))
	c.stats.loadErrors.Add(1)
	c.publish(j, store.Entry[T]{}, err)
	c.hold(j, note{kind: EventLoad, took: took, err: errLoaderPanicked})
}

// callBatchLoader calls the batch loader of the run once for jobs.
func (c *Cache[T]) callBatchLoader(r *loadRun[T], jobs []*job[T]) {
	keys := make([]string, len(jobs))
	for i, j := range jobs {
		keys[i] = j.key
	}
	ttl := &batchTTL{}
	lctx := context.WithValue(context.WithValue(r.ctx, entryTTLKey{}, &ttl.all), batchTTLKey{}, ttl)
	start := time.Now()
	var (
		vals map[string]T
		err  error
	)
	failAll := func(err error) {
		end := time.Now()
		c.countBatchLoad(len(keys), end.Sub(start), err)
		for _, j := range jobs {
			c.backoff.failed(j.key, end, &c.cfg)
			j.at = end.UnixNano()
			c.publish(j, store.Entry[T]{}, err)
		}
		c.notify(r.callCtx, Event{Kind: EventBatchLoad, Duration: end.Sub(start), Err: err, Keys: len(keys)})
	}
	p := catch.Call(func() { vals, err = r.many(lctx, keys) }, func() { failAll(panicErrors{}.Goexit()) })
	if p != nil {
		failAll(panicErrors{}.Panic(p))
		return
	}
	end := time.Now()
	c.countBatchLoad(len(keys), end.Sub(start), err) // before the callers get the outcome
	for _, j := range jobs {
		if err != nil {
			c.outcome(j, *new(T), err, end, nil)
			continue
		}
		v, ok := vals[j.key]
		if !ok {
			c.outcome(j, v, ErrNotFound, end, nil)
			continue
		}
		t := ttl.of(j.key)
		c.outcome(j, v, nil, end, &t)
	}
	c.notify(r.callCtx, Event{Kind: EventBatchLoad, Duration: end.Sub(start), Err: err, Keys: len(keys)})
}

// countBatchLoad counts a batch loader call.
func (c *Cache[T]) countBatchLoad(n int, took time.Duration, err error) {
	c.stats.batchLoads.Add(1)
	c.stats.batchKeys.Add(uint64(n))
	c.stats.batchLoadNanos.Add(uint64(took))
	if err != nil {
		c.stats.batchLoadErrors.Add(1)
	}
}

// panicErrors makes the errors of a load whose loader panicked or called
// runtime.Goexit: herd reports them as the flight package does.
type panicErrors struct{}

func (panicErrors) Panic(p *catch.Panic) error {
	return &flight.PanicError{Value: p.Value, Stack: p.Stack}
}
func (panicErrors) Goexit() error { return flight.ErrGoexit }

// keyParallelism bounds the goroutines of eachKey: the per-key calls of a
// batch to a remote store that has no bulk call go at once rather than one
// round trip after another.
const keyParallelism = 16

// remoteCall is the time past which a store call is taken for a round trip
// to a server, worth overlapping with others.
const remoteCall = 20 * time.Microsecond

// eachKey calls fn(i) for every i in [0, n) and returns when all have
// returned. It calls fn(0) first and times it: if it took a round trip's
// time, the rest run on up to keyParallelism goroutines; an in-process
// store's calls, quicker than starting a goroutine, run one after another.
// A panic in fn is raised again on the caller's goroutine once the others
// are done.
func eachKey(n int, fn func(i int)) {
	if n == 0 {
		return
	}
	start := time.Now()
	fn(0)
	if n < 3 || time.Since(start) < remoteCall {
		for i := 1; i < n; i++ {
			fn(i)
		}
		return
	}
	fanout.Each(n-1, keyParallelism, func(i int) { fn(i + 1) })
}

// A missedKey is a key of a bulk read that must be loaded, with its expired
// entry for stale-if-error, if the store had one.
type missedKey[T any] struct {
	key string
	old *store.Entry[T]
}

// loadMany loads the missed keys, joining the loads in flight and claiming
// the others for batch loads (pipeline.go), waits for them on ctx and adds
// their values to out.
func (c *Cache[T]) loadMany(ctx context.Context, miss []missedKey[T], load BatchLoader[T], cfg batchConfig, out manyOut[T]) error {
	type wait struct {
		claim  *entryClaim[T]
		joined *entryWaiter[T]
	}
	waits := make([]wait, len(miss))
	own := make([]entryClaim[T], len(miss)) // the claims' memory, in one allocation
	var claims []*entryClaim[T]
	for i, m := range miss {
		c.record(ctx, &c.stats.misses, Event{Kind: EventMiss, Key: m.key})
		w := &waits[i]
		if w.joined = c.flight.JoinOrClaim(m.key, &own[i]); w.joined == nil {
			w.claim = &own[i]
			claims = append(claims, w.claim)
		}
	}
	if len(claims) > 0 {
		c.startBatches(ctx, claims, load, cfg, false)
	}

	var errs KeyErrors
	var ctxErr error
	for i, m := range miss {
		var (
			e   store.Entry[T]
			err error
		)
		if w := waits[i]; w.claim != nil {
			e, _, err = w.claim.Wait(ctx)
		} else {
			e, _, err = w.joined.Wait(ctx)
			if errors.Is(err, errLockedElsewhere) {
				// A background refresh that gave up to another process:
				// load the key as Get does, which waits for that process.
				e, err = c.loadOne(ctx, m.key, load)
			}
			if err == nil {
				c.record(ctx, &c.stats.sharedWaits, Event{Kind: EventSharedWait, Key: m.key})
			}
		}
		if ctxErr != nil {
			continue // the caller leaves every call it joined
		}
		if err != nil {
			if cerr := ctx.Err(); cerr != nil && errors.Is(err, cerr) {
				ctxErr = cerr
				continue
			}
			r, ferr := c.loadFailed(ctx, m.key, m.old, err)
			switch {
			case ferr == nil:
				out.put(m.key, r)
			case errors.Is(ferr, ErrNotFound):
			default:
				if errs == nil {
					errs = make(KeyErrors)
				}
				errs[m.key] = ferr
			}
			continue
		}
		if !e.NotFound {
			out.put(m.key, result(&e, StatusLoaded, e.StoredAt))
		}
	}
	if ctxErr != nil {
		return ctxErr
	}
	if errs != nil {
		return errs
	}
	return nil
}

// loadOne loads key alone through the call group, as Get does, with load
// asked for that key only.
func (c *Cache[T]) loadOne(ctx context.Context, key string, load BatchLoader[T]) (store.Entry[T], error) {
	one := Loader[T](func(ctx context.Context, key string) (T, error) {
		vs, err := load(ctx, []string{key})
		v, ok := vs[key]
		switch {
		case err != nil:
			return v, err
		case !ok:
			return v, ErrNotFound
		}
		return v, nil
	})
	var (
		e   store.Entry[T]
		err error
	)
	for range 3 {
		e, _, _, err = c.flight.DoWith(ctx, key, one, c.loadFn)
		if !errors.Is(err, errLockedElsewhere) {
			break
		}
	}
	return e, err
}

// refreshMany refreshes stale keys in the background, in batches: those
// that neither back off after a failure nor have a load in flight.
func (c *Cache[T]) refreshMany(ctx context.Context, stale []string, load BatchLoader[T], cfg batchConfig) {
	now := time.Now()
	own := make([]entryClaim[T], len(stale)) // the claims' memory, in one allocation
	var claims []*entryClaim[T]
	for i, k := range stale {
		if c.backoff.active(k, now) {
			continue
		}
		cl := &own[i]
		if !c.flight.ClaimInto(k, cl) {
			continue // a load or refresh of the key is in flight
		}
		claims = append(claims, cl)
		c.record(ctx, &c.stats.refreshesQueued, Event{Kind: EventRefreshQueued, Key: k})
	}
	if len(claims) > 0 {
		c.startBatches(ctx, claims, load, cfg, true)
	}
}

// refreshEnded counts and logs a failed background refresh of key.
func (c *Cache[T]) refreshEnded(ctx context.Context, key string, err error) {
	if err == nil || errors.Is(err, ErrNotFound) || errors.Is(err, errLockedElsewhere) || errors.Is(err, ErrClosed) {
		return
	}
	c.record(ctx, &c.stats.refreshesFailed, Event{Kind: EventRefreshFailed, Key: key, Err: err})
	c.log(ctx, &c.refreshErrLog, slog.LevelWarn, "herd: background refresh failed; serving the old value",
		slog.String("key", key), slog.Any("err", err))
}

// Calls of many keys: a batch claims the calls of its keys in the cache's
// call group, so that a Get of one of them meanwhile joins the batch's load.
type (
	entryClaim[T any]  = callgroup.Claim[string, store.Entry[T], panicErrors]
	entryWaiter[T any] = callgroup.Waiter[string, store.Entry[T], panicErrors]
)

// startBatches loads the claimed keys on a goroutine detached from ctx,
// which Close waits for, in runs of at most cfg.maxBatch keys, at most
// cfg.concurrency at once. After Close, the claims fail with ErrClosed.
func (c *Cache[T]) startBatches(ctx context.Context, claims []*entryClaim[T], load BatchLoader[T], cfg batchConfig, refresh bool) {
	if !c.startLoad() {
		for _, cl := range claims {
			cl.Finish(store.Entry[T]{}, ErrClosed)
		}
		return
	}
	callCtx := context.WithoutCancel(ctx)
	if refresh {
		callCtx = context.WithValue(callCtx, refreshingKey{}, true)
	}
	if !refresh && c.inProcess && ctx.Done() == nil && len(claims) <= cfg.maxBatch {
		// As for Get: a caller that cannot leave early runs the batch
		// itself rather than wait for it, over a store whose calls never
		// block.
		defer c.loads.Done()
		c.runClaims(callCtx, claims, load, refresh)
		return
	}
	go func() {
		defer c.loads.Done()
		if len(claims) <= cfg.maxBatch {
			c.runClaims(callCtx, claims, load, refresh)
			return
		}
		sem := make(chan struct{}, cfg.concurrency)
		var wg sync.WaitGroup
		for lo := 0; lo < len(claims); lo += cfg.maxBatch {
			hi := min(lo+cfg.maxBatch, len(claims))
			sem <- struct{}{}
			wg.Go(func() {
				defer func() { <-sem }()
				c.runClaims(callCtx, claims[lo:hi], load, refresh)
			})
		}
		wg.Wait()
	}()
}

// runClaims runs the jobs of claims through the pipeline with one batch
// loader call, and finishes every claim, whatever happens: until then its
// key would stay in flight. What escapes the pipeline (a runtime.Goexit of
// the batch loader, which publishes first; a store that panics) ends this
// goroutine only; the claims are finished on the way.
func (c *Cache[T]) runClaims(callCtx context.Context, claims []*entryClaim[T], load BatchLoader[T], refresh bool) {
	r := &loadRun[T]{callCtx: callCtx, ctx: callCtx, many: load}
	if c.cfg.loadTimeout > 0 {
		var cancel context.CancelFunc
		r.ctx, cancel = context.WithTimeout(callCtx, c.cfg.loadTimeout)
		defer cancel()
	}
	type claimed struct {
		job[T]
		x jobExtra[T]
	}
	jobs := make([]*job[T], len(claims))
	all := make([]claimed, len(claims))
	for i, cl := range claims {
		all[i].x.claim = cl
		all[i].job = job[T]{Context: r.ctx, key: cl.Key(), refresh: refresh, x: &all[i].x}
		jobs[i] = &all[i].job
	}
	defer func() {
		for _, j := range jobs {
			if j != nil {
				c.finish(j)
			}
		}
	}()
	if p := catch.Call(func() { c.run(r, jobs) }, nil); p != nil {
		err := panicErrors{}.Panic(p)
		for _, j := range jobs {
			if j != nil {
				c.publish(j, store.Entry[T]{}, err)
			}
		}
	}
}

// finish ends the call of a claimed job: its key is free for the next load.
// A background refresh that failed is counted and logged.
func (c *Cache[T]) finish(j *job[T]) {
	c.publish(j, store.Entry[T]{}, flight.ErrGoexit) // if something ended the run before
	j.claim().Finish(store.Entry[T]{}, j.err)
	if j.refresh {
		c.refreshEnded(j, j.key, j.err)
	}
}
