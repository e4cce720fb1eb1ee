package herd

import (
	"sync/atomic"
	"testing"
	"time"
)

// eachKey calls fn once per index, whether it runs them one after another
// (quick calls) or in parallel (calls as slow as a round trip), and raises a
// panic of fn on its caller's goroutine.
func TestEachKey(t *testing.T) {
	for _, slow := range []bool{false, true} {
		const n = 100
		var calls [n]atomic.Int32
		eachKey(n, func(i int) {
			if slow {
				// A round trip's time, spent without sleeping.
				for start := time.Now(); time.Since(start) < 2*remoteCall; {
				}
			}
			calls[i].Add(1)
		})
		for i := range calls {
			if c := calls[i].Load(); c != 1 {
				t.Fatalf("slow=%v: index %d called %d times", slow, i, c)
			}
		}
	}
	defer func() {
		if r := recover(); r != "boom" {
			t.Fatalf("recovered %v, want the panic of fn", r)
		}
	}()
	eachKey(50, func(i int) {
		for start := time.Now(); time.Since(start) < 2*remoteCall; {
		}
		if i == 30 {
			panic("boom")
		}
	})
}
