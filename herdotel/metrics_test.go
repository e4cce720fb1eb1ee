package herdotel_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"reflect"
	"slices"
	"testing"
	"testing/synctest"
	"time"

	"go.opentelemetry.io/otel/attribute"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	"go.uber.org/goleak"

	"github.com/herdcache/herd"
	"github.com/herdcache/herd/autorefresh"
	"github.com/herdcache/herd/herdotel"
	"github.com/herdcache/herd/store/memory"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

var (
	errDown = errors.New("source down")
	discard = slog.New(slog.NewTextHandler(io.Discard, nil))
)

// loader returns a loader that takes d and then returns v, or err.
func loader(d time.Duration, v string, err error) herd.Loader[string] {
	return func(context.Context, string) (string, error) {
		<-time.After(d) // a source that takes d, in the bubble's time
		return v, err
	}
}

func newCache(t *testing.T, opts ...herd.Option) *herd.Cache[string] {
	t.Helper()
	c := herd.New(memory.New[string](), append([]herd.Option{
		herd.TTL(time.Minute), herd.RefreshAfter(30 * time.Second), herd.StaleIfError(time.Hour),
		herd.NegativeTTL(time.Minute), herd.WithLogger(discard),
	}, opts...)...)
	t.Cleanup(func() {
		if err := c.Close(context.Background()); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return c
}

// script runs a sequence of hits, misses, loads and failures on c, in a
// synctest bubble; the loads take 125ms when they succeed, 62.5ms when they
// fail and 31.25ms when the key does not exist. wrap wraps each loader.
func script(t *testing.T, c *herd.Cache[string], wrap func(herd.Loader[string]) herd.Loader[string]) {
	t.Helper()
	ctx := context.Background()
	ok := wrap(loader(125*time.Millisecond, "v", nil))
	fail := wrap(loader(62500*time.Microsecond, "", errDown))
	absent := wrap(loader(31250*time.Microsecond, "", herd.ErrNotFound))
	get := func(key string, load herd.Loader[string], wantErr error) {
		t.Helper()
		if _, err := c.Get(ctx, key, load); !errors.Is(err, wantErr) {
			t.Fatalf("Get(%q) = %v, want %v", key, err, wantErr)
		}
		synctest.Wait() // the load's store write lands
	}
	get("a", ok, nil)                   // miss, load
	get("a", ok, nil)                   // hit
	get("a", ok, nil)                   // hit
	get("nf", absent, herd.ErrNotFound) // miss, load: not found
	get("nf", absent, herd.ErrNotFound) // negative hit
	get("bad", fail, errDown)           // miss, load error
	get("b", ok, nil)                   // miss, load
	time.Sleep(40 * time.Second)        // a and b are stale
	get("a", ok, nil)                   // stale hit, refresh queued and loaded
	get("b", fail, nil)                 // stale hit, refresh queued and failed
	time.Sleep(2 * time.Minute)         // a expired, kept for StaleIfError
	get("a", fail, nil)                 // miss, load error, stale on error
}

func noWrap(l herd.Loader[string]) herd.Loader[string] { return l }

// collect reads every metric of the reader, by name.
func collect(t *testing.T, r *sdkmetric.ManualReader) map[string]metricdata.Metrics {
	t.Helper()
	var rm metricdata.ResourceMetrics
	if err := r.Collect(context.Background(), &rm); err != nil {
		t.Fatal(err)
	}
	out := map[string]metricdata.Metrics{}
	for _, sm := range rm.ScopeMetrics {
		if sm.Scope.Name != herdotel.ScopeName {
			t.Errorf("scope %q, want %q", sm.Scope.Name, herdotel.ScopeName)
		}
		for _, m := range sm.Metrics {
			out[m.Name] = m
		}
	}
	return out
}

// number returns the value of the one data point of a sum or gauge, and its
// attributes.
func number(t *testing.T, m metricdata.Metrics) (float64, attribute.Set) {
	t.Helper()
	switch d := m.Data.(type) {
	case metricdata.Sum[int64]:
		if len(d.DataPoints) != 1 || !d.IsMonotonic {
			t.Fatalf("%s: %+v, want one monotonic data point", m.Name, d)
		}
		return float64(d.DataPoints[0].Value), d.DataPoints[0].Attributes
	case metricdata.Sum[float64]:
		if len(d.DataPoints) != 1 || !d.IsMonotonic {
			t.Fatalf("%s: %+v, want one monotonic data point", m.Name, d)
		}
		return d.DataPoints[0].Value, d.DataPoints[0].Attributes
	case metricdata.Gauge[int64]:
		if len(d.DataPoints) != 1 {
			t.Fatalf("%s: %+v, want one data point", m.Name, d)
		}
		return float64(d.DataPoints[0].Value), d.DataPoints[0].Attributes
	}
	t.Fatalf("%s: %T, want a sum or a gauge", m.Name, m.Data)
	return 0, attribute.Set{}
}

// After a scripted sequence, every instrument has its exact value.
func TestMetricsScriptedSequence(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		reader := sdkmetric.NewManualReader()
		mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))
		defer func() { _ = mp.Shutdown(context.Background()) }()
		m, err := herdotel.NewMetrics("users", herdotel.WithMeterProvider(mp), herdotel.Buckets(0.05, 0.1))
		if err != nil {
			t.Fatal(err)
		}
		defer m.Close(context.Background())
		c := newCache(t, herd.WithObserver(m))
		m.Watch(c)
		script(t, c, noWrap)

		got := collect(t, reader)
		want := map[string]float64{
			"herd.cache.hits": 2, "herd.cache.stale_hits": 2, "herd.cache.misses": 5,
			"herd.cache.negative_hits": 1, "herd.cache.shared_waits": 0, "herd.cache.lock_waits": 0,
			"herd.cache.loads": 7, "herd.cache.load_errors": 3, "herd.cache.load_time": 0.59375,
			"herd.cache.refreshes.queued": 2, "herd.cache.refreshes.dropped": 0, "herd.cache.refreshes.failed": 1,
			"herd.cache.stale_on_error": 1, "herd.cache.store_errors": 0,
			"herd.cache.refreshes.skipped": 0, "herd.cache.write_conflicts": 0, "herd.cache.callback_panics": 0,
			"herd.cache.batch_loads": 0, "herd.cache.batch_keys": 0, "herd.cache.batch_load_errors": 0, "herd.cache.batch_load_time": 0,
			"herd.cache.store_skipped": 0, "herd.cache.store_downs": 0, "herd.cache.store_ups": 0,
		}
		users := attribute.NewSet(herdotel.CacheNameKey.String("users"))
		for name, w := range want {
			m, ok := got[name]
			if !ok {
				t.Errorf("no %s", name)
				continue
			}
			if v, attrs := number(t, m); v != w || !attrs.Equals(&users) {
				t.Errorf("%s = %v %v, want %v %v", name, v, attrs.Encoded(attribute.DefaultEncoder()), w, "herd.cache.name=users")
			}
		}
		if n := len(got); n != len(want)+1 {
			t.Errorf("%d instruments, want %d", n, len(want)+1)
		}

		h, ok := got[herdotel.LoadDurationName].Data.(metricdata.Histogram[float64])
		if !ok {
			t.Fatalf("%s: %T, want a histogram", herdotel.LoadDurationName, got[herdotel.LoadDurationName].Data)
		}
		if unit := got[herdotel.LoadDurationName].Unit; unit != "s" {
			t.Errorf("%s unit %q, want s", herdotel.LoadDurationName, unit)
		}
		type point struct {
			count   uint64
			sum     float64
			buckets []uint64
		}
		wantH := map[string]point{
			"ok":        {3, 0.375, []uint64{0, 0, 3}},
			"error":     {3, 0.1875, []uint64{0, 3, 0}},
			"not_found": {1, 0.03125, []uint64{1, 0, 0}},
		}
		if len(h.DataPoints) != len(wantH) {
			t.Fatalf("%d histogram points, want %d", len(h.DataPoints), len(wantH))
		}
		for _, dp := range h.DataPoints {
			result, _ := dp.Attributes.Value(herdotel.LoadResultKey)
			w := wantH[result.AsString()]
			if name, _ := dp.Attributes.Value(herdotel.CacheNameKey); name.AsString() != "users" {
				t.Errorf("histogram point %v has no herd.cache.name=users", dp.Attributes)
			}
			if dp.Count != w.count || dp.Sum != w.sum || !slices.Equal(dp.BucketCounts, w.buckets) {
				t.Errorf("load duration %q: count %d sum %v buckets %v, want %d %v %v",
					result.AsString(), dp.Count, dp.Sum, dp.BucketCounts, w.count, w.sum, w.buckets)
			}
		}

		// After Close, the counters are gone and loads are not recorded.
		if err := m.Close(context.Background()); err != nil {
			t.Fatal(err)
		}
		if err := m.Close(context.Background()); err != nil {
			t.Fatalf("second Close: %v", err)
		}
		m.Observe(herd.Event{Kind: herd.EventLoad, Duration: time.Second})
		after := collect(t, reader)
		if _, ok := after["herd.cache.hits"]; ok {
			t.Errorf("herd.cache.hits still collected after Close")
		}
		if h := after[herdotel.LoadDurationName].Data.(metricdata.Histogram[float64]); len(h.DataPoints) != 3 || h.DataPoints[0].Count+h.DataPoints[1].Count+h.DataPoints[2].Count != 7 {
			t.Errorf("a load was recorded after Close: %+v", h.DataPoints)
		}
	})
}

