package sim

import (
	"sync"
	"time"

	"github.com/herdcache/herd/cmd/herd/internal/histogram"
)

// A recorder counts what happens to one setup: its clients' requests and
// its source's calls, in total and per timeline bucket. It is safe for
// concurrent use.
type recorder struct {
	e *engine

	mu                             sync.Mutex
	requests, errors, outageErrors uint64
	stale, hits, calls             uint64
	late, unsent                   uint64
	latency, lag                   histogram.Histogram
	buckets                        []bucket
}

type bucket struct {
	requests, errors, calls uint64
	latency                 histogram.Histogram
}

// answer is how a setup answered a request that did not fail.
type answer struct {
	hit   bool // a cached value, fresh or stale
	stale bool // a value past its refresh time or TTL
}

func newRecorder(e *engine) *recorder {
	return &recorder{e: e, buckets: make([]bucket, e.buckets)}
}

// request records a request due at due, sent lag after that, that took
// took.
func (r *recorder) request(due time.Time, took, lag time.Duration, a answer, err error) {
	b := r.e.bucketOf(due)
	outage := r.e.inOutage(due)
	r.mu.Lock()
	defer r.mu.Unlock()
	r.requests++
	r.buckets[b].requests++
	r.latency.Add(took)
	r.buckets[b].latency.Add(took)
	r.lag.Add(lag)
	if lag > r.e.cfg.LateAfter() {
		r.late++
	}
	switch {
	case err != nil:
		r.errors++
		r.buckets[b].errors++
		if outage {
			r.outageErrors++
		}
	default:
		if a.hit {
			r.hits++
		}
		if a.stale {
			r.stale++
		}
	}
}

// notSent records a request that was not sent: its deadline passed before
// the machine could send it.
func (r *recorder) notSent() {
	r.mu.Lock()
	r.unsent++
	r.mu.Unlock()
}

// call records a call of the source started at t.
func (r *recorder) call(t time.Time) {
	b := r.e.bucketOf(t)
	r.mu.Lock()
	r.calls++
	r.buckets[b].calls++
	r.mu.Unlock()
}

func (r *recorder) progress(k Kind) SetupProgress {
	r.mu.Lock()
	defer r.mu.Unlock()
	return SetupProgress{Kind: k, Requests: r.requests, Errors: r.errors, SourceCalls: r.calls}
}

// report returns the numbers of setup k.
func (r *recorder) report(kind Kind) SetupReport {
	r.mu.Lock()
	defer r.mu.Unlock()
	s := SetupReport{
		Kind: kind, Requests: r.requests, Errors: r.errors, OutageErrors: r.outageErrors,
		Stale: r.stale, Hits: r.hits, SourceCalls: r.calls, Late: r.late, NotSent: r.unsent,
		P50: r.latency.Quantile(0.50), P99: r.latency.Quantile(0.99), Max: r.latency.Max(),
		LagP99: r.lag.Quantile(0.99), LagMax: r.lag.Max(),
		Timeline: make([]Point, len(r.buckets)),
	}
	for i := range r.buckets {
		b := &r.buckets[i]
		s.Timeline[i] = Point{
			At: time.Duration(i) * r.e.bucket, Requests: b.requests, Errors: b.errors,
			SourceCalls: b.calls, P99: b.latency.Quantile(0.99),
		}
	}
	// The peak is the largest sum of calls over k consecutive buckets.
	k := r.e.peakWindowBuckets()
	var window, peak uint64
	for i := range r.buckets {
		window += r.buckets[i].calls
		if i >= k {
			window -= r.buckets[i-k].calls
		}
		peak = max(peak, window)
	}
	s.PeakCallsPerSec = float64(peak) / r.e.peakWindow().Seconds()
	return s
}
