package herdtest

import (
	"context"
	"fmt"
	"testing"

	"github.com/herdcache/herd/store"
)

// ChangeWhileAway is what another instance does while one is cut away, on
// the keys "0" to "9" of a store that holds "v0" under "0", "1", ...: it
// sets "0" to "4" to "v1" and deletes "5" to "9".
func ChangeWhileAway(t testing.TB, other store.Store[string]) {
	t.Helper()
	ctx := context.Background()
	for i := range 10 {
		k := fmt.Sprint(i)
		var err error
		if i < 5 {
			err = other.Set(ctx, k, store.Entry[string]{Value: "v1"})
		} else {
			err = other.Delete(ctx, k)
		}
		if err != nil {
			t.Fatal(err)
		}
	}
}

// CheckBack reads the keys "0" to n-1 through s, the instance that was
// away, and fails t unless each reads as [ChangeWhileAway] left it: "v1"
// for "0" to "4", absent for "5" to "9", "v0" for the rest. when says
// when, for the failure's message.
func CheckBack(t testing.TB, s store.Store[string], n int, when string) {
	t.Helper()
	ctx := context.Background()
	for i := range n {
		k := fmt.Sprint(i)
		e, ok, err := s.Get(ctx, k)
		switch {
		case err != nil:
			t.Fatal(err)
		case i < 5 && (!ok || e.Value != "v1"):
			t.Fatalf("%q %s: %+v, %v; want v1", k, when, e, ok)
		case i >= 5 && i < 10 && ok:
			t.Fatalf("%q, deleted while away: %+v %s", k, e, when)
		case i >= 10 && (!ok || e.Value != "v0"):
			t.Fatalf("%q %s: %+v, %v; want v0", k, when, e, ok)
		}
	}
}
