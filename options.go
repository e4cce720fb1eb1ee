package herd

import (
	"log/slog"
	"time"

	"github.com/herdcache/herd/internal/check"
	"github.com/herdcache/herd/store"
)

// An Option configures a [Cache]. Options are checked by [New], which panics
// with a message naming the option when a value is invalid: options are
// constants of a program, and a wrong one is a programming error.
type Option func(*config)

type config struct {
	ttl          time.Duration
	refreshAfter time.Duration
	staleIfError time.Duration
	negativeTTL  time.Duration
	jitter       float64
	loadTimeout  time.Duration
	storeTimeout time.Duration
	workers      int
	queueSize    int
	backoffMin   time.Duration
	backoffMax   time.Duration
	downMin      time.Duration
	downMax      time.Duration
	locker       store.Locker
	lockTTL      time.Duration
	logger       *slog.Logger
	observer     Observer
}

// Defaults of the options that have one.
const (
	DefaultWorkers      = 4
	DefaultQueueSize    = 1024
	DefaultBackoffMin   = time.Second
	DefaultBackoffMax   = time.Minute
	DefaultLoadTimeout  = 0 // none: a load runs until its loader returns
	DefaultStoreTimeout = time.Second

	DefaultStoreBackoffMin = 100 * time.Millisecond
	DefaultStoreBackoffMax = 10 * time.Second

	// MaxWorkers and MaxQueueSize bound Workers and QueueSize: past them a
	// value is a mistake (the queue is allocated whole on first use).
	MaxWorkers   = 1 << 14
	MaxQueueSize = 1 << 20
)

func defaultConfig() config {
	return config{
		storeTimeout: DefaultStoreTimeout,
		workers:      DefaultWorkers,
		queueSize:    DefaultQueueSize,
		backoffMin:   DefaultBackoffMin,
		backoffMax:   DefaultBackoffMax,
		downMin:      DefaultStoreBackoffMin,
		downMax:      DefaultStoreBackoffMax,
	}
}

// TTL is how long an entry is served without a load. Past it, a caller waits
// for a load (see [StaleIfError] for when that load fails). Default: 0, the
// entry never expires and stays until the store evicts it.
func TTL(d time.Duration) Option { return func(c *config) { c.ttl = d } }

// RefreshAfter is the age past which an entry is stale: it is still returned
// at once, and one background refresh of the key is queued. It must be
// shorter than TTL when TTL is set. Default: 0, no background refresh.
func RefreshAfter(d time.Duration) Option { return func(c *config) { c.refreshAfter = d } }

// StaleIfError is how long past its TTL an entry is kept to be served when
// the load that should replace it fails. Such a value is returned with no
// error and [StatusStaleOnError]. Default: 0, a failed load returns its error.
func StaleIfError(d time.Duration) Option { return func(c *config) { c.staleIfError = d } }

// NegativeTTL caches a loader's [ErrNotFound] for d: within it, Get returns
// an error wrapping ErrNotFound without calling the loader. Default: 0, "not
// found" is not cached.
func NegativeTTL(d time.Duration) Option { return func(c *config) { c.negativeTTL = d } }

// Jitter shortens each entry's refresh and expiry times by a random fraction
// of up to f, so that keys loaded together do not all turn stale together.
// f must be in [0, 1). Default: 0.
func Jitter(f float64) Option { return func(c *config) { c.jitter = f } }

// LoadTimeout bounds every load, foreground or background, whatever its
// callers' contexts: the wait for another process's lock (see [WithLocker])
// and the loader's call. The store write after it has its own bound,
// [StoreTimeout]. Default: 0, no bound: the loader's own timeouts apply.
func LoadTimeout(d time.Duration) Option { return func(c *config) { c.loadTimeout = d } }

// StoreTimeout bounds every store call the cache makes on a caller's
// behalf or its own, other than Set and Delete (which run on the caller's
// context): the read of a Get on a remote store and the bulk read of a
// GetMany, so that a slow or hung store costs the caller a load rather than
// its whole deadline; the version read before a load; each lock call (try,
// extend, unlock) and each poll of the store while another process holds a
// key; and each store write the cache makes on its own (storing a loaded
// value, a not-found answer, or the removal of an entry the source no
// longer has). A batch's step (its version reads, its locks, its
// write-backs) is one bulk call when the store has one, bounded as a
// whole. Callers never wait for these writes (they get a loaded value as
// soon as the loader returns it), but the key's load stays in flight until
// its write is done, so a hung store must not hold it forever. A caller
// whose own deadline comes sooner bounds its reads by that instead.
// Default: [DefaultStoreTimeout].
func StoreTimeout(d time.Duration) Option { return func(c *config) { c.storeTimeout = d } }

// Workers is the number of background refreshes that run at once. Workers
// are started when there is work and exit when there is none. n must be in
// [1, MaxWorkers]. Default: [DefaultWorkers].
func Workers(n int) Option { return func(c *config) { c.workers = n } }

// QueueSize bounds the refreshes waiting for a worker; past it, a refresh is
// dropped and counted, and the key is tried again on a later stale read.
// n must be in [1, MaxQueueSize]. Default: [DefaultQueueSize].
func QueueSize(n int) Option { return func(c *config) { c.queueSize = n } }

