// Package herdprom exports the statistics of herd caches as Prometheus
// metrics, through a [prometheus.Collector] per cache in the style of
// client_golang's own collectors.
//
//	m := herdprom.NewCollector("users")
//	users := herd.New(st, herd.WithObserver(m)) // load latency, as it happens
//	m.Watch(users)                              // every Stats counter, read at scrape time
//	prometheus.MustRegister(m)
//
// [NewAutorefreshCollector] does the same for an autorefresh cache. Every
// metric name, type and meaning is in the README of the repository, section
// "Metrics and traces".
//
// # Guarantees
//
// A [Collector] exports one metric per field of [herd.Stats], read from the
// cache when it is scraped, and, as the cache's [herd.Observer], the
// herd_load_duration_seconds histogram of loads by result. Every metric
// carries a constant label cache="name", so that the collectors of several
// caches register side by side in one registry. Its methods are safe for
// concurrent use.
//
// # Costs
//
// A Collector reads the cache's counters from [herd.Cache.Stats] once per
// scrape, so hits, the most frequent event, cost the cache nothing more
// than their own count. As an Observer it records only loads; every other
// event returns at once, without a lock or an allocation.
//
// # Errors
//
// [NewCollector], [NewAutorefreshCollector] and [Collector.Watch] return no
// error: they panic on a programming error (an empty name, invalid
// [Buckets], a nil source), with a message naming it.
// Registering two collectors of one kind and one name in one registry
// fails there, as a duplicate registration.
//
// # Lifecycle
//
// A collector starts no goroutine and has no Close. Until [Collector.Watch]
// is called, it exports the load histogram only; a later Watch replaces the
// cache it reads. It keeps that cache reachable: unregister it from its
// registry when the cache is gone.
package herdprom

import (
	"errors"
	"fmt"
	"reflect"
	"slices"
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/herdcache/herd"
	"github.com/herdcache/herd/internal/check"
	"github.com/herdcache/herd/internal/statfield"
)

// A metric says how one field of a statistics struct is exported.
type metric struct {
	Field string               // the field of the Stats struct
	Name  string               // the metric's full name
	Type  prometheus.ValueType // prometheus.CounterValue or prometheus.GaugeValue
	Help  string
}

// cacheMetrics are the metrics of a [herd.Stats], one per field (a test
// checks that none is missing). A time.Duration field is exported in seconds.
var cacheMetrics = []metric{
	{"Hits", "herd_hits_total", prometheus.CounterValue, "Fresh values returned from the store."},
	{"StaleHits", "herd_stale_hits_total", prometheus.CounterValue, "Stale values returned at once while a background refresh was queued."},
	{"Misses", "herd_misses_total", prometheus.CounterValue, "Callers that found no usable entry and waited for a load."},
	{"NegativeHits", "herd_negative_hits_total", prometheus.CounterValue, "Cached not-found answers returned."},
	{"SharedWaits", "herd_shared_waits_total", prometheus.CounterValue, "Callers that got the result of a load another caller started."},
	{"LockWaits", "herd_lock_waits_total", prometheus.CounterValue, "Loads that waited for another process holding the key's lock."},
	{"Loads", "herd_loads_total", prometheus.CounterValue, "Loader calls."},
	{"LoadErrors", "herd_load_errors_total", prometheus.CounterValue, "Loader calls that failed (not found is not a failure)."},
	{"LoadTime", "herd_load_time_seconds_total", prometheus.CounterValue, "Total time spent in loader calls."},
	{"RefreshesQueued", "herd_refreshes_queued_total", prometheus.CounterValue, "Background refreshes queued."},
	{"RefreshesDropped", "herd_refreshes_dropped_total", prometheus.CounterValue, "Background refreshes dropped because the queue was full."},
	{"RefreshesFailed", "herd_refreshes_failed_total", prometheus.CounterValue, "Background refreshes whose load failed."},
	{"StaleOnError", "herd_stale_on_error_total", prometheus.CounterValue, "Stale values returned because a load failed."},
	{"StoreErrors", "herd_store_errors_total", prometheus.CounterValue, "Store reads, writes and lock calls that failed."},
	{"RefreshesSkipped", "herd_refreshes_skipped_total", prometheus.CounterValue, "Background refreshes skipped because another process held the key's lock."},
	{"WriteConflicts", "herd_write_conflicts_total", prometheus.CounterValue, "Loads not written back because the key was written since they began."},
	{"CallbackPanics", "herd_callback_panics_total", prometheus.CounterValue, "Panics of observers and log handlers, recovered."},
	{"BatchLoads", "herd_batch_loads_total", prometheus.CounterValue, "Batch loader calls by GetMany and FetchMany."},
	{"BatchKeys", "herd_batch_keys_total", prometheus.CounterValue, "Keys asked of batch loaders."},
	{"BatchLoadErrors", "herd_batch_load_errors_total", prometheus.CounterValue, "Batch loader calls that failed."},
	{"BatchLoadTime", "herd_batch_load_time_seconds_total", prometheus.CounterValue, "Total time spent in batch loader calls."},
	{"StoreSkipped", "herd_store_skipped_total", prometheus.CounterValue, "Store calls not made because the store was down."},
	{"StoreDowns", "herd_store_downs_total", prometheus.CounterValue, "Times the store was found unavailable and marked down."},
	{"StoreUps", "herd_store_ups_total", prometheus.CounterValue, "Times the store answered again after it was marked down."},
}

