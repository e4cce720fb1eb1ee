package statfield_test

import (
	"reflect"
	"testing"
	"time"

	"github.com/herdcache/herd/internal/statfield"
)

type stats struct {
	N    uint64
	Took time.Duration
	Gone int
	Name string
}

func TestFindAndRead(t *testing.T) {
	typ := reflect.TypeFor[stats]()
	v := reflect.ValueOf(stats{N: 1<<64 - 1, Took: 1500 * time.Millisecond, Gone: -2})
	n, took, gone := statfield.Find("pkg", typ, "N", "n"), statfield.Find("pkg", typ, "Took", "took"), statfield.Find("pkg", typ, "Gone", "gone")
	if n.Float(v) != float64(1<<64-1) || n.Int(v) != 1<<63-1 {
		t.Errorf("N = %v, %v", n.Float(v), n.Int(v))
	}
	if !took.Duration || took.Float(v) != 1.5 {
		t.Errorf("Took = %v (duration %v)", took.Float(v), took.Duration)
	}
	if gone.Float(v) != -2 || gone.Int(v) != -2 {
		t.Errorf("Gone = %v, %v", gone.Float(v), gone.Int(v))
	}
	for _, tc := range []struct{ field, want string }{
		{"Missing", "pkg: statfield_test.stats has no field Missing for m"},
		{"Name", "pkg: field Name of statfield_test.stats is a string, not a number"},
	} {
		func() {
			defer func() {
				if r := recover(); r != tc.want {
					t.Errorf("Find(%s) panicked with %v, want %q", tc.field, r, tc.want)
				}
			}()
			statfield.Find("pkg", typ, tc.field, "m")
		}()
	}
}
