// Package histogram counts durations for the command's reports.
package histogram

import (
	"math/bits"
	"time"
)

// A Histogram counts durations in log-linear buckets: exact below 32ns, then
// 32 buckets per power of two, so a quantile is within about 3% of the true
// one. Its zero value is empty and ready; it is not safe for concurrent use.
type Histogram struct {
	counts []uint64
	n      uint64
	max    time.Duration
}

const (
	histSubBits = 5
	histSub     = 1 << histSubBits
)

func histIndex(d time.Duration) int {
	v := uint64(max(d, 0))
	if v < histSub {
		return int(v)
	}
	shift := bits.Len64(v) - histSubBits - 1 // v>>shift is in [histSub, 2*histSub)
	return (shift+1)*histSub + int(v>>shift) - histSub
}

// histRange returns the smallest duration of bucket i and the bucket's width.
func histRange(i int) (lo, width time.Duration) {
	if i < histSub {
		return time.Duration(i), 1
	}
	shift := i/histSub - 1
	return time.Duration(uint64(i%histSub+histSub) << shift), time.Duration(uint64(1) << shift)
}

// Add counts d.
func (h *Histogram) Add(d time.Duration) {
	i := histIndex(d)
	if i >= len(h.counts) {
		h.counts = append(h.counts, make([]uint64, i+1-len(h.counts))...)
	}
	h.counts[i]++
	h.n++
	h.max = max(h.max, d)
}

// Quantile returns the q-quantile (q in [0, 1]) as the middle of its bucket,
// never more than the largest duration added; 0 for an empty histogram.
func (h *Histogram) Quantile(q float64) time.Duration {
	if h.n == 0 {
		return 0
	}
	rank := uint64(q*float64(h.n-1)) + 1 // 1-based rank of the q-quantile
	var seen uint64
	for i, c := range h.counts {
		seen += c
		if seen >= rank {
			lo, w := histRange(i)
			return min(lo+w/2, h.max)
		}
	}
	return h.max
}

// Merge adds the counts of o to h.
func (h *Histogram) Merge(o *Histogram) {
	if len(o.counts) > len(h.counts) {
		h.counts = append(h.counts, make([]uint64, len(o.counts)-len(h.counts))...)
	}
	for i, c := range o.counts {
		h.counts[i] += c
	}
	h.n += o.n
	h.max = max(h.max, o.max)
}

// Max returns the largest duration added.
func (h *Histogram) Max() time.Duration { return h.max }

// N returns how many durations were added.
func (h *Histogram) N() uint64 { return h.n }
