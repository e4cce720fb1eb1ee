package herdprom_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/prometheus/client_golang/prometheus/testutil"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"go.uber.org/goleak"

	"github.com/herdcache/herd"
	"github.com/herdcache/herd/autorefresh"
	"github.com/herdcache/herd/herdprom"
	"github.com/herdcache/herd/store/memory"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

var errDown = errors.New("source down")

// loader returns a loader that takes d and then returns v, or err.
func loader(d time.Duration, v string, err error) herd.Loader[string] {
	return func(context.Context, string) (string, error) {
		<-time.After(d) // a source that takes d, in the bubble's time
		return v, err
	}
}

// script runs the same sequence of hits, misses, loads and failures on c,
// in a synctest bubble; the loads take 125ms when they succeed, 62.5ms when
// they fail and 31.25ms when the key does not exist.
func script(t *testing.T, c *herd.Cache[string]) {
	t.Helper()
	ctx := context.Background()
	ok := loader(125*time.Millisecond, "v", nil)
	fail := loader(62500*time.Microsecond, "", errDown)
	absent := loader(31250*time.Microsecond, "", herd.ErrNotFound)
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

func newCache(t *testing.T, opts ...herd.Option) *herd.Cache[string] {
	t.Helper()
	c := herd.New(memory.New[string](), append([]herd.Option{
		herd.TTL(time.Minute), herd.RefreshAfter(30 * time.Second), herd.StaleIfError(time.Hour),
		herd.NegativeTTL(time.Minute), herd.WithLogger(slogDiscard),
	}, opts...)...)
	t.Cleanup(func() {
		if err := c.Close(context.Background()); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return c
}

const scriptMetrics = `
# HELP herd_hits_total Fresh values returned from the store.
# TYPE herd_hits_total counter
herd_hits_total{cache="users"} 2
# HELP herd_stale_hits_total Stale values returned at once while a background refresh was queued.
# TYPE herd_stale_hits_total counter
herd_stale_hits_total{cache="users"} 2
# HELP herd_misses_total Callers that found no usable entry and waited for a load.
# TYPE herd_misses_total counter
herd_misses_total{cache="users"} 5
# HELP herd_negative_hits_total Cached not-found answers returned.
# TYPE herd_negative_hits_total counter
herd_negative_hits_total{cache="users"} 1
# HELP herd_shared_waits_total Callers that got the result of a load another caller started.
# TYPE herd_shared_waits_total counter
herd_shared_waits_total{cache="users"} 0
# HELP herd_lock_waits_total Loads that waited for another process holding the key's lock.
# TYPE herd_lock_waits_total counter
herd_lock_waits_total{cache="users"} 0
# HELP herd_loads_total Loader calls.
# TYPE herd_loads_total counter
herd_loads_total{cache="users"} 7
# HELP herd_load_errors_total Loader calls that failed (not found is not a failure).
# TYPE herd_load_errors_total counter
herd_load_errors_total{cache="users"} 3
# HELP herd_load_time_seconds_total Total time spent in loader calls.
# TYPE herd_load_time_seconds_total counter
herd_load_time_seconds_total{cache="users"} 0.59375
# HELP herd_refreshes_queued_total Background refreshes queued.
# TYPE herd_refreshes_queued_total counter
herd_refreshes_queued_total{cache="users"} 2
# HELP herd_refreshes_dropped_total Background refreshes dropped because the queue was full.
# TYPE herd_refreshes_dropped_total counter
herd_refreshes_dropped_total{cache="users"} 0
# HELP herd_refreshes_failed_total Background refreshes whose load failed.
# TYPE herd_refreshes_failed_total counter
herd_refreshes_failed_total{cache="users"} 1
# HELP herd_stale_on_error_total Stale values returned because a load failed.
# TYPE herd_stale_on_error_total counter
herd_stale_on_error_total{cache="users"} 1
# HELP herd_store_errors_total Store reads, writes and lock calls that failed.
# TYPE herd_store_errors_total counter
herd_store_errors_total{cache="users"} 0
# HELP herd_refreshes_skipped_total Background refreshes skipped because another process held the key's lock.
# TYPE herd_refreshes_skipped_total counter
herd_refreshes_skipped_total{cache="users"} 0
# HELP herd_write_conflicts_total Loads not written back because the key was written since they began.
# TYPE herd_write_conflicts_total counter
herd_write_conflicts_total{cache="users"} 0
# HELP herd_callback_panics_total Panics of observers and log handlers, recovered.
# TYPE herd_callback_panics_total counter
herd_callback_panics_total{cache="users"} 0
# HELP herd_batch_loads_total Batch loader calls by GetMany and FetchMany.
# TYPE herd_batch_loads_total counter
herd_batch_loads_total{cache="users"} 0
# HELP herd_batch_keys_total Keys asked of batch loaders.
# TYPE herd_batch_keys_total counter
herd_batch_keys_total{cache="users"} 0
# HELP herd_batch_load_errors_total Batch loader calls that failed.
# TYPE herd_batch_load_errors_total counter
herd_batch_load_errors_total{cache="users"} 0
# HELP herd_batch_load_time_seconds_total Total time spent in batch loader calls.
# TYPE herd_batch_load_time_seconds_total counter
herd_batch_load_time_seconds_total{cache="users"} 0
# HELP herd_store_skipped_total Store calls not made because the store was down.
# TYPE herd_store_skipped_total counter
herd_store_skipped_total{cache="users"} 0
# HELP herd_store_downs_total Times the store was found unavailable and marked down.
# TYPE herd_store_downs_total counter
herd_store_downs_total{cache="users"} 0
# HELP herd_store_ups_total Times the store answered again after it was marked down.
# TYPE herd_store_ups_total counter
herd_store_ups_total{cache="users"} 0
# HELP herd_load_duration_seconds Time spent in loader calls, by result: ok, error or not_found.
# TYPE herd_load_duration_seconds histogram
herd_load_duration_seconds_bucket{cache="users",result="error",le="0.05"} 0
herd_load_duration_seconds_bucket{cache="users",result="error",le="0.1"} 3
herd_load_duration_seconds_bucket{cache="users",result="error",le="+Inf"} 3
herd_load_duration_seconds_sum{cache="users",result="error"} 0.1875
herd_load_duration_seconds_count{cache="users",result="error"} 3
herd_load_duration_seconds_bucket{cache="users",result="not_found",le="0.05"} 1
herd_load_duration_seconds_bucket{cache="users",result="not_found",le="0.1"} 1
herd_load_duration_seconds_bucket{cache="users",result="not_found",le="+Inf"} 1
herd_load_duration_seconds_sum{cache="users",result="not_found"} 0.03125
herd_load_duration_seconds_count{cache="users",result="not_found"} 1
herd_load_duration_seconds_bucket{cache="users",result="ok",le="0.05"} 0
herd_load_duration_seconds_bucket{cache="users",result="ok",le="0.1"} 0
herd_load_duration_seconds_bucket{cache="users",result="ok",le="+Inf"} 3
herd_load_duration_seconds_sum{cache="users",result="ok"} 0.375
herd_load_duration_seconds_count{cache="users",result="ok"} 3
`

// After a scripted sequence, every metric has its exact value.
func TestScriptedSequence(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		m := herdprom.NewCollector("users", herdprom.Buckets(0.05, 0.1))
		c := newCache(t, herd.WithObserver(m))
		m.Watch(c)
		reg := prometheus.NewPedanticRegistry()
		reg.MustRegister(m)
		script(t, c)
		if err := testutil.GatherAndCompare(reg, strings.NewReader(scriptMetrics)); err != nil {
			t.Fatal(err)
		}
		// A counter per field of Stats, and the 3 series of the histogram.
		if n, want := testutil.CollectAndCount(m), reflect.TypeFor[herd.Stats]().NumField()+3; n != want {
			t.Fatalf("CollectAndCount = %d, want %d", n, want)
		}
		if n := testutil.CollectAndCount(m, herdprom.LoadDurationName); n != 3 {
			t.Fatalf("CollectAndCount(%s) = %d, want 3", herdprom.LoadDurationName, n)
		}
	})
}

// The collectors of two caches register side by side, and a promhttp
// handler serves them in the text format, which the expfmt parser reads
// back with the values of each cache.
func TestScrapeOverHTTP(t *testing.T) {
	reg := prometheus.NewPedanticRegistry()
	ctx := context.Background()
	caches := map[string]*herd.Cache[string]{}
	for _, name := range []string{"users", "sessions"} {
		m := herdprom.NewCollector(name)
		c := newCache(t, herd.WithObserver(m))
		m.Watch(c)
		reg.MustRegister(m)
		caches[name] = c
	}
	// users: one hit; sessions: one miss and load, and one failed load.
	if err := caches["users"].Set(ctx, "a", "v"); err != nil {
		t.Fatal(err)
	}
	if _, err := caches["users"].Get(ctx, "a", loader(0, "v", nil)); err != nil {
		t.Fatal(err)
	}
	if _, err := caches["sessions"].Get(ctx, "s", loader(0, "v", nil)); err != nil {
		t.Fatal(err)
	}
	if _, err := caches["sessions"].Get(ctx, "t", loader(0, "", errDown)); !errors.Is(err, errDown) {
		t.Fatalf("Get of a failing key = %v, want %v", err, errDown)
	}

	srv := httptest.NewServer(promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	defer srv.Close()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, srv.URL, http.NoBody)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Accept", "text/plain; version=0.0.4")
	resp, err := srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /metrics: %s", resp.Status)
	}
	parser := expfmt.NewTextParser(model.UTF8Validation)
	families, err := parser.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatalf("parse the scrape: %v", err)
	}
	for _, tc := range []struct {
		name, cache string
		want        float64
	}{
		{"herd_hits_total", "users", 1},
		{"herd_misses_total", "users", 0},
		{"herd_loads_total", "users", 0},
		{"herd_hits_total", "sessions", 0},
		{"herd_misses_total", "sessions", 2},
		{"herd_loads_total", "sessions", 2},
		{"herd_load_errors_total", "sessions", 1},
	} {
		if got, ok := value(families[tc.name], tc.cache); !ok || got != tc.want {
			t.Errorf("%s{cache=%q} = %v (found: %v), want %v", tc.name, tc.cache, got, ok, tc.want)
		}
	}
	h, ok := families[herdprom.LoadDurationName]
	if !ok || h.GetType() != dto.MetricType_HISTOGRAM {
		t.Fatalf("%s: %v, want a histogram", herdprom.LoadDurationName, h)
	}
	var sessionLoads uint64
	for _, m := range h.GetMetric() {
		if label(m, "cache") == "sessions" {
			sessionLoads += m.GetHistogram().GetSampleCount()
		}
	}
	if sessionLoads != 2 {
		t.Errorf("%s{cache=\"sessions\"} counted %d loads, want 2", herdprom.LoadDurationName, sessionLoads)
	}
}

