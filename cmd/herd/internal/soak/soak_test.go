package soak

import (
	"math"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"go.uber.org/goleak"

	"github.com/herdcache/herd"
	"github.com/herdcache/herd/cmd/herd/internal/sim"
	"github.com/herdcache/herd/store"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// series makes the goroutine counts of 40 samples over 40 seconds, one a
// second, from f of the sample's time in seconds.
func series(f func(t float64) float64) []Sample {
	var ss []Sample
	for i := range 40 {
		ss = append(ss, Sample{At: time.Duration(i) * time.Second, Goroutines: int64(math.Round(f(float64(i)))), HeapLive: -1})
	}
	return ss
}

// The verdict on each shape of a resource over a run.
func TestJudge(t *testing.T) {
	const d = 40 * time.Second
	for _, tc := range []struct {
		name    string
		f       func(float64) float64
		growing bool
	}{
		{"flat", func(float64) float64 { return 100 }, false},
		{"noisy around a level", func(t float64) float64 { return 100 + 8*math.Sin(t*1.7) }, false},
		{"climbs, then levels off in the first half", func(t float64) float64 { return 100 + 300*min(t, 15)/15 }, false},
		{"a spike at the very end", func(t float64) float64 {
			if t == 39 {
				return 400
			}
			return 100
		}, false},
		{"a slow climb within the limits", func(t float64) float64 { return 100 + t/4 }, false},
		{"spikes on a level", func(t float64) float64 {
			if int(t)%7 == 3 || t >= 37 {
				return 160
			}
			return 100
		}, false},
		{"a steady climb", func(t float64) float64 { return 100 + 5*t }, true},
		{"a steady climb with spikes", func(t float64) float64 {
			if int(t)%7 == 3 {
				return 400
			}
			return 100 + 5*t
		}, true},
		{"a climb in steps", func(t float64) float64 { return 100 + 30*math.Floor(t/5) }, true},
	} {
		tr := Judge(Goroutines, series(tc.f), d)
		if !tr.Measured || !tr.Judged || tr.Growing != tc.growing {
			t.Errorf("%s: %+v; want growing %v", tc.name, tr, tc.growing)
		}
	}
	// Spikes on a level do not tilt the line.
	if tr := Judge(Goroutines, series(func(t float64) float64 {
		if t >= 36 {
			return 400
		}
		return 100
	}), d); tr.Rise != 0 || tr.FitAtTo != 100 {
		t.Errorf("spikes at the end: %+v", tr)
	}
	// A steady climb of 5 a second: the fit says so.
	if tr := Judge(Goroutines, series(func(t float64) float64 { return 100 + 5*t }), d); math.Abs(tr.PerSecond-5) > 0.01 || tr.End != 295 || tr.Start != 100 || tr.Mid != 200 {
		t.Errorf("steady climb: %+v", tr)
	}
	// Not measured, or too few samples in the second half to judge.
	if tr := Judge(HeapLive, series(func(float64) float64 { return 1 }), d); tr.Measured || tr.Judged || tr.Growing {
		t.Errorf("unmeasured: %+v", tr)
	}
	if tr := Judge(Goroutines, series(func(t float64) float64 { return 100 + 5*t })[:26], d); !tr.Measured || tr.Judged || tr.Growing {
		t.Errorf("six samples in the second half: %+v", tr)
	}
}

// scenario is a small long run: 30 seconds of 8 clients on 50 keys, three
// instances, sampled every half second.
func scenario() Config {
	c := Config{Sim: sim.Defaults, Sample: 500 * time.Millisecond}
	c.Sim.Duration, c.Sim.Clients, c.Sim.Keys, c.Sim.Instances, c.Sim.Outage = 30*time.Second, 8, 50, 3, 0
	return c
}

// A run of herd over the memory store, in a synctest bubble where its 30
// seconds take no real time: no resource grows in its second half.
func TestRunIsFlat(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r, err := Run(t.Context(), scenario())
		if err != nil {
			t.Fatal(err)
		}
		if len(r.Samples) != 60 || !r.Judged() || len(r.Trends) != len(Resources) {
			t.Fatalf("%d samples, judged %v, trends %+v", len(r.Samples), r.Judged(), r.Trends)
		}
		for _, tr := range r.Trends {
			if tr.Resource != OpenFiles && !tr.Judged {
				t.Errorf("%v was not judged: %+v", tr.Resource, tr)
			}
			if tr.Growing {
				t.Errorf("%v grows: %+v", tr.Resource, tr)
			}
		}
		keys := r.Trends[StoreKeys]
		if keys.End < 40 || keys.End > 50 {
			t.Errorf("%d keys in the store at the end, want most of the 50", keys.End)
		}
		last := r.Samples[len(r.Samples)-1]
		if last.Requests < 23_000 || last.Errors > last.Requests/50 {
			t.Errorf("last sample %+v: want about 24,000 requests, few errors", last)
		}
	})
}

// A cache whose observer leaks a goroutine every 50 events, as a bug
// would: the run says the goroutines grow, and nothing else.
func TestRunCatchesALeak(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		release := make(chan struct{})
		c := scenario()
		var events atomic.Int64
		leak := herd.ObserverFunc(func(herd.Event) {
			if events.Add(1)%50 == 0 {
				go func() { <-release }()
			}
		})
		c.Sim.NewCache = func(_ string, s store.Store[string], opts ...herd.Option) *herd.Cache[string] {
			return herd.New(s, append(opts, herd.WithObserver(leak))...)
		}
		r, err := Run(t.Context(), c)
		close(release)
		if err != nil {
			t.Fatal(err)
		}
		for _, tr := range r.Trends {
			if tr.Growing != (tr.Resource == Goroutines) {
				t.Errorf("%v: growing %v: %+v", tr.Resource, tr.Growing, tr)
			}
		}
		if g := r.Growing(); len(g) != 1 || g[0] != Goroutines {
			t.Errorf("growing: %v", g)
		}
	})
}
