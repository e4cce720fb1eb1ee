package histogram

import (
	"math/rand/v2"
	"slices"
	"testing"
	"time"
)

func TestHistogramBuckets(t *testing.T) {
	for _, d := range []time.Duration{0, 1, 31, 32, 33, 63, 64, 65, 1000, time.Millisecond, time.Second, time.Hour, 1<<63 - 1} {
		i := histIndex(d)
		lo, w := histRange(i)
		if d < lo || d-lo >= w {
			t.Errorf("%v is in bucket %d = [%v, %v+%v)", d, i, lo, lo, w)
		}
		if i > 0 {
			plo, pw := histRange(i - 1)
			if plo+pw != lo {
				t.Errorf("bucket %d ends at %v, bucket %d starts at %v", i-1, plo+pw, i, lo)
			}
		}
	}
}

func TestHistogramQuantiles(t *testing.T) {
	var h Histogram
	if h.Quantile(0.5) != 0 {
		t.Fatal("quantile of an empty histogram")
	}
	rng := rand.New(rand.NewPCG(1, 2))
	var all []time.Duration
	for range 100_000 {
		d := time.Duration(rng.ExpFloat64() * float64(20*time.Millisecond))
		all = append(all, d)
		h.Add(d)
	}
	slices.Sort(all)
	for _, q := range []float64{0, 0.5, 0.9, 0.99, 0.999, 1} {
		exact := all[int(q*float64(len(all)-1))]
		got := h.Quantile(q)
		if diff := float64(got-exact) / float64(exact); diff > 0.04 || diff < -0.04 {
			t.Errorf("quantile(%v) = %v, exact %v", q, got, exact)
		}
	}
	if h.max != all[len(all)-1] || h.Quantile(1) != h.max {
		t.Errorf("max %v, quantile(1) %v, want %v", h.max, h.Quantile(1), all[len(all)-1])
	}
}