func label(m *dto.Metric, name string) string {
	for _, l := range m.GetLabel() {
		if l.GetName() == name {
			return l.GetValue()
		}
	}
	return ""
}

func value(f *dto.MetricFamily, cache string) (float64, bool) {
	for _, m := range f.GetMetric() {
		if label(m, "cache") == cache {
			if f.GetType() == dto.MetricType_GAUGE {
				return m.GetGauge().GetValue(), true
			}
			return m.GetCounter().GetValue(), true
		}
	}
	return 0, false
}

// The metrics follow Prometheus's naming conventions.
func TestLint(t *testing.T) {
	reg := prometheus.NewPedanticRegistry()
	m := herdprom.NewCollector("users")
	c := newCache(t, herd.WithObserver(m))
	m.Watch(c)
	if _, err := c.Get(context.Background(), "a", loader(0, "v", nil)); err != nil {
		t.Fatal(err)
	}
	reg.MustRegister(m, herdprom.NewAutorefreshCollector("jobs", fixedStats{}))
	problems, err := testutil.GatherAndLint(reg)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		t.Errorf("%s: %s", p.Metric, p.Text)
	}
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

// Each field of autorefresh.Stats reaches its own metric, with its value.
func TestAutorefreshCollector(t *testing.T) {
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(herdprom.NewAutorefreshCollector("jobs", fixedStats{}))
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	typ := reflect.TypeFor[autorefresh.Stats]()
	if len(families) != typ.NumField() {
		t.Fatalf("%d metrics, want one per field of autorefresh.Stats: %d", len(families), typ.NumField())
	}
	seen := map[float64]string{}
	for _, f := range families {
		got, ok := value(f, "jobs")
		if !ok {
			t.Fatalf("%s has no series for cache jobs", f.GetName())
		}
		if prev, dup := seen[got]; dup || got < 1 || got > float64(typ.NumField()) {
			t.Errorf("%s = %v: not the value of its own field (also %q)", f.GetName(), got, prev)
		}
		seen[got] = f.GetName()
	}
	want := map[string]float64{
		"herd_autorefresh_items":                   1,
		"herd_autorefresh_sync_time_seconds_total": float64(fieldIndex(typ, "SyncTime") + 1),
		"herd_autorefresh_cycles_total":            float64(fieldIndex(typ, "Cycles") + 1),
	}
	for name, w := range want {
		if seen[w] != name {
			t.Errorf("%s: want %v, which %s has", name, w, seen[w])
		}
	}
}

