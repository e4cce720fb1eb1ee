package herd

import (
	"context"
	"testing"
	"testing/synctest"
	"time"

	"github.com/herdcache/herd/store/memory"
)

// A store call is bounded by StoreTimeout, unless the caller's own deadline
// comes sooner: then the caller's context is used as it is, with no timer.
func TestStoreBound(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c := New(memory.New[int](), StoreTimeout(time.Second))
		defer func() { _ = c.Close(context.Background()) }()

		soon, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
		defer cancel()
		if got, done := c.storeBound(soon); got != soon {
			t.Fatal("a context with a sooner deadline was wrapped")
		} else {
			done()
		}

		late, cancel2 := context.WithTimeout(context.Background(), time.Hour)
		defer cancel2()
		for name, ctx := range map[string]context.Context{"no deadline": context.Background(), "a later deadline": late} {
			got, done := c.storeBound(ctx)
			d, ok := got.Deadline()
			if !ok || !d.Equal(time.Now().Add(time.Second)) {
				t.Fatalf("%s: bounded to %v (%v), want StoreTimeout from now", name, d, ok)
			}
			done()
			if got.Err() == nil {
				t.Fatalf("%s: the bound's cancel did not end it", name)
			}
		}
	})
}
