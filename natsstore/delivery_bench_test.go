package natsstore_test

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/herdcache/herd/store"
	"github.com/herdcache/herd/store/tiered"
)

// BenchmarkWatchDelivery measures the time from the start of a Set through
// one store to the call of another store's watch function with that key,
// one write at a time, on loopback. It reports the Set's own round trip
// and the delivery's percentiles.
func BenchmarkWatchDelivery(b *testing.B) {
	srv := startServer(b)
	ctx := context.Background()
	_, js1 := connect(b, srv.url())
	_, js2 := connect(b, srv.url())
	writer := newStore[string](b, js1, "delivery")
	watched := newStore[string](b, js2, "delivery")
	got := make(chan time.Time, 1)
	w, err := watched.Watch(ctx, func(c store.Change) {
		if c.Key == "k" {
			got <- time.Now()
		}
	})
	if err != nil {
		b.Fatal(err)
	}
	defer w.Close()
	e := store.Entry[string]{Value: "v"}
	var set, delivery []time.Duration
	for b.Loop() {
		start := time.Now()
		if err := writer.Set(ctx, "k", e); err != nil {
			b.Fatal(err)
		}
		set = append(set, time.Since(start))
		at := <-got
		delivery = append(delivery, at.Sub(start))
	}
	report(b, "set", set)
	report(b, "delivery", delivery)
}

func report(b *testing.B, name string, ds []time.Duration) {
	slices.Sort(ds)
	pct := func(p float64) time.Duration { return ds[int(float64(len(ds)-1)*p)] }
	b.ReportMetric(float64(pct(0.5).Microseconds()), name+"-p50-µs")
	b.ReportMetric(float64(pct(0.99).Microseconds()), name+"-p99-µs")
}

// BenchmarkNearDelivery measures the time from the start of a Set through
// one two-level store until another's Get no longer returns the old value,
// polled every 100µs.
func BenchmarkNearDelivery(b *testing.B) {
	srv := startServer(b)
	ctx := context.Background()
	_, js1 := connect(b, srv.url())
	_, js2 := connect(b, srv.url())
	writer, err := tiered.NewVersioned[int64](newStore[int64](b, js1, "near"), tiered.NearTTL(time.Hour))
	if err != nil {
		b.Fatal(err)
	}
	defer writer.Close(ctx)
	reader, err := tiered.NewVersioned[int64](newStore[int64](b, js2, "near"), tiered.NearTTL(time.Hour))
	if err != nil {
		b.Fatal(err)
	}
	defer reader.Close(ctx)
	var delivery []time.Duration
	n := int64(0)
	for b.Loop() {
		n++
		if err := writer.Set(ctx, "k", store.Entry[int64]{Value: n}); err != nil {
			b.Fatal(err)
		}
		for {
			if e, ok, _ := reader.Get(ctx, "k"); ok && e.Value == n {
				break
			}
		}
		start := time.Now()
		if err := writer.Set(ctx, "k", store.Entry[int64]{Value: -n}); err != nil {
			b.Fatal(err)
		}
		for {
			if e, ok, _ := reader.Get(ctx, "k"); ok && e.Value == -n {
				break
			}
			time.Sleep(100 * time.Microsecond)
		}
		delivery = append(delivery, time.Since(start))
	}
	report(b, "near", delivery)
}
