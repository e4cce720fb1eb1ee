package sim

import (
	"context"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"sync"
	"time"
)

// Errors of the simulated source.
var (
	// ErrSourceFailed is a call that failed at random, [Config.ErrorRate]
	// of them.
	ErrSourceFailed = errors.New("source: internal error")
	// ErrSourceDown is a call made during the outage.
	ErrSourceDown = errors.New("source: unavailable")
)

// latencySigma is the spread of the source's log-normal latency: its p99 is
// about 3.2 times its median.
const latencySigma = 0.5

// maxLatencyFactor caps one call's latency at this many times the median.
const maxLatencyFactor = 20

// A source is the simulated source of truth of one setup. Its calls are
// counted by the setup's recorder.
type source struct {
	e   *engine
	rec *recorder

	mu  sync.Mutex
	rng *rand.Rand
}

func newSource(e *engine, rec *recorder) *source {
	return &source{e: e, rec: rec, rng: rand.New(rand.NewPCG(e.cfg.Seed, math.MaxUint64))}
}

// load is the source as a loader: it returns the value of key after the
// source's latency, or fails. It returns early, with an error wrapping ctx's,
// when ctx ends.
func (s *source) load(ctx context.Context, key string) (string, error) {
	now := time.Now()
	s.rec.call(now)
	wait, err := s.draw(now)
	t := time.NewTimer(wait)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return "", fmt.Errorf("source: %w", ctx.Err())
	case <-t.C:
	}
	if err != nil {
		return "", err
	}
	return "value of " + key, nil
}

// draw decides how long a call made at now takes and whether it fails.
func (s *source) draw(now time.Time) (time.Duration, error) {
	if s.e.inOutage(now) {
		return s.e.cfg.OutageHang, ErrSourceDown
	}
	s.mu.Lock()
	n, u := s.rng.NormFloat64(), s.rng.Float64()
	s.mu.Unlock()
	median := s.e.cfg.Latency
	d := min(time.Duration(float64(median)*math.Exp(latencySigma*n)), maxLatencyFactor*median)
	if u < s.e.cfg.ErrorRate {
		return d, ErrSourceFailed
	}
	return d, nil
}
