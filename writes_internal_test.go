package herd

import (
	"context"
	"errors"
	"runtime"
	"strconv"
	"testing"
	"testing/synctest"
	"time"

	"github.com/herdcache/herd/internal/keymap"
)

// After a burst of 100,000 loads in flight drains, the write guard holds
// about nothing: memory returns to its idle size (Go maps never give back
// buckets).
func TestRegressionWriteGuardKeepsBurstMemory(t *testing.T) {
	var g writeGuard
	keys := make([]string, 100_000)
	for i := range keys {
		keys[i] = strconv.Itoa(i)
	}
	pending := make([]registration, len(keys))
	before := heapAfterGC()
	for i, k := range keys {
		g.begin(k, &pending[i])
	}
	for i, k := range keys {
		g.end(k, &pending[i])
	}
	excess := int64(heapAfterGC()) - int64(before)
	runtime.KeepAlive(keys)
	runtime.KeepAlive(pending)
	if excess > 64<<10 {
		t.Fatalf("after a burst of %d loads drained, the write guard holds %d KiB", len(keys), excess>>10)
	}
	n := 0
	g.keys.Each(func(s *keymap.Stripe[guarded]) { n += s.Len() })
	if n != 0 {
		t.Fatalf("%d keys left in the write guard", n)
	}
}

func heapAfterGC() uint64 {
	var ms runtime.MemStats
	runtime.GC()
	runtime.GC()
	runtime.ReadMemStats(&ms)
	return ms.HeapAlloc
}

// A Set or Delete that arrives while a load stores its result waits for
// that write, then lands after it; one that arrives earlier supersedes the
// load, whose write then does not start.
func TestWriteGuardOrdersASetAfterTheLoadsWrite(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var g writeGuard
		var order []string
		var p registration
		g.begin("k", &p)
		if !g.startWrite(&p) {
			t.Fatal("an unsuperseded load may not write")
		}
		done := make(chan error)
		go func() {
			done <- g.supersede(context.Background(), "k", func() error {
				order = append(order, "set")
				return nil
			})
		}()
		synctest.Wait()
		select {
		case err := <-done:
			t.Fatalf("the Set landed (%v) while the load was storing its result", err)
		default:
		}
		order = append(order, "load")
		g.finishWrite(&p)
		if err := <-done; err != nil {
			t.Fatal(err)
		}
		g.end("k", &p)
		if len(order) != 2 || order[0] != "load" || order[1] != "set" {
			t.Fatalf("writes landed as %v, want [load set]", order)
		}

		// A Set before the write: the load's write does not start, and the
		// Set does not wait.
		var q registration
		g.begin("k", &q)
		if err := g.supersede(context.Background(), "k", func() error { return nil }); err != nil {
			t.Fatal(err)
		}
		if g.startWrite(&q) {
			t.Fatal("a superseded load may write")
		}
		g.end("k", &q)

		// A Set whose context ends while it waits returns its error.
		var r registration
		g.begin("k", &r)
		g.startWrite(&r)
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		if err := g.supersede(ctx, "k", func() error { return nil }); !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("a Set that could not wait returned %v", err)
		}
		g.finishWrite(&r)
		g.end("k", &r)
	})
}
