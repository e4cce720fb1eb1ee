package sim

import (
	"context"
	"log/slog"
	"strconv"

	"github.com/herdcache/herd"
	"github.com/herdcache/herd/store"
	"github.com/herdcache/herd/store/memory"
)

// A setup is one way of reading the source, with its own source and
// recorder, so that the setups of a run do not disturb one another.
type setup struct {
	kind Kind
	rec  *recorder
	src  *source
	// read answers one request of client for key.
	read func(ctx context.Context, client int, key string) (answer, error)

	caches      []*herd.Cache[string] // the instances of a herd setup
	closeStores []func()              // release their stores, in order
}

func (e *engine) newSetup(ctx context.Context, k Kind) (*setup, error) {
	s := &setup{kind: k, rec: newRecorder(e)}
	s.src = newSource(e, s.rec)
	switch k {
	case NoCache:
		s.read = func(ctx context.Context, _ int, key string) (answer, error) {
			_, err := s.src.load(ctx, key)
			return answer{}, err
		}
	case PlainTTL:
		// Each instance, a process of its own, has its own map.
		maps := make([]*plainCache, e.cfg.Instances)
		for i := range maps {
			maps[i] = newPlainCache(e.cfg.TTL)
		}
		s.read = func(ctx context.Context, client int, key string) (answer, error) {
			_, hit, err := maps[client%len(maps)].get(ctx, key, s.src.load)
			return answer{hit: hit}, err
		}
	case Herd, HerdSWR:
		if err := s.newHerd(ctx, e); err != nil {
			return nil, err
		}
	}
	return s, nil
}

// newHerd builds the instances of a herd setup: caches over one shared
// store, with a shared lock when there are several, as processes sharing a
// Redis would be. The store is in memory unless the Config gives one; then
// each instance opens it through a connection of its own.
func (s *setup) newHerd(ctx context.Context, e *engine) error {
	c := e.cfg
	opts := []herd.Option{herd.WithLogger(slog.New(slog.DiscardHandler))}
	// A lease outlasts any load: a load runs until the source answers or,
	// with a load timeout, until that.
	lockTTL := 2 * max(c.OutageHang, maxLatencyFactor*c.Latency)
	switch s.kind {
	case HerdSWR:
		swr := c.SWR()
		opts = append(opts, herd.TTL(swr.TTL), herd.RefreshAfter(swr.RefreshAfter),
			herd.StaleIfError(swr.StaleIfError), herd.LoadTimeout(swr.LoadTimeout))
		lockTTL = 2 * swr.LoadTimeout
	default:
		opts = append(opts, herd.TTL(c.TTL))
	}
	var mem SharedStore
	if c.Store == nil {
		m := memory.New[string](memory.MaxEntries(c.Keys + 1000))
		mem = SharedStore{Store: m, Locker: m, Close: func() { _ = m.Close(context.Background()) }}
		s.closeStores = append(s.closeStores, mem.Close)
	}
	name := map[Kind]string{Herd: "ttl", HerdSWR: "swr"}[s.kind]
	newCache := func(_ string, s store.Store[string], opts ...herd.Option) *herd.Cache[string] {
		return herd.New(s, opts...)
	}
	if c.NewCache != nil {
		newCache = c.NewCache
	}
	for i := range c.Instances {
		shared := mem
		if c.Store != nil {
			var err error
			if shared, err = c.Store(ctx, name); err != nil {
				s.close()
				return err
			}
			s.closeStores = append(s.closeStores, shared.Close)
		}
		o := opts
		if c.Instances > 1 {
			o = append(o[:len(o):len(o)], herd.WithLocker(shared.Locker, lockTTL))
		}
		s.caches = append(s.caches, newCache(name+"/"+strconv.Itoa(i), fleetStore{shared.Store}, o...))
	}
	load := herd.Loader[string](s.src.load)
	s.read = func(ctx context.Context, client int, key string) (answer, error) {
		r, err := s.caches[client%len(s.caches)].Fetch(ctx, key, load)
		if err != nil {
			return answer{}, err
		}
		return answer{
			hit:   r.Status != herd.StatusLoaded,
			stale: r.Status == herd.StatusStale || r.Status == herd.StatusStaleOnError,
		}, nil
	}
	return nil
}

// fleetStore is the store that the instances of a herd setup share. It has
// no Close method, so that closing one instance does not close the store
// under the others; the setup releases the store itself.
type fleetStore struct {
	store.Store[string]
}

// close closes the setup's caches, waiting for their background refreshes,
// then their stores.
func (s *setup) close() {
	ctx := context.Background()
	for _, c := range s.caches {
		// Close waits for refreshes in flight, which the source ends
		// within its latency or its outage hang.
		_ = c.Close(ctx)
	}
	for _, release := range s.closeStores {
		release()
	}
}

// report returns the setup's numbers.
func (s *setup) report() SetupReport {
	r := s.rec.report(s.kind)
	if len(s.caches) > 0 {
		var sum herd.Stats
		for _, c := range s.caches {
			sum = addStats(sum, c.Stats())
		}
		r.HerdStats = &sum
	}
	return r
}

func addStats(a, b herd.Stats) herd.Stats {
	return herd.Stats{
		Hits: a.Hits + b.Hits, StaleHits: a.StaleHits + b.StaleHits, Misses: a.Misses + b.Misses,
		NegativeHits: a.NegativeHits + b.NegativeHits, SharedWaits: a.SharedWaits + b.SharedWaits,
		LockWaits: a.LockWaits + b.LockWaits, Loads: a.Loads + b.Loads, LoadErrors: a.LoadErrors + b.LoadErrors,
		LoadTime: a.LoadTime + b.LoadTime, RefreshesQueued: a.RefreshesQueued + b.RefreshesQueued,
		RefreshesDropped: a.RefreshesDropped + b.RefreshesDropped, RefreshesFailed: a.RefreshesFailed + b.RefreshesFailed,
		StaleOnError: a.StaleOnError + b.StaleOnError, StoreErrors: a.StoreErrors + b.StoreErrors,
	}
}