// LoadDurationName is the name of the load-latency histogram of a [Collector].
const LoadDurationName = "herd_load_duration_seconds"

// DefaultBuckets are the load-latency histogram's buckets, in seconds: from
// half a millisecond (a local store) to 30 seconds (a timeout).
var DefaultBuckets = []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30}

// A StatsSource is what a [Collector] reads at scrape time: a
// *[herd.Cache] of any type.
type StatsSource interface {
	Stats() herd.Stats
}

// An Option configures a [Collector].
type Option func(*config)

type config struct {
	buckets []float64
}

// Buckets sets the upper bounds, in seconds, of the load-latency histogram's
// buckets. They must be at least one, positive and increasing. Default:
// [DefaultBuckets].
func Buckets(b ...float64) Option {
	return func(c *config) { c.buckets = slices.Clone(b) }
}

// A Collector is a [prometheus.Collector] of one cache's metrics, and the
// [herd.Observer] that feeds its load-latency histogram. Its methods are safe
// for concurrent use.
type Collector struct {
	src    atomic.Pointer[StatsSource]
	stats  *statsCollector
	loads  *prometheus.HistogramVec
	byLoad [3]prometheus.Observer // by herd.LoadResult
}

// NewCollector returns the collector of the cache called name, the value of
// the cache label of its metrics. It panics if name is empty or an option is
// invalid. Give it to the cache with [herd.WithObserver] (combined with
// others by [herd.Observers] if need be), then tell it the cache with
// [Collector.Watch], and register it.
func NewCollector(name string, opts ...Option) *Collector {
	check.That(name != "", "herdprom", "NewCollector name must not be empty")
	cfg := config{buckets: DefaultBuckets}
	for _, o := range opts {
		o(&cfg)
	}
	err := checkBuckets(cfg.buckets)
	check.That(err == nil, "herdprom", "Buckets %v", err)
	labels := prometheus.Labels{"cache": name}
	c := &Collector{
		loads: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:        LoadDurationName,
			Help:        "Time spent in loader calls, by result: ok, error or not_found.",
			Buckets:     cfg.buckets,
			ConstLabels: labels,
		}, []string{"result"}),
	}
	c.stats = newStatsCollector(cacheMetrics, reflect.TypeFor[herd.Stats](), labels, func() (any, bool) {
		p := c.src.Load()
		if p == nil {
			return nil, false
		}
		return (*p).Stats(), true
	})
	for r := range c.byLoad {
		c.byLoad[r] = c.loads.WithLabelValues(herd.LoadResult(r).String())
	}
	return c
}

func checkBuckets(b []float64) error {
	if len(b) == 0 {
		return errors.New("must be at least one, got none")
	}
	for i, v := range b {
		if v <= 0 || (i > 0 && v <= b[i-1]) {
			return fmt.Errorf("must be positive and increasing, got %v", b)
		}
	}
	return nil
}

// Watch makes the collector read the counters of src, usually the cache it
// observes, at every scrape. Until Watch is called, the collector exports
// the load histogram only; a later Watch replaces src. It panics if src is
// nil.
func (c *Collector) Watch(src StatsSource) {
	check.That(src != nil, "herdprom", "Watch source must not be nil")
	c.src.Store(&src)
}

// Observe records the duration of a load ([herd.EventLoad]) in the
// herd_load_duration_seconds histogram; it ignores every other event, at
// once, so that a hit costs nothing. The cache calls it; see [herd.Observer].
func (c *Collector) Observe(e herd.Event) {
	if e.Kind != herd.EventLoad {
		return
	}
	c.byLoad[e.LoadResult()].Observe(e.Duration.Seconds())
}

// Describe sends the descriptions of every metric of the collector.
func (c *Collector) Describe(ch chan<- *prometheus.Desc) {
	c.stats.Describe(ch)
	c.loads.Describe(ch)
}

// Collect reads the watched cache's Stats once and sends every metric.
func (c *Collector) Collect(ch chan<- prometheus.Metric) {
	c.stats.Collect(ch)
	c.loads.Collect(ch)
}

// statsCollector exports the fields of a statistics struct through a table
// of metrics, reading the fields by their index, found once.
type statsCollector struct {
	metrics []metric
	descs   []*prometheus.Desc
	fields  []statfield.Field
	read    func() (any, bool)
}

// newStatsCollector panics if a metric names a field that typ does not have
// or whose type is not a number: the tables are the package's own, and its
// tests check them.
func newStatsCollector(metrics []metric, typ reflect.Type, labels prometheus.Labels, read func() (any, bool)) *statsCollector {
	s := &statsCollector{metrics: metrics, read: read}
	for _, m := range metrics {
		s.fields = append(s.fields, statfield.Find("herdprom", typ, m.Field, m.Name))
		s.descs = append(s.descs, prometheus.NewDesc(m.Name, m.Help, nil, labels))
	}
	return s
}

func (s *statsCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range s.descs {
		ch <- d
	}
}

func (s *statsCollector) Collect(ch chan<- prometheus.Metric) {
	stats, ok := s.read()
	if !ok {
		return
	}
	v := reflect.ValueOf(stats)
	for i, m := range s.metrics {
		ch <- prometheus.MustNewConstMetric(s.descs[i], m.Type, s.fields[i].Float(v))
	}
}