func fieldIndex(typ reflect.Type, name string) int {
	f, _ := typ.FieldByName(name)
	return f.Index[0]
}

// The same for herd.Stats: each field reaches its own metric.
func TestEveryCacheCounterHasItsValue(t *testing.T) {
	m := herdprom.NewCollector("users")
	m.Watch(statsFunc(func() herd.Stats {
		var s herd.Stats
		v := reflect.ValueOf(&s).Elem()
		for i := range v.NumField() {
			if v.Field(i).Type() == reflect.TypeFor[time.Duration]() {
				v.Field(i).SetInt(int64(time.Duration(i+1) * time.Second))
			} else {
				v.Field(i).SetUint(uint64(i + 1))
			}
		}
		return s
	}))
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(m)
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	seen := map[float64]string{}
	for _, f := range families {
		if f.GetName() == herdprom.LoadDurationName {
			continue
		}
		got, _ := value(f, "users")
		if prev, dup := seen[got]; dup || got < 1 {
			t.Errorf("%s = %v: not the value of its own field (also %q)", f.GetName(), got, prev)
		}
		seen[got] = f.GetName()
	}
	if n := reflect.TypeFor[herd.Stats]().NumField(); len(seen) != n {
		t.Fatalf("%d counters, want one per field of herd.Stats: %d", len(seen), n)
	}
	if want := fieldIndex(reflect.TypeFor[herd.Stats](), "LoadTime") + 1; seen[float64(want)] != "herd_load_time_seconds_total" {
		t.Errorf("LoadTime of %ds reached %s", want, seen[float64(want)])
	}
}

