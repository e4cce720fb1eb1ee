package bench

import (
	"context"
	"fmt"
	"time"

	lru "github.com/hashicorp/golang-lru/v2/expirable"
	"github.com/jellydator/ttlcache/v3"
	"github.com/maypok86/otter/v2"
	"github.com/viccon/sturdyc"
	"golang.org/x/sync/singleflight"

	"github.com/herdcache/herd"
	"github.com/herdcache/herd/store/memory"
)

// A cache is the one operation every peer offers: read key, loading it with
// load on a miss, with concurrent misses of a key coalesced into one load.
type cache interface {
	get(ctx context.Context, key string) (int, error)
	close()
}

type loadFunc func(ctx context.Context, key string) (int, error)

const (
	ttl      = 10 * time.Minute
	capacity = 1 << 20
)

type impl struct {
	name string
	// build returns a cache over load holding up to capacity entries.
	build func(load loadFunc) cache
}

var impls = []impl{
	{"herd", newHerd},
	{"herd-exact", newHerdExact},
	{"otter", newOtter},
	{"sturdyc", newSturdyc},
	{"ttlcache", newTTLCache},
	{"lru-singleflight", newLRU},
}

// herd

type herdCache struct {
	c    *herd.Cache[int]
	load herd.Loader[int]
}

func newHerd(load loadFunc) cache {
	return &herdCache{
		c:    herd.New(memory.New[int](memory.MaxEntries(capacity)), herd.TTL(ttl)),
		load: herd.Loader[int](load),
	}
}

// newHerdExact is herd over a memory store that reads the system clock on
// every hit (memory.ExactClock) instead of its default coarse clock.
func newHerdExact(load loadFunc) cache {
	return &herdCache{
		c:    herd.New(memory.New[int](memory.MaxEntries(capacity), memory.ExactClock()), herd.TTL(ttl)),
		load: herd.Loader[int](load),
	}
}

func (h *herdCache) get(ctx context.Context, key string) (int, error) {
	return h.c.Get(ctx, key, h.load)
}

func (h *herdCache) close() { _ = h.c.Close(context.Background()) }

// otter, with its own loader and per-entry expiry

type otterCache struct {
	c      *otter.Cache[string, int]
	loader otter.Loader[string, int]
}

func newOtter(load loadFunc) cache {
	c := otter.Must(&otter.Options[string, int]{
		MaximumSize:      capacity,
		ExpiryCalculator: otter.ExpiryWriting[string, int](ttl),
	})
	return &otterCache{c: c, loader: otter.LoaderFunc[string, int](load)}
}

func (o *otterCache) get(ctx context.Context, key string) (int, error) {
	return o.c.Get(ctx, key, o.loader)
}
func (o *otterCache) close() { o.c.StopAllGoroutines() }

// sturdyc

type sturdycCache struct {
	c    *sturdyc.Client[int]
	load sturdyc.FetchFn[int]
}

func newSturdyc(load loadFunc) cache {
	c := sturdyc.New[int](capacity, 64, ttl, 10, sturdyc.WithNoContinuousEvictions())
	return &sturdycCache{c: c, load: func(ctx context.Context) (int, error) {
		key, _ := ctx.Value(keyInContext{}).(string)
		return load(ctx, key)
	}}
}

// keyInContext carries the key to sturdyc's fetch function, whose signature
// has no key; every closure-free peer gets the same treatment.
type keyInContext struct{}

func (s *sturdycCache) get(ctx context.Context, key string) (int, error) {
	return s.c.GetOrFetch(context.WithValue(ctx, keyInContext{}, key), key, s.load)
}
func (s *sturdycCache) close() {}

// ttlcache, with a suppressed (singleflight) loader

type ttlCache struct{ c *ttlcache.Cache[string, int] }

func newTTLCache(load loadFunc) cache {
	var c *ttlcache.Cache[string, int]
	loader := ttlcache.NewSuppressedLoader[string, int](ttlcache.LoaderFunc[string, int](
		func(c *ttlcache.Cache[string, int], key string) *ttlcache.Item[string, int] {
			v, err := load(context.Background(), key)
			if err != nil {
				return nil
			}
			return c.Set(key, v, ttlcache.DefaultTTL)
		}), nil)
	c = ttlcache.New[string, int](
		ttlcache.WithTTL[string, int](ttl),
		ttlcache.WithCapacity[string, int](capacity),
		ttlcache.WithLoader[string, int](loader),
		ttlcache.WithDisableTouchOnHit[string, int](),
	)
	return &ttlCache{c: c}
}

func (t *ttlCache) get(_ context.Context, key string) (int, error) {
	item := t.c.Get(key)
	if item == nil {
		return 0, fmt.Errorf("ttlcache: no value for %q", key)
	}
	return item.Value(), nil
}
func (t *ttlCache) close() {}

// golang-lru's expirable LRU with x/sync's singleflight: what people write
// by hand.

type lruCache struct {
	c    *lru.LRU[string, int]
	g    singleflight.Group
	load loadFunc
}

func newLRU(load loadFunc) cache {
	return &lruCache{c: lru.NewLRU[string, int](capacity, nil, ttl), load: load}
}

func (l *lruCache) get(ctx context.Context, key string) (int, error) {
	if v, ok := l.c.Get(key); ok {
		return v, nil
	}
	v, err, _ := l.g.Do(key, func() (any, error) {
		v, err := l.load(ctx, key)
		if err == nil {
			l.c.Add(key, v)
		}
		return v, err
	})
	if err != nil {
		return 0, err
	}
	return v.(int), nil
}
func (l *lruCache) close() {}
