package herdotel

import (
	"context"
	"fmt"
	"reflect"
	"slices"
	"sync/atomic"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"

	"github.com/herdcache/herd"
	"github.com/herdcache/herd/internal/check"
	"github.com/herdcache/herd/internal/statfield"
)

// ScopeName is the instrumentation scope of the meters and tracers of this
// package.
const ScopeName = "github.com/herdcache/herd/herdotel"

// Attribute keys of the metrics and spans of this package.
const (
	CacheNameKey  = attribute.Key("herd.cache.name")  // the name given to NewMetrics, NewTracer
	LoadResultKey = attribute.Key("herd.load.result") // ok, error or not_found
	KeyKey        = attribute.Key("herd.key")         // the key of a load, with WithKeyAttribute
	NotFoundKey   = attribute.Key("herd.not_found")   // true on the span of a load that found no value
)

// LoadDurationName is the name of the load-latency histogram of [Metrics].
const LoadDurationName = "herd.cache.load.duration"

// DefaultBuckets are the load-latency histogram's bucket boundaries, in
// seconds: from half a millisecond (a local store) to 30 seconds (a timeout).
var DefaultBuckets = []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30}

// An instrument says how one field of a statistics struct is exported.
type instrument struct {
	field, name, unit, description string
	gauge                          bool // a level, not a counter
}

// cacheInstruments are the instruments of a [herd.Stats], one per field (a
// test checks that none is missing). A time.Duration field is exported in
// seconds.
var cacheInstruments = []instrument{
	{"Hits", "herd.cache.hits", "{hit}", "Fresh values returned from the store.", false},
	{"StaleHits", "herd.cache.stale_hits", "{hit}", "Stale values returned at once while a background refresh was queued.", false},
	{"Misses", "herd.cache.misses", "{miss}", "Callers that found no usable entry and waited for a load.", false},
	{"NegativeHits", "herd.cache.negative_hits", "{hit}", "Cached not-found answers returned.", false},
	{"SharedWaits", "herd.cache.shared_waits", "{wait}", "Callers that got the result of a load another caller started.", false},
	{"LockWaits", "herd.cache.lock_waits", "{wait}", "Loads that waited for another process holding the key's lock.", false},
	{"Loads", "herd.cache.loads", "{load}", "Loader calls.", false},
	{"LoadErrors", "herd.cache.load_errors", "{load}", "Loader calls that failed (not found is not a failure).", false},
	{"LoadTime", "herd.cache.load_time", "s", "Total time spent in loader calls.", false},
	{"RefreshesQueued", "herd.cache.refreshes.queued", "{refresh}", "Background refreshes queued.", false},
	{"RefreshesDropped", "herd.cache.refreshes.dropped", "{refresh}", "Background refreshes dropped because the queue was full.", false},
	{"RefreshesFailed", "herd.cache.refreshes.failed", "{refresh}", "Background refreshes whose load failed.", false},
	{"StaleOnError", "herd.cache.stale_on_error", "{value}", "Stale values returned because a load failed.", false},
	{"StoreErrors", "herd.cache.store_errors", "{error}", "Store reads, writes and lock calls that failed.", false},
	{"RefreshesSkipped", "herd.cache.refreshes.skipped", "{refresh}", "Background refreshes skipped because another process held the key's lock.", false},
	{"WriteConflicts", "herd.cache.write_conflicts", "{load}", "Loads not written back because the key was written since they began.", false},
	{"CallbackPanics", "herd.cache.callback_panics", "{panic}", "Panics of observers and log handlers, recovered.", false},
	{"BatchLoads", "herd.cache.batch_loads", "{load}", "Batch loader calls by GetMany and FetchMany.", false},
	{"BatchKeys", "herd.cache.batch_keys", "{key}", "Keys asked of batch loaders.", false},
	{"BatchLoadErrors", "herd.cache.batch_load_errors", "{load}", "Batch loader calls that failed.", false},
	{"BatchLoadTime", "herd.cache.batch_load_time", "s", "Total time spent in batch loader calls.", false},
	{"StoreSkipped", "herd.cache.store_skipped", "{call}", "Store calls not made because the store was down.", false},
	{"StoreDowns", "herd.cache.store_downs", "{change}", "Times the store was found unavailable and marked down.", false},
	{"StoreUps", "herd.cache.store_ups", "{change}", "Times the store answered again after it was marked down.", false},
}

// A StatsSource is what [Metrics] reads at every collection: a
// *[herd.Cache] of any type.
type StatsSource interface {
	Stats() herd.Stats
}

// A MetricsOption configures [NewMetrics] and [NewAutorefreshMetrics].
type MetricsOption func(*metricsConfig)

type metricsConfig struct {
	provider metric.MeterProvider
	buckets  []float64
}

// WithMeterProvider sets the meter provider of the instruments. Default: the
// global one, [otel.GetMeterProvider], as it is when the constructor is called.
func WithMeterProvider(mp metric.MeterProvider) MetricsOption {
	return func(c *metricsConfig) { c.provider = mp }
}

// Buckets sets the boundaries, in seconds, of the load-latency histogram's
// buckets. They must be at least one, positive and increasing. Default:
// [DefaultBuckets]. NewAutorefreshMetrics has no histogram and ignores it.
func Buckets(b ...float64) MetricsOption {
	return func(c *metricsConfig) { c.buckets = slices.Clone(b) }
}

func newMetricsConfig(opts []MetricsOption) metricsConfig {
	c := metricsConfig{buckets: DefaultBuckets}
	for _, o := range opts {
		o(&c)
	}
	if c.provider == nil {
		c.provider = otel.GetMeterProvider()
	}
	check.That(len(c.buckets) != 0, "herdotel", "Buckets must be at least one, got none")
	for i, v := range c.buckets {
		check.That(v > 0 && (i == 0 || v > c.buckets[i-1]), "herdotel", "Buckets must be positive and increasing, got %v", c.buckets)
	}
	return c
}

