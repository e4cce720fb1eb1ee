package tiered

import (
	"time"

	"github.com/herdcache/herd/internal/check"
)

// DefaultNearMaxEntries is the bound of the near tier of a store built
// without [NearMaxEntries] or [NearMaxWeight].
const DefaultNearMaxEntries = 10_000

// DefaultNearTTL is the [NearTTL] of a store built without it.
const DefaultNearTTL = 30 * time.Second

// DefaultWatchTimeout is the [WatchTimeout] of a store built without it.
const DefaultWatchTimeout = 10 * time.Second

// DefaultNearResolution is the resolution of the near tier's clock unless
// [NearCoarseClock] or [NearExactClock] says otherwise.
const DefaultNearResolution = time.Millisecond

type config struct {
	maxEntries   int
	maxWeight    uint64
	weigher      any // func(key string, v T) uint32, checked by New
	nearTTL      time.Duration
	watchTimeout time.Duration
	resolution   time.Duration
	exact        bool
	flushDown    bool
	repairBatch  int
}

// An Option configures a [Store].
type Option func(*config)

// NearMaxEntries bounds the near tier of each instance to about n entries;
// past it, the entries least likely to be used again are evicted (they are
// then read from the far tier again). Default: [DefaultNearMaxEntries].
func NearMaxEntries(n int) Option {
	return func(c *config) { c.maxEntries, c.maxWeight, c.weigher = n, 0, nil }
}

// NearMaxWeight bounds the near tier by the sum of weigh(key, value) over
// its entries instead of by their count, for example by their size in bytes.
// weigh is called once when an entry enters the near tier. Every entry
// weighs at least 1, so that the bound also bounds the number of entries; a
// not-found entry weighs 1. Default: [NearMaxEntries]([DefaultNearMaxEntries]).
func NearMaxWeight[T any](maxWeight uint64, weigh func(key string, v T) uint32) Option {
	return func(c *config) { c.maxEntries, c.maxWeight, c.weigher = 0, maxWeight, weigh }
}

// NearTTL is the longest an instance serves a near copy of an entry without
// asking the far tier again, counted from the start of the far read (or
// write) that gave it the copy (plus up to one tick of the near tier's
// clock, [NearCoarseClock]). It bounds how stale a read can be when the
// change stream stalls without saying so; with a healthy stream, changes
// drop near copies long before. It never changes the entry's own times: a
// near copy also goes at the entry's KeepUntil. Default: [DefaultNearTTL].
func NearTTL(d time.Duration) Option {
	return func(c *config) { c.nearTTL = d }
}

// NearCoarseClock sets the resolution of the clock that a near hit reads:
// while the near tier is read, a goroutine of the store reads the system
// clock once per resolution, and a near hit costs an atomic load instead of
// a clock read. Near copies and the entries' own times then pass up to
// resolution late, never early. The goroutine parks after a few idle ticks.
// Default: [DefaultNearResolution].
func NearCoarseClock(resolution time.Duration) Option {
	return func(c *config) { c.resolution, c.exact = resolution, false }
}

// NearExactClock makes a near hit read the system clock, so that near
// copies and entries pass exactly on time, at the cost of a clock read per
// hit.
func NearExactClock() Option {
	return func(c *config) { c.exact = true }
}

// WatchTimeout is how long [New] waits for the far store's change stream
// to start before it returns an error. Default: [DefaultWatchTimeout].
func WatchTimeout(d time.Duration) Option {
	return func(c *config) { c.watchTimeout = d }
}

// FlushWhenDown empties the near tier whenever the far store's change
// stream is cut (a [store.Change] with Down set) or cannot say what it
// missed (Gap), as a store that prefers strictness to availability does:
// while the far tier is unreachable, every read is a far read that fails,
// and a herd.Cache loads from the source. By default, the near tier serves
// its copies through an outage, each until its [NearTTL], and revalidates
// them when the stream comes back (see the package documentation).
func FlushWhenDown() Option {
	return func(c *config) { c.flushDown = true }
}

// RepairBatch is the number of keys read from the far tier per call when
// the near tier is revalidated after its stream came back without a replay
// (a Gap). Default: [DefaultRepairBatch].
func RepairBatch(n int) Option {
	return func(c *config) { c.repairBatch = n }
}

func newConfig(opts []Option) config {
	cfg := config{
		maxEntries: DefaultNearMaxEntries, nearTTL: DefaultNearTTL, watchTimeout: DefaultWatchTimeout,
		resolution: DefaultNearResolution, repairBatch: DefaultRepairBatch,
	}
	for _, o := range opts {
		o(&cfg)
	}
	check.That(cfg.nearTTL > 0, "tiered", "NearTTL must be positive, got %v", cfg.nearTTL)
	if cfg.exact {
		cfg.resolution = 0
	} else {
		check.Positive("tiered", "NearCoarseClock resolution", cfg.resolution)
	}
	check.Positive("tiered", "RepairBatch", cfg.repairBatch)
	check.That(cfg.watchTimeout > 0, "tiered", "WatchTimeout must be positive, got %v", cfg.watchTimeout)
	return cfg
}