type statsFunc func() herd.Stats

func (f statsFunc) Stats() herd.Stats { return f() }

// Before Watch, a collector exports its histogram only.
func TestBeforeWatch(t *testing.T) {
	m := herdprom.NewCollector("users")
	if n := testutil.CollectAndCount(m); n != 3 {
		t.Fatalf("CollectAndCount before Watch = %d, want 3 (the histogram)", n)
	}
}

// Invalid arguments panic with a message naming them.
func TestInvalidArgumentsPanic(t *testing.T) {
	for _, tc := range []struct {
		name, want string
		f          func()
	}{
		{"empty name", "herdprom: NewCollector name must not be empty", func() { herdprom.NewCollector("") }},
		{"no buckets", "herdprom: Buckets must be at least one, got none", func() { herdprom.NewCollector("c", herdprom.Buckets()) }},
		{"unordered buckets", "herdprom: Buckets must be positive and increasing, got [1 0.5]", func() { herdprom.NewCollector("c", herdprom.Buckets(1, 0.5)) }},
		{"zero bucket", "herdprom: Buckets must be positive and increasing, got [0 1]", func() { herdprom.NewCollector("c", herdprom.Buckets(0, 1)) }},
		{"nil source", "herdprom: Watch source must not be nil", func() { herdprom.NewCollector("c").Watch(nil) }},
		{"autorefresh empty name", "herdprom: NewAutorefreshCollector name must not be empty", func() { herdprom.NewAutorefreshCollector("", fixedStats{}) }},
		{"autorefresh nil source", "herdprom: NewAutorefreshCollector source must not be nil", func() { herdprom.NewAutorefreshCollector("c", nil) }},
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

// An observer of the collector adds no allocation to a hit.
func TestHitDoesNotAllocate(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		m := herdprom.NewCollector("users")
		c := newCache(t, herd.WithObserver(m))
		m.Watch(c)
		ctx := context.Background()
		if _, err := c.Get(ctx, "a", loader(0, "v", nil)); err != nil {
			t.Fatal(err)
		}
		synctest.Wait() // the load's store write lands
		load := loader(0, "v", nil)
		if allocs := testing.AllocsPerRun(1000, func() {
			if _, err := c.Get(ctx, "a", load); err != nil {
				t.Fatal(err)
			}
		}); allocs != 0 {
			t.Fatalf("a hit allocated %v times", allocs)
		}
		if s := c.Stats(); s.Loads != 1 {
			t.Fatalf("%d loads, want 1", s.Loads)
		}
	})
}
