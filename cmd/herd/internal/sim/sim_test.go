package sim

import (
	"context"
	"errors"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// scenario is a small scenario for tests: 20 seconds of fake time, 16
// clients reading 20 keys, a 6-second outage in the middle.
func scenario() Config {
	c := Defaults
	c.Clients = 16
	c.Keys = 20
	c.Outage = 6 * time.Second
	c.TTL = 2 * time.Second
	return c
}

// run runs c in a synctest bubble, so the run takes no real time.
func run(t *testing.T, c Config) *Report {
	t.Helper()
	var r *Report
	synctest.Test(t, func(t *testing.T) {
		var err error
		if r, err = Run(t.Context(), c); err != nil {
			t.Fatalf("Run: %v", err)
		}
	})
	return r
}

func setupOf(t *testing.T, r *Report, k Kind) *SetupReport {
	t.Helper()
	for i := range r.Setups {
		if r.Setups[i].Kind == k {
			return &r.Setups[i]
		}
	}
	t.Fatalf("no %v in the report", k)
	return nil
}

// The claims of the demo, on one run of every setup: herd cuts the source's
// calls by orders of magnitude and, with stale-if-error covering the outage,
// serves every request sent during it.
func TestScenario(t *testing.T) {
	c := scenario()
	r := run(t, c)
	none, plain := setupOf(t, r, NoCache), setupOf(t, r, PlainTTL)
	ttl, swr := setupOf(t, r, Herd), setupOf(t, r, HerdSWR)
	for _, s := range r.Setups {
		t.Logf("%-15v requests %6d  calls %6d  peak %6.0f/s  p50 %-8v p99 %-8v max %-8v errors %5d (outage %5d)  stale %5d  hits %.3f",
			s.Kind, s.Requests, s.SourceCalls, s.PeakCallsPerSec, s.P50, s.P99, s.Max, s.Errors, s.OutageErrors, s.Stale, s.HitRatio())
	}

	// Open-loop clients: every setup gets every scheduled request, on time
	// in a bubble, where the machine is never too busy.
	want := uint64(c.Clients) * uint64(c.Duration/c.Interval)
	for _, s := range r.Setups {
		if s.Requests != want || s.Late != 0 || s.NotSent != 0 || s.LagMax != 0 {
			t.Errorf("%v: %d requests, %d late, %d not sent, lag up to %v; want %d, all on time",
				s.Kind, s.Requests, s.Late, s.NotSent, s.LagMax, want)
		}
	}
	if v := r.Verdict(); !v.OK() {
		t.Errorf("verdict %+v, want OK", v)
	}
	if none.SourceCalls != none.Requests || none.Hits != 0 {
		t.Errorf("no cache: %d source calls and %d hits for %d requests", none.SourceCalls, none.Hits, none.Requests)
	}
	for _, s := range []*SetupReport{ttl, swr} {
		if s.SourceCalls*100 > none.SourceCalls {
			t.Errorf("%v: %d source calls, want at most 1/100 of no cache's %d", s.Kind, s.SourceCalls, none.SourceCalls)
		}
		if s.HerdStats == nil || s.HerdStats.Loads != s.SourceCalls {
			t.Errorf("%v: herd stats %+v, want %d loads", s.Kind, s.HerdStats, s.SourceCalls)
		}
	}
	// Without coalescing, the plain map calls the source for every request
	// that misses, and for every one during the outage.
	if plain.SourceCalls < 10*ttl.SourceCalls {
		t.Errorf("plain TTL map: %d source calls, want at least 10 times herd's %d", plain.SourceCalls, ttl.SourceCalls)
	}
	if plain.PeakCallsPerSec < 0.9*none.PeakCallsPerSec {
		t.Errorf("plain TTL map: peak %.0f calls/s, want about no cache's %.0f: during the outage every request calls the source",
			plain.PeakCallsPerSec, none.PeakCallsPerSec)
	}

	// The outage: every request fails without stale-if-error, none with it.
	outageRequests := uint64(c.Clients) * uint64(c.Outage/c.Interval)
	if none.OutageErrors != outageRequests {
		t.Errorf("no cache: %d errors during the outage, want all %d requests", none.OutageErrors, outageRequests)
	}
	if plain.OutageErrors == 0 || ttl.OutageErrors == 0 {
		t.Errorf("errors during a %v outage with a %v TTL: plain %d, herd (TTL) %d; want some",
			c.Outage, c.TTL, plain.OutageErrors, ttl.OutageErrors)
	}
	if swr.OutageErrors != 0 {
		t.Errorf("herd (SWR+SIE): %d errors during the outage, want 0", swr.OutageErrors)
	}
	if swr.Stale < outageRequests {
		t.Errorf("herd (SWR+SIE): %d stale values served, want at least the %d requests of the outage", swr.Stale, outageRequests)
	}
	if swr.Max > c.SWR().LoadTimeout {
		t.Errorf("herd (SWR+SIE): slowest request %v, want at most the load timeout %v", swr.Max, c.SWR().LoadTimeout)
	}
	if got := swr.HitRatio(); got < 0.95 {
		t.Errorf("herd (SWR+SIE): hit ratio %.3f, want at least 0.95", got)
	}

	// The timeline adds up to the totals.
	for _, s := range r.Setups {
		var calls, requests uint64
		for _, p := range s.Timeline {
			calls += p.SourceCalls
			requests += p.Requests
		}
		if calls != s.SourceCalls || requests != s.Requests {
			t.Errorf("%v: the timeline has %d calls and %d requests, the totals %d and %d",
				s.Kind, calls, requests, s.SourceCalls, s.Requests)
		}
		if len(s.Timeline) != int((c.Duration+r.Bucket-1)/r.Bucket) {
			t.Errorf("%v: %d points of %v for a %v run", s.Kind, len(s.Timeline), r.Bucket, c.Duration)
		}
	}
	if r.OutageFrom != 7*time.Second || r.OutageTo != 13*time.Second {
		t.Errorf("outage from %v to %v, want 7s to 13s", r.OutageFrom, r.OutageTo)
	}
}

// A source slower than every client's deadline fails every request: the
// verdict names both herd setups as failing, and the run as delivered.
func TestVerdictFailing(t *testing.T) {
	c := Defaults
	c.Duration, c.Clients, c.Keys, c.Outage = 2*time.Second, 2, 10, 0
	c.Latency, c.Timeout = 10*time.Second, 100*time.Millisecond
	r := run(t, c)
	v := r.Verdict()
	if len(v.Failing) != 2 || v.Failing[0] != Herd || v.Failing[1] != HerdSWR || len(v.Behind) != 0 || v.OK() {
		t.Fatalf("verdict %+v, want herd and herd-swr failing, none behind", v)
	}
	for _, k := range []Kind{Herd, HerdSWR} {
		if s := setupOf(t, r, k); s.ErrorRatio() != 1 {
			t.Errorf("%v: error ratio %v, want 1", k, s.ErrorRatio())
		}
	}
}

// A request that the machine sends late counts as late; one whose deadline
// passed before it could be sent is not sent, and counts as such; the
// verdict says the load was not delivered.
func TestLateAndUnsentRequests(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c := Defaults
		c.Duration, c.Keys = 2*time.Second, 10
		e := newEngine(&c, time.Now())
		s, err := e.newSetup(t.Context(), NoCache)
		if err != nil {
			t.Fatal(err)
		}
		defer s.close()
		// Each request is due the given time before it is sent.
		for _, ago := range []time.Duration{0, c.LateAfter(), c.LateAfter() + time.Millisecond, c.Timeout} {
			e.request(t.Context(), s, 0, "key:1", time.Now().Add(-ago))
		}
		got := s.report()
		if got.Requests != 3 || got.Late != 1 || got.NotSent != 1 || got.Due() != 4 || got.LagMax != c.LateAfter()+time.Millisecond {
			t.Fatalf("%d requests, %d late, %d not sent, %d due, lag up to %v; want 3, 1, 1, 4, %v",
				got.Requests, got.Late, got.NotSent, got.Due(), got.LagMax, c.LateAfter()+time.Millisecond)
		}
		if got.Behind() != 0.5 {
			t.Fatalf("behind %v, want 0.5", got.Behind())
		}
		r := Report{Config: c, Setups: []SetupReport{got}}
		if v := r.Verdict(); len(v.Behind) != 1 || v.OK() {
			t.Fatalf("verdict %+v, want no-cache behind", v)
		}
	})
}

