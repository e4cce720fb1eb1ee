package herd

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/herdcache/herd/flight"
	"github.com/herdcache/herd/store"
)

// A BatchLoader loads the values of many keys at once from the source of
// truth, for example with one SELECT … WHERE id IN (…). It returns the
// values of the keys it found: a key left out of the map does not exist (as
// a [Loader]'s [ErrNotFound]), and a key it was not asked for is ignored. An
// error fails every key of the call. keys holds no duplicates, and the
// loader may keep or modify it.
//
// Its context carries the values of the caller that started the batch but
// not its cancellation. On it, [SetTTL] gives every entry of the call its
// lifetime and [SetKeyTTL] the entry of one key.
type BatchLoader[T any] func(ctx context.Context, keys []string) (map[string]T, error)

// A BatchOption configures [Cache.GetMany], [Cache.FetchMany] and [Batch].
// An invalid value panics, with a message that names the option, when it is
// used.
type BatchOption func(*batchConfig)

type batchConfig struct {
	maxBatch    int
	concurrency int
	maxWait     time.Duration
}

// Defaults of the batch options.
const (
	DefaultMaxBatch             = 100
	DefaultMaxWait              = 2 * time.Millisecond
	DefaultMaxConcurrentBatches = 4
)

// MaxBatch is the most keys one batch loader call is asked for: more keys
// are split into calls of at most n. n must be at least 1. Default:
// [DefaultMaxBatch].
func MaxBatch(n int) BatchOption { return func(c *batchConfig) { c.maxBatch = n } }

// MaxWait is how long [Batch] holds a key for other keys to join its batch
// before it calls the batch loader with what it has. d must be positive.
// GetMany and FetchMany do not wait and ignore it. Default: [DefaultMaxWait].
func MaxWait(d time.Duration) BatchOption { return func(c *batchConfig) { c.maxWait = d } }

// MaxConcurrentBatches is how many batch loader calls run at once for one
// GetMany or FetchMany, or for one [Batch] adapter. n must be at least 1.
// Default: [DefaultMaxConcurrentBatches].
func MaxConcurrentBatches(n int) BatchOption {
	return func(c *batchConfig) { c.concurrency = n }
}

func newBatchConfig(opts []BatchOption) batchConfig {
	c := batchConfig{maxBatch: DefaultMaxBatch, concurrency: DefaultMaxConcurrentBatches, maxWait: DefaultMaxWait}
	for _, o := range opts {
		o(&c)
	}
	if c.maxBatch < 1 {
		panic(fmt.Sprintf("herd: MaxBatch must be at least 1, got %d", c.maxBatch))
	}
	if c.concurrency < 1 {
		panic(fmt.Sprintf("herd: MaxConcurrentBatches must be at least 1, got %d", c.concurrency))
	}
	if c.maxWait <= 0 {
		panic(fmt.Sprintf("herd: MaxWait must be positive, got %v", c.maxWait))
	}
	return c
}

// KeyErrors are the errors of the keys that [Cache.GetMany] or
// [Cache.FetchMany] could not answer, by key. [errors.Is] and [errors.As]
// see each of them.
type KeyErrors map[string]error

// Error names how many keys failed and the first of them, in key order.
func (e KeyErrors) Error() string {
	keys := e.keys()
	if len(keys) == 0 {
		return "herd: no key failed"
	}
	var b strings.Builder
	fmt.Fprintf(&b, "herd: %d of the keys failed: %v", len(keys), e[keys[0]])
	if len(keys) > 1 {
		fmt.Fprintf(&b, " (and %d more)", len(keys)-1)
	}
	return b.String()
}

// Unwrap returns the errors of the keys, in key order.
func (e KeyErrors) Unwrap() []error {
	keys := e.keys()
	errs := make([]error, len(keys))
	for i, k := range keys {
		errs[i] = e[k]
	}
	return errs
}

