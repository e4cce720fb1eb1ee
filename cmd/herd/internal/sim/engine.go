package sim

import (
	"context"
	"math/rand/v2"
	"strconv"
	"sync"
	"time"
)

// An engine holds what the setups of one run share: the scenario, the start
// of the run, the keys and the timeline's buckets.
type engine struct {
	cfg                  *Config
	start                time.Time
	outageFrom, outageTo time.Duration
	keys                 []string
	bucket               time.Duration
	buckets              int
}

// timelinePoints is about how many buckets a timeline has.
const timelinePoints = 80

func newEngine(c *Config, start time.Time) *engine {
	e := &engine{cfg: c, start: start, keys: make([]string, c.Keys)}
	e.outageFrom, e.outageTo = c.OutageWindow()
	for i := range e.keys {
		e.keys[i] = "key:" + strconv.Itoa(i)
	}
	e.bucket = max((c.Duration / timelinePoints).Truncate(10*time.Millisecond), 10*time.Millisecond)
	e.buckets = int((c.Duration + e.bucket - 1) / e.bucket)
	return e
}

// bucketOf returns the timeline bucket of t; times past the end of the run
// (clean-up, requests still in flight) fall in the last one.
func (e *engine) bucketOf(t time.Time) int {
	i := int(t.Sub(e.start) / e.bucket)
	return min(max(i, 0), e.buckets-1)
}

// inOutage reports whether the source is down at t.
func (e *engine) inOutage(t time.Time) bool {
	d := t.Sub(e.start)
	return d >= e.outageFrom && d < e.outageTo
}

// peakWindowBuckets is how many buckets make the window over which peak
// source calls per second are counted: a second, or the whole run if it is
// shorter.
func (e *engine) peakWindowBuckets() int {
	k := int((time.Second + e.bucket - 1) / e.bucket)
	return min(k, e.buckets)
}

func (e *engine) peakWindow() time.Duration {
	return time.Duration(e.peakWindowBuckets()) * e.bucket
}

// client sends requests to s, one every Interval, until the end of the run
// or until ctx ends, and returns when they have all returned. The clients
// are open-loop, like the users of a service: a slow answer does not delay
// the next request, so every setup gets the same requests at the same times,
// and client id of every setup draws the same keys.
//
// A machine too busy to send a request at its time sends it late, and the
// request counts its lag; one whose deadline passed before it could be sent
// is not sent at all, and counted as such: so the backlog of an overloaded
// machine stays bounded, and the report can say the load was not delivered.
func (e *engine) client(ctx context.Context, s *setup, id int) {
	// The deadlines of a client's requests hang on a context of the
	// client's own. Hung on one context shared by every client, each
	// request would add itself to, then remove itself from, that context's
	// children under its one mutex: at tens of thousands of requests a
	// second the mutex becomes a convoy that every request queues on, the
	// requests pile up faster than they finish, and the run collapses.
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	rng := rand.New(rand.NewPCG(e.cfg.Seed, uint64(id)))
	var zipf *rand.Zipf
	if len(e.keys) > 1 {
		zipf = rand.NewZipf(rng, e.cfg.Zipf, 1, uint64(len(e.keys)-1))
	}
	var requests sync.WaitGroup
	defer requests.Wait()
	end := e.start.Add(e.cfg.Duration)
	// Clients start spread over the first interval, not in lockstep.
	next := e.start.Add(time.Duration(rng.Int64N(int64(e.cfg.Interval))))
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for ; next.Before(end); next = next.Add(e.cfg.Interval) {
		if !sleepUntil(ctx, timer, next) {
			return
		}
		key := e.keys[0]
		if zipf != nil {
			key = e.keys[zipf.Uint64()] // drawn even when not sent: the draws stay the same
		}
		if time.Since(next) >= e.cfg.Timeout {
			s.rec.notSent()
			continue
		}
		due := next
		requests.Go(func() { e.request(ctx, s, id, key, due) })
	}
}

// request sends one request of client id to s, due at due, and records it.
// Its deadline and its latency count from when it is sent; how late that
// was is recorded apart, as the load generator's lag, so that a setup is
// not blamed for the machine's.
func (e *engine) request(ctx context.Context, s *setup, id int, key string, due time.Time) {
	sent := time.Now()
	lag := sent.Sub(due)
	if lag >= e.cfg.Timeout {
		// The client would have given up on it before it could be sent.
		if ctx.Err() == nil {
			s.rec.notSent()
		}
		return
	}
	reqCtx, cancel := context.WithTimeout(ctx, e.cfg.Timeout)
	a, err := s.read(reqCtx, id, key)
	cancel()
	if ctx.Err() != nil {
		return // interrupted: this request says nothing about the setup
	}
	s.rec.request(due, time.Since(sent), lag, a, err)
}

// sleepUntil waits on timer until t, and reports false if ctx ended first.
func sleepUntil(ctx context.Context, timer *time.Timer, t time.Time) bool {
	d := time.Until(t)
	if d <= 0 {
		return ctx.Err() == nil
	}
	timer.Reset(d)
	select {
	case <-ctx.Done():
		timer.Stop()
		return false
	case <-timer.C:
		return true
	}
}

// reportProgress calls the Progress function of the scenario every
// ProgressEvery until ctx ends.
func (e *engine) reportProgress(ctx context.Context, setups []*setup) {
	tick := time.NewTicker(e.cfg.ProgressEvery)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-tick.C:
			p := Progress{
				Elapsed:  min(now.Sub(e.start), e.cfg.Duration),
				Duration: e.cfg.Duration,
				Outage:   e.inOutage(now),
			}
			for _, s := range setups {
				p.Setups = append(p.Setups, s.rec.progress(s.kind))
			}
			e.cfg.Progress(p)
		}
	}
}
