// Package memory is herd's bounded in-process store, on
// github.com/maypok86/otter/v2: bounded by entry count or by weight, each
// entry dropped at its KeepUntil.
//
// A hit takes no lock and allocates nothing. The context arguments are
// accepted for the [store.Store] interface and ignored: no method blocks.
package memory

import (
	"context"
	"fmt"
	"math"
	"time"

	"github.com/maypok86/otter/v2"

	"github.com/herdcache/herd/store"
)

// DefaultMaxEntries is the bound of a store built without [MaxEntries] or
// [MaxWeight].
const DefaultMaxEntries = 10_000

// A Store is a bounded in-memory [store.Store]. Build it with [New]; its
// methods are safe for concurrent use.
type Store[T any] struct {
	// Entries are held by pointer: otter copies its values on every read,
	// and a pointer is cheaper to copy than an Entry of four times.
	c     *otter.Cache[string, *store.Entry[T]]
	clock *otter.CoarseClock // nil unless CoarseClock was given
}

var (
	_ store.Store[int]        = (*Store[int])(nil)
	_ store.SharedGetter[int] = (*Store[int])(nil)
)

type config struct {
	coarse     time.Duration
	maxEntries int
	maxWeight  uint64
	weigher    any // func(key string, v T) uint32, checked by New
}

// An Option configures a [Store].
type Option func(*config)

// MaxEntries bounds the store to about n entries; past it, the entries least
// likely to be used again are evicted. Default: [DefaultMaxEntries].
func MaxEntries(n int) Option {
	return func(c *config) { c.maxEntries, c.maxWeight, c.weigher = n, 0, nil }
}

// MaxWeight bounds the store by the sum of weigh(key, value) over its entries
// instead of by their count, for example by their size in bytes. weigh is
// called once when an entry is stored; a not-found entry weighs 1.
func MaxWeight[T any](maxWeight uint64, weigh func(key string, v T) uint32) Option {
	return func(c *config) { c.maxEntries, c.maxWeight, c.weigher = 0, maxWeight, weigh }
}

// CoarseClock makes the store, and a herd.Cache over it, read the time from a
// clock that a goroutine of the store advances every resolution, instead of
// reading the system clock on every hit. A hit then costs no clock read at
// all, which matters where reading the clock is slow (many virtual
// machines); entries then expire and turn stale up to resolution late.
// [Store.Close] stops the goroutine. Default: the system clock on every read.
func CoarseClock(resolution time.Duration) Option {
	return func(c *config) { c.coarse = resolution }
}

// New returns an empty store. It panics on an invalid option (a bound that
// is not positive, or a [MaxWeight] weigher of another value type), as these
// are programming errors.
//
// The store runs one goroutine for periodic clean-up of expired entries;
// [Store.Close] stops it, and herd.Cache.Close calls Close.
func New[T any](opts ...Option) *Store[T] {
	cfg := config{maxEntries: DefaultMaxEntries}
	for _, o := range opts {
		o(&cfg)
	}
	// A "writing" calculator is computed on create and update only; otter
	// skips the read hook for it, which keeps the hit path short.
	o := &otter.Options[string, *store.Entry[T]]{
		ExpiryCalculator: otter.ExpiryWritingFunc(func(e otter.Entry[string, *store.Entry[T]]) time.Duration {
			return untilKeepUntil(e.Value, e.SnapshotAtNano)
		}),
	}
	switch {
	case cfg.weigher != nil:
		weigh, ok := cfg.weigher.(func(string, T) uint32)
		if !ok {
			panic(fmt.Sprintf("memory: MaxWeight's weigher is a %T, want a func(string, %T) uint32", cfg.weigher, *new(T)))
		}
		if cfg.maxWeight == 0 {
			panic("memory: MaxWeight must be positive")
		}
		o.MaximumWeight = cfg.maxWeight
		o.Weigher = func(key string, e *store.Entry[T]) uint32 {
			if e.NotFound {
				return 1
			}
			return weigh(key, e.Value)
		}
	case cfg.maxEntries <= 0:
		panic(fmt.Sprintf("memory: MaxEntries must be positive, got %d", cfg.maxEntries))
	default:
		o.MaximumSize = cfg.maxEntries
	}
	s := &Store[T]{}
	if cfg.coarse < 0 {
		panic(fmt.Sprintf("memory: CoarseClock resolution must be positive, got %v", cfg.coarse))
	}
	if cfg.coarse > 0 {
		s.clock = otter.NewCoarseClock(cfg.coarse)
		o.Clock = s.clock
	}
	c, err := otter.New(o)
	if err != nil {
		panic("memory: " + err.Error())
	}
	s.c = c
	return s
}

// Get returns the entry of key, or false when there is none or its KeepUntil
// has passed. It never returns an error.
func (s *Store[T]) Get(_ context.Context, key string) (store.Entry[T], bool, error) {
	e, ok := s.c.GetIfPresent(key)
	if !ok {
		return store.Entry[T]{}, false, nil
	}
	return *e, true, nil
}

// GetShared is [Store.Get] that lends the store's own entry instead of a
// copy, with the time at which it was found live, from the same clock read
// that checked its KeepUntil. The entry must not be modified.
func (s *Store[T]) GetShared(_ context.Context, key string) (*store.Entry[T], time.Time, bool, error) {
	e, ok := s.c.GetEntry(key)
	if !ok {
		return nil, time.Time{}, false, nil
	}
	return e.Value, time.Unix(0, e.SnapshotAtNano), true, nil
}

// Set stores e under key until e.KeepUntil. An entry whose KeepUntil has
// already passed removes the key instead.
func (s *Store[T]) Set(_ context.Context, key string, e store.Entry[T]) error {
	if !e.Live(s.now()) {
		s.c.Invalidate(key)
		return nil
	}
	s.c.Set(key, &e)
	return nil
}

// Delete removes the entry of key, if any.
func (s *Store[T]) Delete(_ context.Context, key string) error {
	s.c.Invalidate(key)
	return nil
}

// Len returns the number of entries, after the evictions and expirations that
// are due. It costs a maintenance pass of the cache: use it for diagnostics
// and tests, not on a hot path.
func (s *Store[T]) Len() int {
	s.c.CleanUp()
	return s.c.EstimatedSize()
}

// Close stops the store's clean-up goroutine, and its clock's if it has a
// [CoarseClock]. The store still works after Close; expired entries are then
// dropped as they are read or evicted (with a coarse clock, time stops).
func (s *Store[T]) Close(context.Context) error {
	s.c.StopAllGoroutines()
	if s.clock != nil {
		s.clock.Stop()
	}
	return nil
}

func (s *Store[T]) now() time.Time {
	if s.clock != nil {
		return time.Unix(0, s.clock.NowNano())
	}
	return time.Now()
}

// untilKeepUntil is the time from now (otter's clock, in Unix nanoseconds)
// to the entry's KeepUntil.
func untilKeepUntil[T any](e *store.Entry[T], now int64) time.Duration {
	if e.KeepUntil.IsZero() {
		return math.MaxInt64 // otter's "never"
	}
	return e.KeepUntil.Sub(time.Unix(0, now))
}