// Several instances of a herd setup share one store and one lock: each key
// is loaded once across the fleet.
func TestInstancesLoadOnceAcrossTheFleet(t *testing.T) {
	for _, k := range []Kind{Herd, HerdSWR} {
		t.Run(k.ID(), func(t *testing.T) {
			c := Defaults
			c.Duration, c.Clients, c.Keys = 2*time.Second, 8, 5
			c.Outage, c.ErrorRate = 0, 0
			c.TTL = time.Hour
			c.Instances = 4
			c.Setups = []Kind{k}
			s := setupOf(t, run(t, c), k)
			if s.SourceCalls != uint64(c.Keys) || s.Errors != 0 {
				t.Fatalf("%d source calls and %d errors for %d keys over %d instances, want one call per key and no error",
					s.SourceCalls, s.Errors, c.Keys, c.Instances)
			}
			if s.HerdStats.LockWaits == 0 {
				t.Fatalf("no instance waited for another's load: %+v", *s.HerdStats)
			}
		})
	}
}

// The plain map, for contrast, gives each instance its own map and no
// coalescing: far more than one call per key.
func TestPlainMapStampedes(t *testing.T) {
	c := Defaults
	c.Duration, c.Clients, c.Keys = 2*time.Second, 8, 5
	c.Outage, c.ErrorRate = 0, 0
	c.TTL = time.Hour
	c.Setups = []Kind{PlainTTL}
	s := setupOf(t, run(t, c), PlainTTL)
	if s.SourceCalls < 3*uint64(c.Keys) {
		t.Fatalf("%d source calls for %d cold keys, want a stampede of several per key", s.SourceCalls, c.Keys)
	}
}

