package fleet

import (
	"math/bits"
	"time"
)

// A histogram counts durations in log-linear buckets: exact below 32ns, then
// 32 buckets per power of two, so that a quantile is within about 3% of the
// true one. Its zero value is empty; it is not safe for concurrent use.
type histogram struct {
	counts []uint64
	n      uint64
	max    time.Duration
}

const histSub = 32

func histIndex(d time.Duration) int {
	v := uint64(max(d, 0))
	if v < histSub {
		return int(v)
	}
	shift := bits.Len64(v) - 6 // v>>shift is in [histSub, 2*histSub)
	return (shift+1)*histSub + int(v>>shift) - histSub
}

// histMiddle returns the middle of bucket i.
func histMiddle(i int) time.Duration {
	if i < histSub {
		return time.Duration(i)
	}
	shift := i/histSub - 1
	lo := uint64(i%histSub+histSub) << shift
	return time.Duration(lo + (uint64(1)<<shift)/2)
}

func (h *histogram) add(d time.Duration) {
	i := histIndex(d)
	if i >= len(h.counts) {
		h.counts = append(h.counts, make([]uint64, i+1-len(h.counts))...)
	}
	h.counts[i]++
	h.n++
	h.max = max(h.max, d)
}

func (h *histogram) merge(o *histogram) {
	if len(o.counts) > len(h.counts) {
		h.counts = append(h.counts, make([]uint64, len(o.counts)-len(h.counts))...)
	}
	for i, c := range o.counts {
		h.counts[i] += c
	}
	h.n += o.n
	h.max = max(h.max, o.max)
}

// quantile returns the q-quantile (q in [0, 1]), never more than the
// largest duration added; 0 for an empty histogram.
func (h *histogram) quantile(q float64) time.Duration {
	if h.n == 0 {
		return 0
	}
	rank := uint64(q*float64(h.n-1)) + 1
	var seen uint64
	for i, c := range h.counts {
		if seen += c; seen >= rank {
			return min(histMiddle(i), h.max)
		}
	}
	return h.max
}