// RefreshBackoff sets how long a key waits after a failed load before it is
// refreshed in the background again: minimum after the first failure,
// doubling with each further one up to maximum, each wait jittered between
// half and all of it. A success resets it. While a key backs off, an expired
// entry that [StaleIfError] still covers is served without a new load.
// Defaults: [DefaultBackoffMin] and [DefaultBackoffMax].
func RefreshBackoff(minimum, maximum time.Duration) Option {
	return func(c *config) { c.backoffMin, c.backoffMax = minimum, maximum }
}

// StoreBackoff sets how a remote store that cannot be reached is skipped.
// When a store call fails for the connection (the store reports
// store.ErrUnavailable, the call outlives StoreTimeout, the connection is
// refused or lost), the store is marked down: until it answers again,
// every call skips it at once, as a store that failed, but for one call per
// window, the probe, which goes through. The window is minimum after the
// failure that marked the store down, and doubles with each failed probe up
// to maximum. The first call that gets an answer (the probe, or a call under
// way) marks it up. So an outage costs the first caller at most one
// StoreTimeout, and the callers after it a load without the store's reads,
// locks and writes. The changes are counted ([Stats.StoreDowns],
// [Stats.StoreUps]) and logged once each; the skipped calls are counted in
// [Stats.StoreSkipped]. An in-process store is never skipped. Defaults:
// [DefaultStoreBackoffMin] and [DefaultStoreBackoffMax].
func StoreBackoff(minimum, maximum time.Duration) Option {
	return func(c *config) { c.downMin, c.downMax = minimum, maximum }
}

// WithLocker makes loads exclusive across processes that share a store (see
// lock.go for the protocol). The loader of a key runs only in the process
// that holds the key's lock; the holder extends its lease every third of ttl
// while the loader runs, so that as long as the backend answers, at most one
// loader of a key runs across the fleet at a time, however long it takes.
// On a cold or expired key, the others wait for the holder's value to appear
// in the store, within their own context; a holder that died is taken over
// once its lease ends (at most ttl), and a store that fails makes them load
// at once; a background refresh that
// finds the lock taken is skipped and counted in [Stats.RefreshesSkipped].
// Every lock call is bounded by [StoreTimeout]: a locker that fails or hangs
// costs a load without the lock, never an error or a stuck key. When the
// backend does not answer (a lease lost, two holders), a store that
// implements [store.Versioned] still keeps the older load from overwriting
// the newer: write-backs are conditional. A store that implements
// [store.Locker] is usually given here. Default: no locker; in one process,
// loads are one per key anyway.
func WithLocker(l store.Locker, ttl time.Duration) Option {
	return func(c *config) { c.locker, c.lockTTL = l, ttl }
}

// WithLogger sets where the cache logs store failures and failed background
// refreshes, at most once per 10 seconds for each kind of message. Default:
// [slog.Default].
func WithLogger(l *slog.Logger) Option { return func(c *config) { c.logger = l } }

// WithObserver sets an [Observer] that receives every event the cache counts
// in [Cache.Stats]. Default: none.
func WithObserver(o Observer) Option { return func(c *config) { c.observer = o } }

func (c *config) validate() {
	check.That(c.ttl >= 0, "herd", "TTL must not be negative, got %v", c.ttl)
	check.That(c.refreshAfter >= 0, "herd", "RefreshAfter must not be negative, got %v", c.refreshAfter)
	check.That(c.ttl == 0 || c.refreshAfter < c.ttl, "herd", "RefreshAfter (%v) must be shorter than TTL (%v)", c.refreshAfter, c.ttl)
	check.That(c.staleIfError >= 0, "herd", "StaleIfError must not be negative, got %v", c.staleIfError)
	check.That(c.negativeTTL >= 0, "herd", "NegativeTTL must not be negative, got %v", c.negativeTTL)
	check.That(c.jitter >= 0 && c.jitter < 1, "herd", "Jitter must be in [0, 1), got %v", c.jitter)
	check.That(c.loadTimeout >= 0, "herd", "LoadTimeout must not be negative, got %v", c.loadTimeout)
	check.That(c.storeTimeout > 0, "herd", "StoreTimeout must be positive, got %v", c.storeTimeout)
	check.That(c.workers > 0 && c.workers <= MaxWorkers, "herd", "Workers must be in [1, %d], got %d", MaxWorkers, c.workers)
	check.That(c.queueSize > 0 && c.queueSize <= MaxQueueSize, "herd", "QueueSize must be in [1, %d], got %d", MaxQueueSize, c.queueSize)
	check.That(c.backoffMin > 0 && c.backoffMax >= c.backoffMin, "herd",
		"RefreshBackoff needs 0 < minimum <= maximum, got %v and %v", c.backoffMin, c.backoffMax)
	check.That(c.downMin > 0 && c.downMax >= c.downMin, "herd",
		"StoreBackoff needs 0 < minimum <= maximum, got %v and %v", c.downMin, c.downMax)
	check.That(c.locker == nil || c.lockTTL > 0, "herd", "WithLocker needs a positive lock TTL, got %v", c.lockTTL)
	if c.logger == nil {
		c.logger = slog.Default()
	}
}
