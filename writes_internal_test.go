package herd

import (
	"context"
	"errors"
	"strconv"
	"testing"
	"testing/synctest"
	"time"
)

// After a burst of 100,000 loads in flight drains, the write guard holds no
// map: memory returns to its idle size (Go maps never give back buckets).
func TestRegressionWriteGuardKeepsBurstMemory(t *testing.T) {
	var g writeGuard
	pending := make([]registration, 100_000)
	for i := range pending {
		g.begin(strconv.Itoa(i), &pending[i])
	}
	for i := range pending {
		g.end(strconv.Itoa(i), &pending[i])
	}
	for i := range g.stripes {
		if s := &g.stripes[i]; s.m != nil {
			t.Fatalf("stripe %d keeps a map of peak %d after the burst drained", i, s.peak)
		}
	}
	// A small steady load keeps its map: no allocation per load.
	var p registration
	g.begin("k", &p)
	g.end("k", &p)
	if s := g.stripe("k"); s.m == nil {
		t.Fatal("a stripe dropped its map after a single load")
	}
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