// fixedStats is an autorefresh cache's statistics with a distinct value in
// every field: field i holds i+1 (seconds, for a duration).
type fixedStats struct{}

func (fixedStats) Stats() autorefresh.Stats {
	var s autorefresh.Stats
	v := reflect.ValueOf(&s).Elem()
	for i := range v.NumField() {
		f := v.Field(i)
		switch {
		case f.Type() == reflect.TypeFor[time.Duration]():
			f.SetInt(int64(time.Duration(i+1) * time.Second))
		case f.CanUint():
			f.SetUint(uint64(i + 1))
		default:
			f.SetInt(int64(i + 1))
		}
	}
	return s
}

// Each field of autorefresh.Stats reaches its own instrument, with its value.
func TestAutorefreshMetrics(t *testing.T) {
	reader := sdkmetric.NewManualReader()
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))
	defer func() { _ = mp.Shutdown(context.Background()) }()
	reg, err := herdotel.NewAutorefreshMetrics("jobs", fixedStats{}, herdotel.WithMeterProvider(mp))
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = reg.Unregister() }()
	got := collect(t, reader)
	typ := reflect.TypeFor[autorefresh.Stats]()
	if len(got) != typ.NumField() {
		t.Fatalf("%d instruments, want one per field of autorefresh.Stats: %d", len(got), typ.NumField())
	}
	seen := map[float64]string{}
	jobs := attribute.NewSet(herdotel.CacheNameKey.String("jobs"))
	for name, m := range got {
		v, attrs := number(t, m)
		if prev, dup := seen[v]; dup || v < 1 || v > float64(typ.NumField()) || !attrs.Equals(&jobs) {
			t.Errorf("%s = %v: not the value of its own field (also %q)", name, v, prev)
		}
		seen[v] = name
	}
	for field, name := range map[string]string{"Size": "herd.autorefresh.items", "SyncTime": "herd.autorefresh.sync_time", "Cycles": "herd.autorefresh.cycles"} {
		f, _ := typ.FieldByName(field)
		if seen[float64(f.Index[0]+1)] != name {
			t.Errorf("%s: got the value of %s", name, field)
		}
	}
	if _, ok := got["herd.autorefresh.items"].Data.(metricdata.Gauge[int64]); !ok {
		t.Errorf("herd.autorefresh.items is a %T, want a gauge", got["herd.autorefresh.items"].Data)
	}
}

