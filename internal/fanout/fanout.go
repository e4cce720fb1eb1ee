// Package fanout runs the per-key calls of a batch at once, bounded: the
// one loop that the cache's batches, the two-level store and the NATS store
// use when a store has no bulk call for a step.
package fanout

import (
	"sync"
	"sync/atomic"

	"github.com/herdcache/herd/internal/catch"
)

// Each calls fn(i) for every i in [0, n), on at most limit goroutines at
// once (one call on the caller's goroutine when n is 1), and returns when
// all have returned. A panic in fn stops the calls not yet started and is
// raised again on the caller's goroutine, with its value, once the others
// are done.
func Each(n, limit int, fn func(i int)) {
	switch {
	case n <= 0:
		return
	case n == 1:
		fn(0)
		return
	}
	var (
		next     atomic.Int64
		wg       sync.WaitGroup
		panicked atomic.Pointer[catch.Panic]
	)
	for range min(max(limit, 1), n) {
		wg.Go(func() {
			for i := int(next.Add(1) - 1); i < n && panicked.Load() == nil; i = int(next.Add(1) - 1) {
				if p := catch.Call(func() { fn(i) }, nil); p != nil {
					panicked.CompareAndSwap(nil, p)
				}
			}
		})
	}
	wg.Wait()
	if p := panicked.Load(); p != nil {
		panic(p.Value)
	}
}
