package herdotel_test

import (
	"context"
	"strconv"
	"testing"

	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"

	"github.com/herdcache/herd"
	"github.com/herdcache/herd/herdotel"
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
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(sdkmetric.NewManualReader()))
	defer func() { _ = mp.Shutdown(ctx) }()
	tp := sdktrace.NewTracerProvider()
	defer func() { _ = tp.Shutdown(ctx) }()
	metrics, err := herdotel.NewMetrics("users", herdotel.WithMeterProvider(mp))
	if err != nil {
		b.Fatal(err)
	}
	defer metrics.Close(ctx)
	for _, bc := range []struct {
		name string
		opts []herd.Option
	}{
		{"observer=none", nil},
		{"observer=herdotel", []herd.Option{herd.WithObserver(herd.Observers(metrics, herdotel.NewTracer("users", herdotel.WithTracerProvider(tp))))}},
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

// BenchmarkObserveHit measures what the Metrics and the Tracer add to a
// hit: their Observe of the hit event, through herd.Observers.
func BenchmarkObserveHit(b *testing.B) {
	metrics, err := herdotel.NewMetrics("users")
	if err != nil {
		b.Fatal(err)
	}
	defer metrics.Close(context.Background())
	o := herd.Observers(metrics, herdotel.NewTracer("users"))
	e := herd.Event{Kind: herd.EventHit, Key: "user:1"}
	b.ReportAllocs()
	for b.Loop() {
		o.Observe(e)
	}
}