func TestProgress(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c := Defaults
		c.Duration, c.Clients, c.Keys, c.Outage = 4*time.Second, 2, 10, 2*time.Second
		c.ProgressEvery = 500 * time.Millisecond
		var got []Progress
		c.Progress = func(p Progress) { got = append(got, p) }
		if _, err := Run(t.Context(), c); err != nil {
			t.Fatal(err)
		}
		if len(got) < 7 {
			t.Fatalf("%d progress reports over %v every %v", len(got), c.Duration, c.ProgressEvery)
		}
		var outage bool
		for i, p := range got {
			outage = outage || p.Outage
			if len(p.Setups) != len(AllSetups) || p.Duration != c.Duration {
				t.Fatalf("report %d: %+v", i, p)
			}
			if i > 0 && (p.Elapsed < got[i-1].Elapsed || p.Setups[0].Requests < got[i-1].Setups[0].Requests) {
				t.Fatalf("report %d went backwards: %+v after %+v", i, p, got[i-1])
			}
		}
		if !outage {
			t.Fatal("no report during the outage")
		}
	})
}

// A run whose context ends stops early, reports what ran and leaves nothing
// behind (synctest.Test fails if a goroutine of the bubble outlives it).
func TestInterrupted(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c := scenario()
		ctx, cancel := context.WithTimeout(t.Context(), 3*time.Second)
		defer cancel()
		start := time.Now()
		r, err := Run(ctx, c)
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("Run = %v, want context.DeadlineExceeded", err)
		}
		if took := time.Since(start); took > 3*time.Second+c.OutageHang {
			t.Fatalf("an interrupted run took %v", took)
		}
		if r == nil || !r.Interrupted || r.Setups[0].Requests == 0 ||
			r.Setups[0].Requests >= uint64(c.Clients)*uint64(c.Duration/c.Interval) {
			t.Fatalf("report of an interrupted run: %+v", r)
		}
	})
}

func TestValidate(t *testing.T) {
	for _, tc := range []struct {
		change func(*Config)
		want   string
	}{
		{func(c *Config) { c.Duration = 0 }, "duration must be positive"},
		{func(c *Config) { c.Latency = -time.Second }, "latency must be positive"},
		{func(c *Config) { c.TTL = 0 }, "ttl must be positive"},
		{func(c *Config) { c.Clients = 0 }, "clients must be between 1"},
		{func(c *Config) { c.Keys = MaxKeys + 1 }, "keys must be between 1"},
		{func(c *Config) { c.Zipf = 1 }, "zipf must be"},
		{func(c *Config) { c.ErrorRate = 1 }, "errors must be"},
		{func(c *Config) { c.Outage = c.Duration }, "outage must be"},
		{func(c *Config) { c.Outage = -1 }, "outage must be"},
		{func(c *Config) { c.Instances = 0 }, "instances must be"},
		{func(c *Config) { c.Setups = []Kind{0} }, "unknown setup"},
		{func(c *Config) { c.Progress = func(Progress) {}; c.ProgressEvery = 0 }, "progress interval"},
	} {
		c := Defaults
		tc.change(&c)
		err := c.Validate()
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Validate() = %v, want an error containing %q", err, tc.want)
		}
		if _, runErr := Run(context.Background(), c); runErr == nil {
			t.Errorf("Run accepted an invalid config (%v)", err)
		}
	}
	c := Defaults
	if err := c.Validate(); err != nil {
		t.Fatalf("Defaults: %v", err)
	}
}

func TestKindNames(t *testing.T) {
	seen := map[string]bool{}
	for _, k := range AllSetups {
		if seen[k.ID()] || seen[k.String()] || strings.HasPrefix(k.ID(), "setup-") {
			t.Fatalf("%v: name %q or id %q repeated or missing", int(k), k, k.ID())
		}
		seen[k.ID()], seen[k.String()] = true, true
	}
	if got := Kind(9).String(); got != "setup-9" {
		t.Fatalf("Kind(9) = %q", got)
	}
}
