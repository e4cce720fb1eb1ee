package herdotel

import (
	"fmt"
	"reflect"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"

	"github.com/herdcache/herd/autorefresh"
	"github.com/herdcache/herd/internal/check"
)

// autorefreshInstruments are the instruments of an [autorefresh.Stats], one
// per field (a test checks that none is missing).
var autorefreshInstruments = []instrument{
	{"Size", "herd.autorefresh.items", "{item}", "Items in the set.", true},
	{"Hits", "herd.autorefresh.hits", "{hit}", "Get and GetOrCreate calls that found their item.", false},
	{"Misses", "herd.autorefresh.misses", "{miss}", "Get calls that found no item and GetOrCreate calls that created one.", false},
	{"Created", "herd.autorefresh.created", "{item}", "Items created by GetOrCreate.", false},
	{"Evictions", "herd.autorefresh.evictions", "{item}", "Items removed to keep the set within MaxItems.", false},
	{"Cycles", "herd.autorefresh.cycles", "{cycle}", "Resync cycles run.", false},
	{"LastCycleItems", "herd.autorefresh.last_cycle_items", "{item}", "Items the last cycle cut into batches.", true},
	{"SkippedHeld", "herd.autorefresh.skipped_held", "{item}", "Items a cycle skipped because an earlier sync call still held them.", false},
	{"Syncs", "herd.autorefresh.syncs", "{call}", "Sync calls returned or panicked, whatever their outcome.", false},
	{"SyncTime", "herd.autorefresh.sync_time", "s", "Total time spent in sync calls.", false},
	{"ItemsSynced", "herd.autorefresh.items_synced", "{item}", "Items passed to sync calls.", false},
	{"SyncErrors", "herd.autorefresh.sync_errors", "{call}", "Sync calls that returned an error.", false},
	{"SyncPanics", "herd.autorefresh.sync_panics", "{call}", "Sync calls that panicked or called runtime.Goexit.", false},
	{"CallbackPanics", "herd.autorefresh.callback_panics", "{panic}", "Panics recovered from the Batcher, the Observer and the logger's handler.", false},
	{"Updated", "herd.autorefresh.updated", "{result}", "Update results applied.", false},
	{"Deleted", "herd.autorefresh.deleted", "{result}", "Delete results applied.", false},
	{"ResultsDiscarded", "herd.autorefresh.results_discarded", "{result}", "Update and Delete results not applied because their item had changed or been lost.", false},
}

// An AutorefreshSource is what [NewAutorefreshMetrics] reads at every
// collection: a *[autorefresh.Cache] of any types.
type AutorefreshSource interface {
	Stats() autorefresh.Stats
}

// NewAutorefreshMetrics creates the instruments of src, the autorefresh cache
// called name (the value of their herd.cache.name attribute), read at every
// collection: an observable counter per counter of [autorefresh.Stats]
// (SyncTime in seconds), and observable gauges of the set's size and of the
// items of the last cycle. Unregister the registration it returns when done
// with src. It panics if name is empty, src is nil or an option is invalid,
// and returns the meter's error if it cannot create an instrument.
func NewAutorefreshMetrics(name string, src AutorefreshSource, opts ...MetricsOption) (metric.Registration, error) {
	check.That(name != "", "herdotel", "NewAutorefreshMetrics name must not be empty")
	check.That(src != nil, "herdotel", "NewAutorefreshMetrics source must not be nil")
	cfg := newMetricsConfig(opts)
	reg, err := register(cfg.provider.Meter(ScopeName), autorefreshInstruments, reflect.TypeFor[autorefresh.Stats](),
		attribute.NewSet(CacheNameKey.String(name)), func() (any, bool) { return src.Stats(), true })
	if err != nil {
		return nil, fmt.Errorf("herdotel: new autorefresh metrics %q: %w", name, err)
	}
	return reg, nil
}