func (e KeyErrors) keys() []string {
	keys := make([]string, 0, len(e))
	for k := range e {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

// GetMany returns the values of keys, as [Cache.Get] would for each of them,
// with one bulk read of the store (a [store.BulkGetter] if the store is one,
// a Get per key otherwise) and as few loader calls as it can:
//
//   - a key whose load is in flight (from Get, GetMany or a refresh) joins
//     it and is not loaded again;
//   - the other missing or expired keys are loaded by load, in calls of at
//     most [MaxBatch] keys, at most [MaxConcurrentBatches] at once; each key
//     of a call is a load of that key (it wins against a Set or Delete as a
//     load of Get does, and is written back under the same conditions), and
//     a Get of the key meanwhile joins it;
//   - stale keys are returned at once and refreshed in the background, in
//     batches as well.
//
// The map holds a value for each key that has one. A key the source does
// not have is left out of it, with no error (it is cached for
// [NegativeTTL]). Each key has its own outcome: a batch loader error fails
// the keys of that call only, and a key that [StaleIfError] covers gets its
// old value instead. The keys that failed are in a [KeyErrors] error,
// returned with the values of the others; a loader panic reaches every key
// of its call as a [*flight.PanicError]. Duplicate keys are read once; no
// keys give an empty map.
//
// GetMany returns nil and ctx.Err() when ctx ends first: the loads go on,
// detached from ctx and bounded by [LoadTimeout], and fill the cache. After
// Close it returns [ErrClosed]. Batch loads do not take the per-key locks of
// [WithLocker]; their write-backs are conditional all the same. GetMany
// panics if ctx or load is nil, or an option is invalid.
func (c *Cache[T]) GetMany(ctx context.Context, keys []string, load BatchLoader[T], opts ...BatchOption) (map[string]T, error) {
	out := manyOut[T]{values: make(map[string]T, len(keys))}
	err := c.fetchMany(ctx, keys, load, opts, out)
	if err != nil && !isKeyErrors(err) {
		return nil, err
	}
	return out.values, err
}

// FetchMany is [Cache.GetMany] that also says, for each value, whether it
// was fresh, stale or just loaded, and its age.
func (c *Cache[T]) FetchMany(ctx context.Context, keys []string, load BatchLoader[T], opts ...BatchOption) (map[string]Result[T], error) {
	out := manyOut[T]{results: make(map[string]Result[T], len(keys))}
	err := c.fetchMany(ctx, keys, load, opts, out)
	if err != nil && !isKeyErrors(err) {
		return nil, err
	}
	return out.results, err
}

// manyOut is where fetchMany puts the answers: GetMany's values or
// FetchMany's results.
type manyOut[T any] struct {
	values  map[string]T
	results map[string]Result[T]
}

func (o manyOut[T]) put(key string, r Result[T]) {
	if o.results != nil {
		o.results[key] = r
	} else {
		o.values[key] = r.Value
	}
}

func isKeyErrors(err error) bool {
	var ke KeyErrors
	return errors.As(err, &ke)
}

// fetchMany is FetchMany, putting its answers in out. It returns a
// KeyErrors with the answers of the other keys, or another error with none.
func (c *Cache[T]) fetchMany(ctx context.Context, keys []string, load BatchLoader[T], opts []BatchOption, out manyOut[T]) error {
	mustContext(ctx)
	if load == nil {
		panic("herd: FetchMany needs a batch loader, got nil")
	}
	cfg := newBatchConfig(opts)
	if c.closed.Load() {
		return ErrClosed
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	uniq := uniqueKeys(keys)
	if len(uniq) == 0 {
		return nil
	}
	found := c.readMany(ctx, uniq)
	if err := ctx.Err(); err != nil {
		return err
	}
	now := time.Now()
	var (
		stale []string
		miss  []missedKey[T]
	)
	for _, k := range uniq {
		e, ok := found[k]
		if !ok {
			miss = append(miss, missedKey[T]{key: k})
			continue
		}
		switch r, a := c.judgeOne(ctx, k, &e, now); a {
		case answerValue:
			out.put(k, r)
		case answerStale:
			out.put(k, r)
			stale = append(stale, k)
		case answerNotFound:
		case answerLoad:
			miss = append(miss, missedKey[T]{key: k, old: &e})
		}
	}
	if len(stale) > 0 {
		c.refreshMany(ctx, stale, load, cfg)
	}
	if len(miss) == 0 {
		return nil
	}
	return c.loadMany(ctx, miss, load, cfg, out)
}

// uniqueKeys returns keys without duplicates, in the order of their first
// occurrence.
func uniqueKeys(keys []string) []string {
	seen := make(map[string]struct{}, len(keys))
	uniq := make([]string, 0, len(keys))
	for _, k := range keys {
		if _, dup := seen[k]; !dup {
			seen[k] = struct{}{}
			uniq = append(uniq, k)
		}
	}
	return uniq
}

// readMany reads keys from the store in one bulk read if it can. A store
// error counts, and the keys it did not return are missing.
func (c *Cache[T]) readMany(ctx context.Context, keys []string) map[string]store.Entry[T] {
	if b, ok := c.store.(store.BulkGetter[T]); ok {
		m, err := b.GetMany(ctx, keys)
		if err != nil {
			c.storeError(ctx, "get many", keys[0], err)
		}
		return m
	}
	m := make(map[string]store.Entry[T], len(keys))
	for _, k := range keys {
		e, ok, err := c.store.Get(ctx, k)
		switch {
		case err != nil:
			c.storeError(ctx, "get", k, err)
			if ctx.Err() != nil {
				return m
			}
		case ok:
			m[k] = e
		}
	}
	return m
}

// What a bulk read's entry answers for its key.
type answer uint8

const (
	answerValue    answer = iota // a value to return: fresh, or stale-on-error while the key backs off
	answerStale                  // a stale value to return and refresh
	answerNotFound               // a cached "not found"
	answerLoad                   // expired: the key must be loaded
)

// judgeOne is judge for one key of a bulk read: it counts what it answers,
// but leaves the refresh of a stale key to refreshMany.
func (c *Cache[T]) judgeOne(ctx context.Context, key string, e *store.Entry[T], now time.Time) (Result[T], answer) {
	if !e.Expired(now) {
		switch {
		case e.NotFound:
			c.event(ctx, &c.stats.negativeHits, EventNegativeHit, key)
			return Result[T]{}, answerNotFound
		case !e.RefreshAt.IsZero() && !now.Before(e.RefreshAt):
			c.count(ctx, &c.stats.staleHits, EventStaleHit, key)
			return result(e, StatusStale, now), answerStale
		}
		c.count(ctx, &c.stats.hits, EventHit, key)
		return result(e, StatusFresh, now), answerValue
	}
	if !e.NotFound && e.Live(now) && c.backoff.active(key, now) {
		c.observe(ctx, &c.stats.staleOnError, Event{Kind: EventStaleOnError, Key: key, Err: errBackingOff})
		return result(e, StatusStaleOnError, now), answerValue
	}
	return Result[T]{}, answerLoad
}

// A missedKey is a key of a bulk read that must be loaded, with its expired
// entry for stale-if-error, if the store had one.
type missedKey[T any] struct {
	key string
	old *store.Entry[T]
}

type (
	entryClaim[T any]  = flight.Claim[string, store.Entry[T]]
	entryWaiter[T any] = flight.Waiter[string, store.Entry[T]]
)

// loadMany loads the missed keys, joining the loads in flight and batching
// the others, waits for them on ctx and adds their values to out.
func (c *Cache[T]) loadMany(ctx context.Context, miss []missedKey[T], load BatchLoader[T], cfg batchConfig, out manyOut[T]) error {
	type wait struct {
		claim  *entryClaim[T]
		joined *entryWaiter[T]
	}
	waits := make([]wait, len(miss))
	var (
		keys   []string
		claims []*entryClaim[T]
	)
	for i, m := range miss {
		c.count(ctx, &c.stats.misses, EventMiss, m.key)
		w := &waits[i]
		// A call that ends between Join and Claim makes Claim fail only if
		// another caller started the next one, which the next Join finds.
		for w.claim == nil && w.joined == nil {
			if w.joined = c.flight.Join(m.key); w.joined == nil {
				w.claim = c.flight.Claim(m.key)
			}
		}
		if w.claim != nil {
			keys = append(keys, m.key)
			claims = append(claims, w.claim)
		}
	}
	if len(claims) > 0 {
		c.startBatches(ctx, keys, claims, load, cfg, false)
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
				c.count(ctx, &c.stats.sharedWaits, EventSharedWait, m.key)
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

// loadOne loads key alone through the flight group, as Get does.
func (c *Cache[T]) loadOne(ctx context.Context, key string, load BatchLoader[T]) (store.Entry[T], error) {
	one := func(ctx context.Context, key string) (T, error) {
		vs, err := c.callBatchLoader(ctx, []string{key}, load)
		v, ok := vs[key]
		switch {
		case err != nil:
			return v, err
		case !ok:
			return v, ErrNotFound
		}
		return v, nil
	}
	var (
		e   store.Entry[T]
		err error
	)
	for range 3 {
		e, err = c.flight.Do(ctx, key, func(ctx context.Context) (store.Entry[T], error) {
			return c.load(ctx, key, one, false)
		})
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
	var (
		keys   []string
		claims []*entryClaim[T]
	)
	for _, k := range stale {
		if c.backoff.active(k, now) {
			continue
		}
		cl := c.flight.Claim(k)
		if cl == nil {
			continue // a load or refresh of the key is in flight
		}
		keys = append(keys, k)
		claims = append(claims, cl)
		c.event(ctx, &c.stats.refreshesQueued, EventRefreshQueued, k)
	}
	if len(claims) > 0 {
		c.startBatches(ctx, keys, claims, load, cfg, true)
	}
}

// startBatches loads the claimed keys on a goroutine detached from ctx,
// which Close waits for. After Close, the claims fail with ErrClosed.
func (c *Cache[T]) startBatches(ctx context.Context, keys []string, claims []*entryClaim[T], load BatchLoader[T], cfg batchConfig, refresh bool) {
	c.lifeMu.RLock()
	if c.closed.Load() {
		c.lifeMu.RUnlock()
		for _, cl := range claims {
			cl.Finish(store.Entry[T]{}, ErrClosed)
		}
		return
	}
	c.loads.Add(1)
	c.lifeMu.RUnlock()
	go c.runBatches(context.WithoutCancel(ctx), keys, claims, load, cfg, refresh)
}

// runBatches loads keys in chunks of at most cfg.maxBatch, at most
// cfg.concurrency at once, each on a goroutine of its own so that one that
// calls runtime.Goexit ends only its own chunk.
func (c *Cache[T]) runBatches(ctx context.Context, keys []string, claims []*entryClaim[T], load BatchLoader[T], cfg batchConfig, refresh bool) {
	defer c.loads.Done()
	if len(keys) <= cfg.maxBatch {
		c.loadChunk(ctx, keys, claims, load, refresh)
		return
	}
	sem := make(chan struct{}, cfg.concurrency)
	var wg sync.WaitGroup
	for lo := 0; lo < len(keys); lo += cfg.maxBatch {
		hi := min(lo+cfg.maxBatch, len(keys))
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer func() {
				<-sem
				wg.Done()
			}()
			c.loadChunk(ctx, keys[lo:hi], claims[lo:hi], load, refresh)
		}()
	}
	wg.Wait()
}

// loadChunk loads keys with one batch loader call and stores each key's
// answer as load does for one key: registered with the write guard before
// the call, written back conditionally, published to the key's callers as
// soon as the loader returns. callCtx is detached from every caller.
func (c *Cache[T]) loadChunk(callCtx context.Context, keys []string, claims []*entryClaim[T], load BatchLoader[T], refresh bool) {
	// Every claim is finished whatever happens below, or its key would stay
	// in flight for ever; Finish after Finish does nothing. What escapes
	// (runtime.Goexit in the loader, a panic of the store) reaches the
	// callers as the flight package reports it.
	returned := false
	defer func() {
		err := flight.ErrGoexit
		if !returned {
			if r := recover(); r != nil {
				err = flight.NewPanicError(r)
			}
		}
		for _, cl := range claims {
			cl.Finish(store.Entry[T]{}, err)
		}
	}()
	ctx := callCtx
	if c.cfg.loadTimeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, c.cfg.loadTimeout)
		defer cancel()
	}
	pending, registrations := make([]*pendingWrite, len(keys)), make([]pendingWrite, len(keys))
	for i, k := range keys {
		pending[i] = &registrations[i]
		c.writes.begin(k, pending[i])
	}
	defer func() {
		for i, k := range keys {
			c.writes.end(k, pending[i])
		}
	}()
	bases := make([]writeBase, len(keys))
	stored := make([]store.Entry[T], len(keys))
	found := make([]bool, len(keys))
	if c.versioned != nil {
		eachKey(len(keys), func(i int) {
			stored[i], found[i], bases[i] = c.readForLoad(ctx, keys[i])
		})
	} else {
		m := c.readMany(ctx, keys)
		for i, k := range keys {
			stored[i], found[i] = m[k]
		}
	}
	// Another load of a key may have stored its answer between the read
	// that missed the key and the claim: that answer is used, as a lock
	// holder does, rather than loading the key again. The chunk's slices
	// are its own, so they are narrowed in place to the keys left to load.
	n, now := 0, time.Now()
	for i, k := range keys {
		if e := &stored[i]; found[i] && settled(e, now, refresh) {
			c.writes.end(k, pending[i])
			if e.NotFound {
				claims[i].Finish(*e, ErrNotFound)
			} else {
				claims[i].Finish(*e, nil)
			}
			continue
		}
		keys[n], claims[n], pending[n], bases[n] = k, claims[i], pending[i], bases[i]
		n++
	}
	keys, claims, pending, bases = keys[:n], claims[:n], pending[:n], bases[:n]
	if n == 0 {
		returned = true
		return
	}

	ttl := &batchTTL{}
	lctx := context.WithValue(context.WithValue(ctx, entryTTLKey{}, &ttl.all), batchTTLKey{}, ttl)
	vals, err := c.callBatchLoader(lctx, slices.Clone(keys), load)

	wctx, cancel := context.WithTimeout(context.WithoutCancel(callCtx), c.cfg.storeTimeout)
	defer cancel()
	now = time.Now()
	if err != nil {
		for i, k := range keys {
			c.backoff.failed(k, now, &c.cfg)
			if refresh {
				c.refreshFailed(callCtx, k, err)
			}
			claims[i].Finish(store.Entry[T]{}, err)
		}
		returned = true
		return
	}
	entries := make([]store.Entry[T], len(keys))
	keep := make([]bool, len(keys))
	for i, k := range keys {
		c.backoff.succeeded(k) // the source answered, found or not
		v, ok := vals[k]
		if !ok {
			entries[i].NotFound = true
			continue
		}
		entries[i], keep[i] = c.newEntry(v, now, ttl.of(k))
		claims[i].Publish(entries[i])
	}
	eachKey(len(keys), func(i int) {
		k, e := keys[i], &entries[i]
		switch {
		case e.NotFound && c.cfg.negativeTTL > 0:
			ne := c.negativeEntry(now)
			c.writeBack(wctx, k, pending[i], bases[i], &ne, now)
		case e.NotFound, !keep[i]:
			c.writeBack(wctx, k, pending[i], bases[i], nil, now)
		default:
			c.writeBack(wctx, k, pending[i], bases[i], e, now)
		}
		c.writes.end(k, pending[i])
		if e.NotFound {
			claims[i].Finish(*e, ErrNotFound)
		} else {
			claims[i].Finish(*e, nil) // published already
		}
	})
	returned = true
}

// keyParallelism bounds the goroutines of eachKey: the per-key version reads
// and write-backs of a batch go to a remote store at once rather than one
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
	var (
		next     atomic.Int64
		wg       sync.WaitGroup
		panicked atomic.Pointer[any]
	)
	next.Store(1)
	for range min(keyParallelism, n-1) {
		wg.Go(func() {
			defer func() {
				if r := recover(); r != nil {
					panicked.CompareAndSwap(nil, &r)
				}
			}()
			for i := int(next.Add(1) - 1); i < n && panicked.Load() == nil; i = int(next.Add(1) - 1) {
				fn(i)
			}
		})
	}
	wg.Wait()
	if p := panicked.Load(); p != nil {
		panic(*p)
	}
}

// settled reports whether an entry read at the start of a batch load makes
// the load of its key needless: unexpired for a load, and not stale either
// for a refresh.
func settled[T any](e *store.Entry[T], now time.Time, refresh bool) bool {
	if e.Expired(now) {
		return false
	}
	return !refresh || e.RefreshAt.IsZero() || now.Before(e.RefreshAt)
}

// refreshFailed counts and logs a failed background refresh of key.
func (c *Cache[T]) refreshFailed(ctx context.Context, key string, err error) {
	c.observe(ctx, &c.stats.refreshesFailed, Event{Kind: EventRefreshFailed, Key: key, Err: err})
	c.log(ctx, &c.refreshErrLog, slog.LevelWarn, "herd: background refresh failed; serving the old value",
		slog.String("key", key), slog.Any("err", err))
}

// callBatchLoader calls load and counts the call. A panic becomes the
// call's error, a *flight.PanicError; a runtime.Goexit is counted as a
// failure and goes on.
func (c *Cache[T]) callBatchLoader(ctx context.Context, keys []string, load BatchLoader[T]) (vals map[string]T, err error) {
	n := len(keys)
	start := time.Now()
	returned := false
	defer func() {
		took := time.Since(start)
		if !returned {
			if r := recover(); r != nil {
				err = flight.NewPanicError(r)
			} else {
				err = flight.ErrGoexit
			}
		}
		c.stats.batchLoads.Add(1)
		c.stats.batchKeys.Add(uint64(n))
		c.stats.batchLoadNanos.Add(uint64(took))
		if err != nil {
			c.stats.batchLoadErrors.Add(1)
		}
		c.notify(ctx, Event{Kind: EventBatchLoad, Duration: took, Err: err, Keys: n})
	}()
	vals, err = load(ctx, keys)
	returned = true
	return vals, err
}

// batchTTL is where SetTTL and SetKeyTTL put a batch loader's choice of
// lifetimes.
type batchTTL struct {
	all  entryTTL // SetTTL's, for every key
	mu   sync.Mutex
	keys map[string]entryTTL
}

type batchTTLKey struct{}

func (b *batchTTL) of(key string) *entryTTL {
	b.mu.Lock()
	defer b.mu.Unlock()
	if t, ok := b.keys[key]; ok {
		return &t
	}
	return &b.all
}

// SetKeyTTL sets the TTL of the entry of key among those a [BatchLoader] is
// loading, instead of the cache's [TTL] or the call's [SetTTL], as SetTTL
// does for a [Loader]'s entry: a ttl of zero or less means that the value is
// returned but not cached. A batch loader calls it on the context it was
// given, from any goroutine. SetKeyTTL reports whether ctx was a batch
// loader's context; elsewhere it does nothing.
func SetKeyTTL(ctx context.Context, key string, ttl time.Duration) bool {
	b, ok := ctx.Value(batchTTLKey{}).(*batchTTL)
	if !ok {
		return false
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.keys == nil {
		b.keys = make(map[string]entryTTL)
	}
	b.keys[key] = entryTTL{set: true, ttl: ttl}
	return true
}
