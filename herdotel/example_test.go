package herdotel_test

import (
	"context"
	"fmt"

	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/herdcache/herd"
	"github.com/herdcache/herd/autorefresh"
	"github.com/herdcache/herd/herdotel"
	"github.com/herdcache/herd/store/memory"
)

func ExampleNewMetrics() {
	ctx := context.Background()
	reader := sdkmetric.NewManualReader() // in a service: a periodic reader and an exporter
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))
	defer func() { _ = mp.Shutdown(ctx) }()

	m, err := herdotel.NewMetrics("users", herdotel.WithMeterProvider(mp))
	if err != nil {
		panic(err)
	}
	defer m.Close(ctx)
	users := herd.New(memory.New[string](), herd.WithObserver(m)) // the load-latency histogram
	defer users.Close(ctx)
	m.Watch(users) // every Stats counter, read at each collection

	_ = users.Set(ctx, "user:1", "Ada")
	load := func(ctx context.Context, id string) (string, error) { return "Grace", nil }
	_, _ = users.Get(ctx, "user:1", load) // a hit
	_, _ = users.Get(ctx, "user:2", load) // a miss and a load

	var rm metricdata.ResourceMetrics
	_ = reader.Collect(ctx, &rm)
	for _, m := range rm.ScopeMetrics[0].Metrics {
		switch d := m.Data.(type) {
		case metricdata.Sum[int64]:
			if m.Name == "herd.cache.hits" || m.Name == "herd.cache.misses" || m.Name == "herd.cache.loads" {
				name, _ := d.DataPoints[0].Attributes.Value(herdotel.CacheNameKey)
				fmt.Printf("%s{%s=%s} %d\n", m.Name, herdotel.CacheNameKey, name.AsString(), d.DataPoints[0].Value)
			}
		case metricdata.Histogram[float64]:
			for _, dp := range d.DataPoints {
				result, _ := dp.Attributes.Value(herdotel.LoadResultKey)
				fmt.Printf("%s{%s=%s} count %d\n", m.Name, herdotel.LoadResultKey, result.AsString(), dp.Count)
			}
		}
	}
	// Unordered output:
	// herd.cache.load.duration{herd.load.result=ok} count 1
	// herd.cache.hits{herd.cache.name=users} 1
	// herd.cache.misses{herd.cache.name=users} 1
	// herd.cache.loads{herd.cache.name=users} 1
}

func ExampleTrace() {
	ctx := context.Background()
	exp := tracetest.NewInMemoryExporter() // in a service: an OTLP exporter
	tp := sdktrace.NewTracerProvider(sdktrace.WithSyncer(exp))
	defer func() { _ = tp.Shutdown(ctx) }()

	t := herdotel.NewTracer("users", herdotel.WithTracerProvider(tp))
	users := herd.New(memory.New[string](), herd.WithObserver(t)) // stale-on-error events
	defer users.Close(ctx)
	loadUser := herdotel.Trace(t, func(ctx context.Context, id string) (string, error) {
		return "Ada", nil // a database query, traced as a child of herd.load
	})

	ctx, request := tp.Tracer("app").Start(ctx, "GET /users/42")
	u, _ := users.Get(ctx, "user:42", loadUser)
	request.End()

	fmt.Println(u)
	for _, s := range exp.GetSpans() {
		fmt.Printf("%s, child of the request: %v\n", s.Name, s.Parent.SpanID() == request.SpanContext().SpanID())
	}
	// Output:
	// Ada
	// herd.load, child of the request: true
	// GET /users/42, child of the request: false
}

func ExampleNewAutorefreshMetrics() {
	ctx := context.Background()
	reader := sdkmetric.NewManualReader()
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))
	defer func() { _ = mp.Shutdown(ctx) }()

	sync := func(ctx context.Context, batch []autorefresh.Item[string, string]) ([]autorefresh.Result[string, string], error) {
		return nil, nil // every item unchanged
	}
	jobs := autorefresh.New(sync)
	defer jobs.Close(ctx)
	reg, err := herdotel.NewAutorefreshMetrics("jobs", jobs, herdotel.WithMeterProvider(mp))
	if err != nil {
		panic(err)
	}
	defer func() { _ = reg.Unregister() }()
	_, _, _ = jobs.GetOrCreate("job:1", "queued")

	var rm metricdata.ResourceMetrics
	_ = reader.Collect(ctx, &rm)
	for _, m := range rm.ScopeMetrics[0].Metrics {
		switch d := m.Data.(type) {
		case metricdata.Gauge[int64]:
			if m.Name == "herd.autorefresh.items" {
				fmt.Println(m.Name, d.DataPoints[0].Value)
			}
		case metricdata.Sum[int64]:
			if m.Name == "herd.autorefresh.created" {
				fmt.Println(m.Name, d.DataPoints[0].Value)
			}
		}
	}
	// Unordered output:
	// herd.autorefresh.items 1
	// herd.autorefresh.created 1
}
