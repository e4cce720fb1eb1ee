package bench

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/herdcache/herd"
	"github.com/herdcache/herd/store"
	"github.com/herdcache/herd/store/memory"
	"github.com/herdcache/herd/store/tiered"
)

// tieredStores builds the stores a hit is compared on: a memory store, and
// a two-level store's near tier over a memory far store.
var tieredStores = []struct {
	name  string
	build func(b *testing.B) store.Store[int]
}{
	{"memory", func(b *testing.B) store.Store[int] {
		return memory.New[int](memory.MaxEntries(2 * hotKeys))
	}},
	{"tiered", func(b *testing.B) store.Store[int] {
		far := memory.New[int]()
		b.Cleanup(func() { _ = far.Close(context.Background()) })
		s, err := tiered.NewVersioned[int](far, tiered.NearMaxEntries(2*hotKeys), tiered.NearTTL(time.Hour))
		if err != nil {
			b.Fatal(err)
		}
		return s
	}},
}

// warmTiered returns a herd.Cache over s with every key of ks loaded.
func warmTiered(b *testing.B, s store.Store[int], ks []string) *herd.Cache[int] {
	b.Helper()
	c := herd.New[int](s, herd.TTL(time.Hour))
	b.Cleanup(func() { _ = c.Close(context.Background()) })
	ctx := context.Background()
	for _, k := range ks {
		if _, err := c.Get(ctx, k, constLoad); err != nil {
			b.Fatal(err)
		}
	}
	// Let the write-backs and their changes settle: every key is then a
	// hit of the near tier.
	for _, k := range ks {
		if _, err := c.Get(ctx, k, constLoad); err != nil {
			b.Fatal(err)
		}
	}
	return c
}

// BenchmarkTieredHit compares a herd.Cache hit on a two-level store's near
// tier with a hit on a memory store, from one goroutine and from
// GOMAXPROCS goroutines (the target: at most 1.1x, no allocation).
//
//	go test -run '^$' -bench TieredHit -benchmem -count 6 | tee tiered.txt
//	benchstat -col /store tiered.txt
func BenchmarkTieredHit(b *testing.B) {
	ks := keys(hotKeys)
	ctx := context.Background()
	for _, st := range tieredStores {
		b.Run("store="+st.name, func(b *testing.B) {
			c := warmTiered(b, st.build(b), ks)
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				if _, err := c.Get(ctx, ks[i&(hotKeys-1)], constLoad); err != nil {
					b.Fatal(err)
				}
				i++
			}
		})
	}
}

// BenchmarkTieredHitParallel is BenchmarkTieredHit from GOMAXPROCS
// goroutines at once.
func BenchmarkTieredHitParallel(b *testing.B) {
	ks := keys(hotKeys)
	ctx := context.Background()
	for _, st := range tieredStores {
		b.Run("store="+st.name, func(b *testing.B) {
			c := warmTiered(b, st.build(b), ks)
			var seed atomic.Uint32
			b.ReportAllocs()
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				i := int(seed.Add(7919))
				for pb.Next() {
					if _, err := c.Get(ctx, ks[i&(hotKeys-1)], constLoad); err != nil {
						b.Error(err)
						return
					}
					i++
				}
			})
		})
	}
}