// Invalid arguments panic with a message naming them.
func TestInvalidArgumentsPanic(t *testing.T) {
	for _, tc := range []struct {
		name, want string
		f          func()
	}{
		{"metrics empty name", "herdotel: NewMetrics name must not be empty", func() { _, _ = herdotel.NewMetrics("") }},
		{"no buckets", "herdotel: Buckets must be at least one, got none", func() { _, _ = herdotel.NewMetrics("c", herdotel.Buckets()) }},
		{"unordered buckets", "herdotel: Buckets must be positive and increasing, got [1 0.5]", func() { _, _ = herdotel.NewMetrics("c", herdotel.Buckets(1, 0.5)) }},
		{"nil source", "herdotel: Watch source must not be nil", func() {
			m, _ := herdotel.NewMetrics("c")
			m.Watch(nil)
		}},
		{"autorefresh empty name", "herdotel: NewAutorefreshMetrics name must not be empty", func() { _, _ = herdotel.NewAutorefreshMetrics("", fixedStats{}) }},
		{"autorefresh nil source", "herdotel: NewAutorefreshMetrics source must not be nil", func() { _, _ = herdotel.NewAutorefreshMetrics("c", nil) }},
		{"tracer empty name", "herdotel: NewTracer name must not be empty", func() { herdotel.NewTracer("") }},
		{"trace nil loader", "herdotel: Trace needs a Tracer and a loader", func() { herdotel.Trace[string](herdotel.NewTracer("c"), nil) }},
		{"close nil context", "herdotel: nil Context", func() {
			m, _ := herdotel.NewMetrics("c")
			_ = m.Close(nil) //nolint:staticcheck // the nil Context is what is tested
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			defer func() {
				if got := fmt.Sprint(recover()); got != tc.want {
					t.Fatalf("panic %q, want %q", got, tc.want)
				}
			}()
			tc.f()
		})
	}
}
