package herd

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/herdcache/herd/internal/check"
	"github.com/herdcache/herd/internal/local"
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
	check.That(c.maxBatch >= 1, "herd", "MaxBatch must be at least 1, got %d", c.maxBatch)
	check.That(c.concurrency >= 1, "herd", "MaxConcurrentBatches must be at least 1, got %d", c.concurrency)
	check.That(c.maxWait > 0, "herd", "MaxWait must be positive, got %v", c.maxWait)
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
// detached from ctx and bounded by [LoadTimeout], and fill the cache. Over
// an in-process store, a batch whose caller's context cannot end runs on
// the caller's goroutine, as a load of Get does (see the package
// documentation): a runtime.Goexit in its batch loader then ends that
// goroutine. After
// Close it returns [ErrClosed]. GetMany panics if ctx or load is nil, or an
// option is invalid.
//
// Each key of a batch is loaded as Get loads it (see pipeline.go): with
// [WithLocker], the keys' locks are taken (in one round trip when the store
// is a [store.BulkLocker]); a key that another process holds is waited for
// while the rest of the batch loads, and its value read from the store when
// it lands; the leases of a batch are extended while its loader runs; the
// versions are read and the results written back conditionally in one
// round trip each when the store is a [store.BulkVersioned].
func (c *Cache[T]) GetMany(ctx context.Context, keys []string, load BatchLoader[T], opts ...BatchOption) (map[string]T, error) {
	check.Context(ctx, "herd")
	check.That(load != nil, "herd", "GetMany needs a batch loader, got nil")
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
	check.Context(ctx, "herd")
	check.That(load != nil, "herd", "FetchMany needs a batch loader, got nil")
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

func (o manyOut[T]) has(key string) bool {
	if o.results != nil {
		_, ok := o.results[key]
		return ok
	}
	_, ok := o.values[key]
	return ok
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
	cfg := newBatchConfig(opts)
	if c.closed.Load() {
		return ErrClosed
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	var a pendingKeys[T]
	if c.inProcess {
		c.serveLocalMany(ctx, keys, out, &a)
	} else {
		uniq := uniqueKeys(keys)
		if len(uniq) == 0 {
			return nil
		}
		found := c.readMany(ctx, uniq)
		if err := ctx.Err(); err != nil {
			return err
		}
		now := time.Now()
		for _, k := range uniq {
			e, ok := found[k]
			if !ok {
				a.miss = append(a.miss, missedKey[T]{key: k})
				continue
			}
			c.serveBulkEntry(ctx, k, &e, now, out, &a)
		}
	}
	if len(a.stale) > 0 {
		c.refreshMany(ctx, a.stale, load, cfg)
	}
	if len(a.miss) == 0 {
		return nil
	}
	return c.loadMany(ctx, a.miss, load, cfg, out)
}

// pendingKeys are the keys of a bulk read that are not answered yet: the
// stale ones, to refresh, and the missing or expired ones, to load.
type pendingKeys[T any] struct {
	stale []string
	miss  []missedKey[T]
}

// serveLocalMany answers keys from an in-process store, in place: a fresh
// or stale value costs a lookup and no copy, as a Get's does.
func (c *Cache[T]) serveLocalMany(ctx context.Context, keys []string, out manyOut[T], a *pendingKeys[T]) {
	for _, k := range keys {
		if out.has(k) {
			continue // a duplicate of a key answered with a value
		}
		// A duplicate of a key not answered with a value is answered again;
		// its second load joins the first's call.
		e, now, ok := c.peek(k)
		switch {
		case !ok:
			a.miss = append(a.miss, missedKey[T]{key: k})
		case fresh(e, now):
			c.hit(k)
			out.put(k, Result[T]{Value: e.Value, Status: StatusFresh, StoredAt: local.Time(e.StoredAt), at: time.Unix(0, now)})
		case stale(e, now):
			c.staleHit(ctx, k)
			out.put(k, Result[T]{Value: e.Value, Status: StatusStale, StoredAt: local.Time(e.StoredAt), at: time.Unix(0, now)})
			a.stale = append(a.stale, k)
		default:
			se := e.Entry()
			c.serveBulkEntry(ctx, k, &se, time.Unix(0, now), out, a)
		}
	}
}

// serveBulkEntry answers key from the entry e the store had, found live at now,
// or adds it to the keys to refresh or load.
func (c *Cache[T]) serveBulkEntry(ctx context.Context, key string, e *store.Entry[T], now time.Time, out manyOut[T], a *pendingKeys[T]) {
	switch r, kind := c.useOf(ctx, key, e, now); kind {
	case useValue:
		out.put(key, r)
	case useStale:
		out.put(key, r)
		a.stale = append(a.stale, key)
	case useNotFound:
	case useLoad:
		old := *e
		a.miss = append(a.miss, missedKey[T]{key: key, old: &old})
	}
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

// readMany reads keys from the store in one bulk read if it can (a Get per
// key otherwise, overlapped on a remote store), each call bounded by
// StoreTimeout. A store error counts, and the keys it did not return are
// missing.
func (c *Cache[T]) readMany(ctx context.Context, keys []string) map[string]store.Entry[T] {
	bound := c.storeBound
	if c.inProcess { // in-process: no call blocks
		bound = func(ctx context.Context) (context.Context, context.CancelFunc) { return ctx, func() {} }
	}
	if b, ok := c.store.(store.BulkGetter[T]); ok {
		rctx, cancel := bound(ctx)
		defer cancel()
		var m map[string]store.Entry[T]
		err := c.guard(ctx, func() (err error) {
			m, err = b.GetMany(rctx, keys)
			return err
		})
		if errors.Is(err, errStoreDown) {
			m = c.peekNearMany(keys)
		}
		if err != nil {
			c.storeError(ctx, "get many", "", err)
		}
		return m
	}
	var mu sync.Mutex
	m := make(map[string]store.Entry[T], len(keys))
	eachKey(len(keys), func(i int) {
		rctx, cancel := bound(ctx)
		defer cancel()
		var (
			e  store.Entry[T]
			ok bool
		)
		err := c.guard(ctx, func() (err error) {
			e, ok, err = c.store.Get(rctx, keys[i])
			return err
		})
		if errors.Is(err, errStoreDown) {
			if ne, _, found := c.peekNear(keys[i]); found {
				e, ok, err = ne.Entry(), true, nil
			}
		}
		switch {
		case err != nil:
			c.storeError(ctx, "get", keys[i], err)
		case ok:
			mu.Lock()
			m[keys[i]] = e
			mu.Unlock()
		}
	})
	return m
}

// peekNearMany returns the copies of keys that the near tier of a
// two-level store holds, for a read that skipped the store while it is
// down; nil without a near tier.
func (c *Cache[T]) peekNearMany(keys []string) map[string]store.Entry[T] {
	if c.peek == nil || c.inProcess {
		return nil
	}
	m := make(map[string]store.Entry[T])
	for _, k := range keys {
		if e, _, ok := c.peekNear(k); ok {
			m[k] = e.Entry()
		}
	}
	return m
}

// What a bulk read's entry answers for its key.
type entryUse uint8

const (
	useValue    entryUse = iota // a value to return: fresh, or stale-on-error while the key backs off
	useStale                    // a stale value to return and refresh
	useNotFound                 // a cached "not found"
	useLoad                     // expired: the key must be loaded
)

// useOf is serveEntry for one key of a bulk read: it counts what it answers,
// but leaves the refresh of a stale key to refreshMany.
func (c *Cache[T]) useOf(ctx context.Context, key string, e *store.Entry[T], now time.Time) (Result[T], entryUse) {
	if !e.Expired(now) {
		switch {
		case e.NotFound:
			c.record(ctx, &c.stats.negativeHits, Event{Kind: EventNegativeHit, Key: key})
			return Result[T]{}, useNotFound
		case !e.RefreshAt.IsZero() && !now.Before(e.RefreshAt):
			c.record(ctx, &c.stats.staleHits, Event{Kind: EventStaleHit, Key: key})
			return result(e, StatusStale, now), useStale
		}
		c.record(ctx, &c.stats.hits, Event{Kind: EventHit, Key: key})
		return result(e, StatusFresh, now), useValue
	}
	if !e.NotFound && e.Live(now) && c.backoff.active(key, now) {
		c.record(ctx, &c.stats.staleOnError, Event{Kind: EventStaleOnError, Key: key, Err: errBackingOff})
		return result(e, StatusStaleOnError, now), useValue
	}
	return Result[T]{}, useLoad
}

// batchTTL is where SetTTL and SetKeyTTL put a batch loader's choice of
// lifetimes.
type batchTTL struct {
	all  entryTTL // SetTTL's, for every key
	mu   sync.Mutex
	keys map[string]entryTTL
}

type batchTTLKey struct{}

func (b *batchTTL) of(key string) entryTTL {
	b.mu.Lock()
	defer b.mu.Unlock()
	if t, ok := b.keys[key]; ok {
		return t
	}
	return b.all
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
