package herdotel

import (
	"reflect"
	"testing"

	"github.com/herdcache/herd"
	"github.com/herdcache/herd/autorefresh"
)

// Every field of a statistics struct has an instrument: a field added to
// herd.Stats or autorefresh.Stats fails this test until its instrument is
// added to the table.
func TestEveryStatsFieldHasAnInstrument(t *testing.T) {
	for _, tc := range []struct {
		typ   reflect.Type
		table []instrument
	}{
		{reflect.TypeFor[herd.Stats](), cacheInstruments},
		{reflect.TypeFor[autorefresh.Stats](), autorefreshInstruments},
	} {
		byField := map[string]string{}
		names := map[string]bool{}
		for _, in := range tc.table {
			if prev, dup := byField[in.field]; dup {
				t.Errorf("%v.%s has two instruments: %s and %s", tc.typ, in.field, prev, in.name)
			}
			if names[in.name] {
				t.Errorf("instrument %s is in the table twice", in.name)
			}
			byField[in.field], names[in.name] = in.name, true
		}
		for i := range tc.typ.NumField() {
			f := tc.typ.Field(i)
			if !f.IsExported() {
				continue
			}
			if _, ok := byField[f.Name]; !ok {
				t.Errorf("%v.%s has no instrument: add it to the table", tc.typ, f.Name)
			}
		}
	}
}
