package herd

import (
	"strconv"
	"testing"
)

// After a burst of 100,000 loads in flight drains, the write guard holds no
// map: memory returns to its idle size (Go maps never give back buckets).
func TestRegressionWriteGuardKeepsBurstMemory(t *testing.T) {
	var g writeGuard
	pending := make([]*pendingWrite, 100_000)
	for i := range pending {
		pending[i] = g.begin(strconv.Itoa(i))
	}
	for i, p := range pending {
		g.end(strconv.Itoa(i), p)
	}
	for i := range g.stripes {
		if s := &g.stripes[i]; s.m != nil {
			t.Fatalf("stripe %d keeps a map of peak %d after the burst drained", i, s.peak)
		}
	}
	// A small steady load keeps its map: no allocation per load.
	p := g.begin("k")
	g.end("k", p)
	if s := g.stripe("k"); s.m == nil {
		t.Fatal("a stripe dropped its map after a single load")
	}
}
