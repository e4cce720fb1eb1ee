package autorefresh

import (
	"log/slog"
	"math"
	"time"

	"golang.org/x/time/rate"

	"github.com/herdcache/herd/internal/check"
)

// An Option configures a [Cache]. [New] applies the options and panics with
// a message naming the option when a value is out of range: options are
// constants of a program, and a wrong one is a programming error.
type Option func(*config)

// config is what the options set. The two options whose types depend on the
// cache's K and V keep their function as given, and New checks its type.
type config struct {
	resyncPeriod time.Duration
	batchSize    int
	parallelism  int
	rateLimit    rate.Limit // 0: no limit
	rateBurst    int
	syncTimeout  time.Duration // 0: twice resyncPeriod
	maxItems     int           // 0: no bound
	syncOnCreate bool
	isTerminal   any // func(V) bool, or nil
	batcher      any // func([]Item[K, V]) [][]Item[K, V], or nil
	logger       *slog.Logger
	observer     Observer
}

// Defaults and bounds of the options.
const (
	DefaultResyncPeriod = time.Minute
	DefaultBatchSize    = 100
	DefaultParallelism  = 1
	// MaxParallelism bounds [Parallelism]: each worker is a goroutine that
	// lives as long as the cache runs.
	MaxParallelism = 10_000
)

// ResyncPeriod sets the time between two cycles. d must be positive.
// Default: [DefaultResyncPeriod], one minute.
func ResyncPeriod(d time.Duration) Option {
	return func(c *config) { c.resyncPeriod = check.Positive("autorefresh", "ResyncPeriod", d) }
}

// BatchSize sets the largest number of items passed to one sync call. n must
// be positive. Default: [DefaultBatchSize], 100.
func BatchSize(n int) Option {
	return func(c *config) { c.batchSize = check.Positive("autorefresh", "BatchSize", n) }
}

// Parallelism sets the largest number of sync calls running at once: the
// number of workers. n must be in [1, MaxParallelism]. Default:
// [DefaultParallelism], 1.
func Parallelism(n int) Option {
	return func(c *config) {
		check.That(n > 0 && n <= MaxParallelism, "autorefresh", "Parallelism must be in [1, %d], got %d", MaxParallelism, n)
		c.parallelism = n
	}
}

// RateLimit sets the largest number of sync calls started per second, across
// all workers, with bursts of burst calls when the limiter has been idle
// (golang.org/x/time/rate). limit must be positive, [rate.Inf] meaning no
// limit; burst must be positive. Default: no limit.
func RateLimit(limit rate.Limit, burst int) Option {
	return func(c *config) {
		check.That(limit > 0, "autorefresh", "RateLimit must be positive (rate.Inf for no limit), got %v", limit)
		check.That(burst > 0, "autorefresh", "RateLimit burst must be positive, got %d", burst)
		c.rateLimit, c.rateBurst = limit, burst
	}
}

// SyncTimeout bounds one sync call: its context ends d after the call
// starts, and a call that has not returned by then no longer holds its items
// (see the package documentation). d must be positive. Default: twice the
// [ResyncPeriod], so that a call may take longer than a period without being
// cut off.
func SyncTimeout(d time.Duration) Option {
	return func(c *config) { c.syncTimeout = check.Positive("autorefresh", "SyncTimeout", d) }
}

// MaxItems bounds the number of items in the set. Creating an item in a full
// set evicts the least recently used item: the one whose last creation,
// [Cache.Get], [Cache.GetOrCreate] or [Cache.Update] is the oldest (syncs do
// not count as use). n must be positive. Default: no bound.
func MaxItems(n int) Option {
	return func(c *config) { c.maxItems = check.Positive("autorefresh", "MaxItems", n) }
}

// SyncOnCreate queues every item that GetOrCreate creates for a sync call
// soon after (in batches and under the same limits as a cycle) instead of
// waiting for the next cycle. Default: new items wait for the next cycle.
func SyncOnCreate() Option {
	return func(c *config) { c.syncOnCreate = true }
}

// IsTerminal sets the function that reports whether a value is final: an
// item whose value is terminal stays in the set (until deleted or evicted)
// but is never synced again. It is called without a lock held, once for
// every value given to GetOrCreate or Update (on the caller's goroutine, to
// which a panic propagates) and for every Update result's value (on a
// worker, where a panic counts as a panic of the sync call). f must not be
// nil, and V must be the cache's value type; [New] panics otherwise.
// Default: no value is terminal.
func IsTerminal[V any](f func(V) bool) Option {
	return func(c *config) {
		check.That(f != nil, "autorefresh", "IsTerminal must not be nil")
		c.isTerminal = f
	}
}

// Batcher sets the function that groups the items of a cut into batches, for
// a source that wants related items together. It is called without a lock
// held, from the cache's own goroutine. Whatever it returns, every item is
// synced once: a batch larger than BatchSize is split, an item it repeats
// is synced once, an item it invents is dropped, and items it leaves out
// are synced in batches of their own. A Batcher that panics is recovered,
// counted in [Stats.CallbackPanics] and logged, and the default is used for
// that cut. f must not be nil, and K and V must be the cache's; [New]
// panics otherwise. Default: batches of BatchSize items in no particular
// order.
func Batcher[K comparable, V any](f func(items []Item[K, V]) [][]Item[K, V]) Option {
	return func(c *config) {
		check.That(f != nil, "autorefresh", "Batcher must not be nil")
		c.batcher = f
	}
}

// WithLogger sets the logger of sync errors (warning), recovered panics with
// their stack (error) and results that could not be used (debug), each kind
// at most once every 10 seconds with the number left out in between (every
// one is counted in [Stats]). Nothing is ever printed to stdout. Default:
// [slog.Default] as it is when New is called; a nil logger keeps the
// default.
func WithLogger(l *slog.Logger) Option {
	return func(c *config) {
		if l != nil {
			c.logger = l
		}
	}
}

// WithObserver sets an [Observer] that receives an [Event] for each cycle,
// sync call, eviction and discard, without a lock held. Default: none;
// [Cache.Stats] has the same counts.
func WithObserver(o Observer) Option {
	return func(c *config) { c.observer = o }
}

// newConfig applies opts over the defaults.
func newConfig(opts []Option) config {
	c := config{
		resyncPeriod: DefaultResyncPeriod,
		batchSize:    DefaultBatchSize,
		parallelism:  DefaultParallelism,
		logger:       slog.Default(),
	}
	for _, opt := range opts {
		opt(&c)
	}
	if c.syncTimeout == 0 {
		c.syncTimeout = math.MaxInt64 // a period of more than 146 years
		if c.resyncPeriod <= math.MaxInt64/2 {
			c.syncTimeout = 2 * c.resyncPeriod
		}
	}
	return c
}
