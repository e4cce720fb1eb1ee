// Package statfield reads the numeric fields of a statistics struct (a
// herd.Stats, an autorefresh.Stats) by name, for the metrics of herdprom
// and herdotel: the field of each metric is found once, by its index, and
// read at each collection.
package statfield

import (
	"reflect"
	"time"

	"github.com/herdcache/herd/internal/check"
)

// A Field is a numeric field of a struct type.
type Field struct {
	index    int
	Duration bool // a time.Duration, read in seconds
	Unsigned bool
}

var durationType = reflect.TypeFor[time.Duration]()

// Find returns the field name of typ. It panics, with pkg and metric in the
// message, if typ has no such field or the field is not a number: the
// tables of metrics are the packages' own, and their tests check them.
func Find(pkg string, typ reflect.Type, name, metric string) Field {
	f, ok := typ.FieldByName(name)
	check.That(ok, pkg, "%v has no field %s for %s", typ, name, metric)
	k := f.Type.Kind()
	check.That(k == reflect.Int || k == reflect.Int64 || k == reflect.Uint64, pkg,
		"field %s of %v is a %v, not a number", name, typ, f.Type)
	return Field{index: f.Index[0], Duration: f.Type == durationType, Unsigned: k == reflect.Uint64}
}

// Float returns the field of v (a value of the struct type it was found
// in) as a float64, in seconds for a duration.
func (f Field) Float(v reflect.Value) float64 {
	fv := v.Field(f.index)
	switch {
	case f.Duration:
		return time.Duration(fv.Int()).Seconds()
	case f.Unsigned:
		return float64(fv.Uint())
	}
	return float64(fv.Int())
}

// Int returns the field of v as an int64, a uint64 past its range clamped.
func (f Field) Int(v reflect.Value) int64 {
	fv := v.Field(f.index)
	if f.Unsigned {
		return int64(min(fv.Uint(), 1<<63-1))
	}
	return fv.Int()
}
