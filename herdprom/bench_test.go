package herdprom_test

import (
	"context"
	"strconv"
	"testing"

	"github.com/herdcache/herd"
	"github.com/herdcache/herd/herdprom"
	"github.com/herdcache/herd/store/memory"
)

// BenchmarkHit measures a hit on a cache without an observer and with a
// Collector as its observer.
func BenchmarkHit(b *testing.B) {
	const n = 1 << 10
	keys := make([]string, n)
	for i := range keys {
		keys[i] = "user:" + strconv.Itoa(i)
	}
	ctx := context.Background()
	load := func(context.Context, string) (string, error) { return "v", nil }
	for _, bc := range []struct {
		name string
		opts []herd.Option
	}{
		{"observer=none", nil},
		{"observer=herdprom", []herd.Option{herd.WithObserver(herdprom.NewCollector("users"))}},
	} {
		b.Run(bc.name, func(b *testing.B) {
			c := herd.New(memory.New[string](memory.MaxEntries(2*n)), bc.opts...)
			b.Cleanup(func() { _ = c.Close(ctx) })
			for _, k := range keys {
				if _, err := c.Get(ctx, k, load); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				if _, err := c.Get(ctx, keys[i&(n-1)], load); err != nil {
					b.Fatal(err)
				}
				i++
			}
		})
	}
}

// BenchmarkObserveHit measures what the Collector adds to a hit: its
// Observe of the hit event.
func BenchmarkObserveHit(b *testing.B) {
	var o herd.Observer = herdprom.NewCollector("users")
	e := herd.Event{Kind: herd.EventHit, Key: "user:1"}
	b.ReportAllocs()
	for b.Loop() {
		o.Observe(e)
	}
}
