package herdprom

import (
	"reflect"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/herdcache/herd/autorefresh"
	"github.com/herdcache/herd/internal/check"
)

// autorefreshMetrics are the metrics of an [autorefresh.Stats], one per field
// (a test checks that none is missing).
var autorefreshMetrics = []metric{
	{"Size", "herd_autorefresh_items", prometheus.GaugeValue, "Items in the set."},
	{"Hits", "herd_autorefresh_hits_total", prometheus.CounterValue, "Get and GetOrCreate calls that found their item."},
	{"Misses", "herd_autorefresh_misses_total", prometheus.CounterValue, "Get calls that found no item and GetOrCreate calls that created one."},
	{"Created", "herd_autorefresh_created_total", prometheus.CounterValue, "Items created by GetOrCreate."},
	{"Evictions", "herd_autorefresh_evictions_total", prometheus.CounterValue, "Items removed to keep the set within MaxItems."},
	{"Cycles", "herd_autorefresh_cycles_total", prometheus.CounterValue, "Resync cycles run."},
	{"LastCycleItems", "herd_autorefresh_last_cycle_items", prometheus.GaugeValue, "Items the last cycle cut into batches."},
	{"SkippedHeld", "herd_autorefresh_skipped_held_total", prometheus.CounterValue, "Items a cycle skipped because an earlier sync call still held them."},
	{"Syncs", "herd_autorefresh_syncs_total", prometheus.CounterValue, "Sync calls returned or panicked, whatever their outcome."},
	{"SyncTime", "herd_autorefresh_sync_time_seconds_total", prometheus.CounterValue, "Total time spent in sync calls."},
	{"ItemsSynced", "herd_autorefresh_items_synced_total", prometheus.CounterValue, "Items passed to sync calls."},
	{"SyncErrors", "herd_autorefresh_sync_errors_total", prometheus.CounterValue, "Sync calls that returned an error."},
	{"SyncPanics", "herd_autorefresh_sync_panics_total", prometheus.CounterValue, "Sync calls that panicked or called runtime.Goexit."},
	{"CallbackPanics", "herd_autorefresh_callback_panics_total", prometheus.CounterValue, "Panics recovered from the Batcher, the Observer and the logger's handler."},
	{"Updated", "herd_autorefresh_updated_total", prometheus.CounterValue, "Update results applied."},
	{"Deleted", "herd_autorefresh_deleted_total", prometheus.CounterValue, "Delete results applied."},
	{"ResultsDiscarded", "herd_autorefresh_results_discarded_total", prometheus.CounterValue, "Update and Delete results not applied because their item had changed or been lost."},
}

// An AutorefreshSource is what [NewAutorefreshCollector] reads at scrape
// time: a *[autorefresh.Cache] of any types.
type AutorefreshSource interface {
	Stats() autorefresh.Stats
}

// NewAutorefreshCollector returns a collector of the statistics of src, the
// autorefresh cache called name (the value of the cache label of its
// metrics), read at every scrape: one counter per counter of
// [autorefresh.Stats] (SyncTime in seconds), and gauges of the set's size
// and of the items of the last cycle. It panics if name is empty or src is
// nil.
func NewAutorefreshCollector(name string, src AutorefreshSource) prometheus.Collector {
	check.That(name != "", "herdprom", "NewAutorefreshCollector name must not be empty")
	check.That(src != nil, "herdprom", "NewAutorefreshCollector source must not be nil")
	return newStatsCollector(autorefreshMetrics, reflect.TypeFor[autorefresh.Stats](), prometheus.Labels{"cache": name},
		func() (any, bool) { return src.Stats(), true })
}
