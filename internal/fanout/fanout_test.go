package fanout_test

import (
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"go.uber.org/goleak"

	"github.com/herdcache/herd/internal/fanout"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestEachCallsEveryIndexWithinTheLimit(t *testing.T) {
	synctest.Test(t, func(t *testing.T) { eachWithinTheLimit(t) })
}

func eachWithinTheLimit(t *testing.T) {
	for _, n := range []int{0, 1, 2, 50} {
		var calls [50]atomic.Int32
		var running, most atomic.Int32
		fanout.Each(n, 4, func(i int) {
			r := running.Add(1)
			for m := most.Load(); r > m && !most.CompareAndSwap(m, r); m = most.Load() {
			}
			time.Sleep(time.Millisecond)
			running.Add(-1)
			calls[i].Add(1)
		})
		for i := range n {
			if c := calls[i].Load(); c != 1 {
				t.Fatalf("n=%d: fn(%d) called %d times", n, i, c)
			}
		}
		if most.Load() > 4 {
			t.Fatalf("n=%d: %d calls at once, want at most 4", n, most.Load())
		}
	}
}

func TestEachRaisesAPanicOnTheCaller(t *testing.T) {
	defer func() {
		if r := recover(); r != "boom" {
			t.Fatalf("recovered %v, want boom", r)
		}
	}()
	fanout.Each(10, 3, func(i int) {
		if i == 5 {
			panic("boom")
		}
	})
}
