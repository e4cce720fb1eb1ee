package herdprom

import (
	"reflect"
	"testing"

	"github.com/herdcache/herd"
	"github.com/herdcache/herd/autorefresh"
)

// Every field of a statistics struct has a metric: a field added to
// herd.Stats or autorefresh.Stats fails this test until its metric is added
// to the table.
func TestEveryStatsFieldHasAMetric(t *testing.T) {
	for _, tc := range []struct {
		typ     reflect.Type
		metrics []metric
	}{
		{reflect.TypeFor[herd.Stats](), cacheMetrics},
		{reflect.TypeFor[autorefresh.Stats](), autorefreshMetrics},
	} {
		byField := map[string]string{}
		names := map[string]bool{}
		for _, m := range tc.metrics {
			if prev, dup := byField[m.Field]; dup {
				t.Errorf("%v.%s has two metrics: %s and %s", tc.typ, m.Field, prev, m.Name)
			}
			if names[m.Name] {
				t.Errorf("metric %s is in the table twice", m.Name)
			}
			byField[m.Field], names[m.Name] = m.Name, true
		}
		for i := range tc.typ.NumField() {
			f := tc.typ.Field(i)
			if !f.IsExported() {
				continue
			}
			if _, ok := byField[f.Name]; !ok {
				t.Errorf("%v.%s has no metric: add it to the table", tc.typ, f.Name)
			}
		}
	}
}
