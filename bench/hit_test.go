package bench

import (
	"context"
	"strconv"
	"sync/atomic"
	"testing"
)

const hotKeys = 1 << 10

func keys(n int) []string {
	k := make([]string, n)
	for i := range k {
		k[i] = "user:" + strconv.Itoa(i)
	}
	return k
}

func constLoad(_ context.Context, key string) (int, error) { return len(key), nil }

// warm returns a cache with every key of ks loaded.
func warm(b *testing.B, im impl, ks []string) cache {
	b.Helper()
	c := im.build(constLoad)
	for _, k := range ks {
		if _, err := c.get(context.Background(), k); err != nil {
			b.Fatal(err)
		}
	}
	b.Cleanup(c.close)
	return c
}

// BenchmarkHit reads keys that are all cached, from one goroutine.
func BenchmarkHit(b *testing.B) {
	ks := keys(hotKeys)
	ctx := context.Background()
	for _, im := range impls {
		b.Run("impl="+im.name, func(b *testing.B) {
			c := warm(b, im, ks)
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				if _, err := c.get(ctx, ks[i&(hotKeys-1)]); err != nil {
					b.Fatal(err)
				}
				i++
			}
		})
	}
}

// BenchmarkHitParallel reads keys that are all cached, from GOMAXPROCS
// goroutines at once.
func BenchmarkHitParallel(b *testing.B) {
	ks := keys(hotKeys)
	ctx := context.Background()
	for _, im := range impls {
		b.Run("impl="+im.name, func(b *testing.B) {
			c := warm(b, im, ks)
			var seed atomic.Uint32
			b.ReportAllocs()
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				i := int(seed.Add(7919))
				for pb.Next() {
					if _, err := c.get(ctx, ks[i&(hotKeys-1)]); err != nil {
						b.Error(err)
						return
					}
					i++
				}
			})
		})
	}
}