// Metrics are the OpenTelemetry instruments of one cache: an observable
// counter per field of [herd.Stats], read from the cache at each collection,
// and the load-latency histogram, fed as the [herd.Observer] of the cache.
// Every measurement carries the attribute herd.cache.name. Its methods are
// safe for concurrent use.
type Metrics struct {
	src    atomic.Pointer[StatsSource]
	reg    metric.Registration
	loads  metric.Float64Histogram
	byLoad [3]metric.RecordOption // by herd.LoadResult
	closed atomic.Bool
}

// NewMetrics creates the instruments of the cache called name, the value of
// their herd.cache.name attribute. Give the Metrics to the cache with
// [herd.WithObserver] (combined with others by [herd.Observers] if need be),
// then tell it the cache with [Metrics.Watch]; [Metrics.Close] unregisters
// them. It panics if name is empty or an option is invalid, and returns the
// meter's error if it cannot create an instrument.
func NewMetrics(name string, opts ...MetricsOption) (*Metrics, error) {
	check.That(name != "", "herdotel", "NewMetrics name must not be empty")
	cfg := newMetricsConfig(opts)
	meter := cfg.provider.Meter(ScopeName)
	m := &Metrics{}
	var err error
	m.loads, err = meter.Float64Histogram(LoadDurationName, metric.WithUnit("s"),
		metric.WithDescription("Time spent in loader calls, by result: ok, error or not_found."),
		metric.WithExplicitBucketBoundaries(cfg.buckets...))
	if err != nil {
		return nil, fmt.Errorf("herdotel: new metrics %q: %w", name, err)
	}
	cache := CacheNameKey.String(name)
	result := func(r string) metric.RecordOption {
		return metric.WithAttributeSet(attribute.NewSet(cache, LoadResultKey.String(r)))
	}
	for r := range m.byLoad {
		m.byLoad[r] = result(herd.LoadResult(r).String())
	}
	m.reg, err = register(meter, cacheInstruments, reflect.TypeFor[herd.Stats](), attribute.NewSet(cache), func() (any, bool) {
		p := m.src.Load()
		if p == nil {
			return nil, false
		}
		return (*p).Stats(), true
	})
	if err != nil {
		return nil, fmt.Errorf("herdotel: new metrics %q: %w", name, err)
	}
	return m, nil
}

// Watch makes the counters read src, usually the cache that m observes, at
// every collection. Until Watch is called, only the histogram has
// measurements; a later Watch replaces src. It panics if src is nil.
func (m *Metrics) Watch(src StatsSource) {
	check.That(src != nil, "herdotel", "Watch source must not be nil")
	m.src.Store(&src)
}

// Observe records the duration of a load ([herd.EventLoad]) in the
// herd.cache.load.duration histogram; it ignores every other event, at once,
// so that a hit costs nothing. The cache calls it; see [herd.Observer].
func (m *Metrics) Observe(e herd.Event) {
	if e.Kind != herd.EventLoad || m.closed.Load() {
		return
	}
	m.loads.Record(context.Background(), e.Duration.Seconds(), m.byLoad[e.LoadResult()])
}

// Close unregisters the counters' callback and stops recording loads. It
// returns the meter's error, if any, from the first call; later calls
// return nil. It does not wait for anything, so ctx is not used.
func (m *Metrics) Close(ctx context.Context) error {
	check.Context(ctx, "herdotel")
	if m.closed.Swap(true) {
		return nil
	}
	if err := m.reg.Unregister(); err != nil {
		return fmt.Errorf("herdotel: close: %w", err)
	}
	return nil
}

// register creates the observable instruments of a statistics struct of
// type typ, and one callback that reads the struct once per collection and
// observes every field with attrs. It panics if an instrument names a field
// that typ does not have or that is not a number: the tables are the
// package's own, and its tests check them.
func register(meter metric.Meter, table []instrument, typ reflect.Type, attrs attribute.Set, read func() (any, bool)) (metric.Registration, error) {
	type field struct {
		statfield.Field
		seconds metric.Float64Observable // a duration
		integer metric.Int64Observable   // anything else
	}
	fields := make([]field, 0, len(table))
	observables := make([]metric.Observable, 0, len(table))
	for _, in := range table {
		fd := field{Field: statfield.Find("herdotel", typ, in.field, in.name)}
		var (
			o   metric.Observable
			err error
		)
		switch {
		case fd.Duration:
			fd.seconds, err = meter.Float64ObservableCounter(in.name, metric.WithUnit(in.unit), metric.WithDescription(in.description))
			o = fd.seconds
		case in.gauge:
			fd.integer, err = meter.Int64ObservableGauge(in.name, metric.WithUnit(in.unit), metric.WithDescription(in.description))
			o = fd.integer
		default:
			fd.integer, err = meter.Int64ObservableCounter(in.name, metric.WithUnit(in.unit), metric.WithDescription(in.description))
			o = fd.integer
		}
		if err != nil {
			return nil, err
		}
		fields = append(fields, fd)
		observables = append(observables, o)
	}
	opt := metric.WithAttributeSet(attrs)
	return meter.RegisterCallback(func(_ context.Context, o metric.Observer) error {
		stats, ok := read()
		if !ok {
			return nil
		}
		v := reflect.ValueOf(stats)
		for _, f := range fields {
			if f.seconds != nil {
				o.ObserveFloat64(f.seconds, f.Float(v), opt)
			} else {
				o.ObserveInt64(f.integer, f.Int(v), opt)
			}
		}
		return nil
	}, observables...)
}
