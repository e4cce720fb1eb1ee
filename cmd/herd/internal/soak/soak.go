// Package soak is the long run of the herd command: one herd setup under a
// steady load for as long as asked, minutes to hours, while the process's
// live heap, goroutines and open files and the store's keys are sampled, so
// that a leak shows as a resource that keeps growing.
//
// A resource that grows at the start of a run and then levels off (a cache
// filling up, connections opened once) is no leak; one that still grows in
// the second half of the run is suspect. [Judge] fits a line through the
// samples of the second half (Theil–Sen: the median of the slopes between
// pairs of samples, which a few spikes do not tilt) and calls a resource
// growing when the line rises, over that half, by more than both an
// absolute floor and a share of the resource's level (see [Limits]), and
// the last quarter of the run sits above the first quarter of the second
// half: a steady climb, not a spike.
// A run needs at least [MinJudged] samples in its second half to be judged.
package soak

import (
	"context"
	"errors"
	"fmt"
	"os"
	"runtime"
	"runtime/metrics"
	"slices"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/herdcache/herd/cmd/herd/internal/sim"
	"github.com/herdcache/herd/store/memory"
)

// Config is a long run.
type Config struct {
	// Sim is the scenario. Run reads its one setup, [sim.HerdSWR]; a nil
	// Store is a memory store that the instances share.
	Sim sim.Config
	// Sample is the time between two samples.
	Sample time.Duration
}

// MaxSamples bounds the samples of a run: Duration / Sample.
const MaxSamples = 100_000

// Validate reports the first setting out of range, naming its flag.
func (c *Config) Validate() error {
	if c.Sample <= 0 {
		return fmt.Errorf("sample must be positive, got %v", c.Sample)
	}
	if c.Sim.Duration/c.Sample > MaxSamples {
		return fmt.Errorf("sample must be at least duration / %d (%v), got %v", MaxSamples, c.Sim.Duration/MaxSamples, c.Sample)
	}
	s := c.Sim
	s.Setups = []sim.Kind{sim.HerdSWR}
	return s.Validate()
}

// A Sample is a look at the process and the store at one time of the run.
// A resource that could not be measured is -1.
type Sample struct {
	At          time.Duration // since the clients started
	HeapLive    int64         // bytes of live heap, as of the last GC
	Goroutines  int64
	OpenFiles   int64 // file descriptors (connections included); -1 where /proc/self/fd is missing
	StoreKeys   int64 // keys of the run in the store; -1 when it cannot say
	Requests    uint64
	Errors      uint64
	SourceCalls uint64
}

// A Resource is one of the quantities a run samples.
type Resource int

// The resources a run samples, in the order of the reports.
const (
	HeapLive Resource = iota
	Goroutines
	OpenFiles
	StoreKeys
)

// Resources lists the resources in the order of the reports.
var Resources = []Resource{HeapLive, Goroutines, OpenFiles, StoreKeys}

func (r Resource) String() string {
	switch r {
	case HeapLive:
		return "live heap"
	case Goroutines:
		return "goroutines"
	case OpenFiles:
		return "open files"
	case StoreKeys:
		return "store keys"
	}
	return fmt.Sprintf("resource %d", int(r))
}

// Of returns the resource's value in s.
func (r Resource) Of(s *Sample) int64 {
	switch r {
	case HeapLive:
		return s.HeapLive
	case Goroutines:
		return s.Goroutines
	case OpenFiles:
		return s.OpenFiles
	case StoreKeys:
		return s.StoreKeys
	}
	return -1
}

// A Limit is how much a resource may rise over the second half of a run
// before it counts as growing: more than Floor and more than Share of its
// level.
type Limit struct {
	Floor float64
	Share float64
}

// Limits of each resource: a heap may wander by a few MiB and a tenth, a
// goroutine or a file comes and goes with the requests in flight, keys with
// their expiry.
var Limits = map[Resource]Limit{
	HeapLive:   {Floor: 4 << 20, Share: 0.10},
	Goroutines: {Floor: 20, Share: 0.10},
	OpenFiles:  {Floor: 8, Share: 0.10},
	StoreKeys:  {Floor: 20, Share: 0.05},
}

// MinJudged is how many samples the second half of a run needs to be
// judged.
const MinJudged = 8

// A Trend is what the samples say of one resource.
type Trend struct {
	Resource   Resource
	Measured   bool    // the resource was measured in the second half
	Judged     bool    // enough samples to judge
	Start      int64   // the first sample's value
	Mid        int64   // the value at the middle of the run
	End        int64   // the last sample's value
	Level      float64 // the mean over the second half
	PerSecond  float64 // the slope of the line fitted over the second half
	Rise       float64 // how much the line rises over the second half
	Growing    bool    // Rise beyond the Limit, and a steady climb
	FitFrom    time.Duration
	FitTo      time.Duration
	FitAtFrom  float64 // the fitted line's value at FitFrom
	FitAtTo    float64 // and at FitTo
	LimitFloor float64 // the rise allowed: max(Floor, Share × Level)
}

// Judge returns the trend of r in samples, taken over a run of length d.
func Judge(r Resource, samples []Sample, d time.Duration) Trend {
	t := Trend{Resource: r, Start: -1, Mid: -1, End: -1}
	var xs, ys []float64
	for i := range samples {
		s := &samples[i]
		v := r.Of(s)
		if v < 0 {
			continue
		}
		if t.Start < 0 {
			t.Start = v
		}
		if s.At <= d/2 || t.Mid < 0 {
			t.Mid = v
		}
		t.End = v
		if s.At >= d/2 {
			xs, ys = append(xs, s.At.Seconds()), append(ys, float64(v))
		}
	}
	t.Measured = len(xs) > 0
	if len(xs) < MinJudged {
		return t
	}
	t.Judged = true
	slope, intercept := theilSen(xs, ys)
	first, last := xs[0], xs[len(xs)-1]
	var sum float64
	for _, y := range ys {
		sum += y
	}
	t.Level = sum / float64(len(ys))
	t.PerSecond = slope
	t.Rise = slope * (last - first)
	t.FitFrom, t.FitTo = time.Duration(first*float64(time.Second)), time.Duration(last*float64(time.Second))
	t.FitAtFrom, t.FitAtTo = intercept+slope*first, intercept+slope*last
	lim := Limits[r]
	t.LimitFloor = max(lim.Floor, lim.Share*t.Level)
	q := max(len(ys)/4, 1)
	early, late := median(ys[:q]), median(ys[len(ys)-q:])
	t.Growing = t.Rise > t.LimitFloor && late-early > t.LimitFloor/2
	return t
}

// maxFitted bounds the samples a line is fitted through: more are thinned
// evenly, so that the fit's cost, quadratic in the samples, stays small
// over a run of hours.
const maxFitted = 400

// theilSen fits a line through the points (xs, ys): its slope is the
// median of the slopes between every two points, its intercept the median
// of y - slope·x. Unlike least squares, a few samples far off the line (a
// burst of requests in flight, a GC that came late) do not tilt it.
func theilSen(xs, ys []float64) (slope, intercept float64) {
	if n := len(xs); n > maxFitted {
		tx, ty := make([]float64, maxFitted), make([]float64, maxFitted)
		for i := range maxFitted {
			j := i * (n - 1) / (maxFitted - 1)
			tx[i], ty[i] = xs[j], ys[j]
		}
		xs, ys = tx, ty
	}
	var slopes []float64
	for i := range xs {
		for j := i + 1; j < len(xs); j++ {
			if dx := xs[j] - xs[i]; dx > 0 {
				slopes = append(slopes, (ys[j]-ys[i])/dx)
			}
		}
	}
	if len(slopes) == 0 {
		return 0, median(ys)
	}
	slope = median(slopes)
	rest := make([]float64, len(xs))
	for i := range xs {
		rest[i] = ys[i] - slope*xs[i]
	}
	return slope, median(rest)
}

func median(vs []float64) float64 {
	s := slices.Clone(vs)
	sort.Float64s(s)
	return s[len(s)/2]
}

// Result is what a long run measured.
type Result struct {
	Config      Config
	Report      *sim.Report // the scenario's own numbers: requests, latency, load delivered
	Samples     []Sample
	Trends      []Trend // in the order of Resources
	Elapsed     time.Duration
	Interrupted bool
}

// Growing returns the resources that grew over the second half of the run.
func (r *Result) Growing() []Resource {
	var out []Resource
	for _, t := range r.Trends {
		if t.Growing {
			out = append(out, t.Resource)
		}
	}
	return out
}

// Judged reports whether the run was long enough, in samples, to judge.
func (r *Result) Judged() bool {
	for _, t := range r.Trends {
		if t.Judged {
			return true
		}
	}
	return false
}

// Run runs the long run of c: the herd (SWR+SIE) setup of c.Sim for its
// duration, sampled every c.Sample. It returns when the run and every
// goroutine it started have ended; when ctx ends first, it returns what
// it measured so far, marked Interrupted, with ctx's error.
func Run(ctx context.Context, c Config) (*Result, error) {
	if err := c.Validate(); err != nil {
		return nil, err
	}
	s := c.Sim
	s.Setups = []sim.Kind{sim.HerdSWR}
	if s.Store == nil {
		m := memory.New[string](memory.MaxEntries(s.Keys + 1000))
		defer func() { _ = m.Close(context.WithoutCancel(ctx)) }()
		s.Store = func(context.Context, string) (sim.SharedStore, error) {
			return sim.SharedStore{Store: m, Locker: m, Close: func() {}, Keys: func(context.Context) (int64, error) {
				return int64(m.Len()), nil
			}}, nil
		}
	}
	// The first store opened counts the keys: the instances share them.
	var keys atomic.Pointer[func(context.Context) (int64, error)]
	open := s.Store
	s.Store = func(ctx context.Context, name string) (sim.SharedStore, error) {
		ss, err := open(ctx, name)
		if err == nil && ss.Keys != nil {
			keys.CompareAndSwap(nil, &ss.Keys)
		}
		return ss, err
	}
	// The clients' counts, as the scenario reports its progress.
	var (
		mu   sync.Mutex
		last sim.SetupProgress
	)
	s.ProgressEvery = min(c.Sample, sim.Defaults.ProgressEvery)
	progress := s.Progress
	started := make(chan time.Time, 1)
	s.Progress = func(p sim.Progress) {
		select {
		case started <- time.Now().Add(-p.Elapsed):
		default:
		}
		mu.Lock()
		if len(p.Setups) > 0 {
			last = p.Setups[0]
		}
		mu.Unlock()
		if progress != nil {
			progress(p)
		}
	}

	begin := time.Now()
	r := &Result{Config: c}
	sampled := make(chan struct{})
	samplerCtx, stop := context.WithCancel(ctx)
	defer stop()
	go func() {
		defer close(sampled)
		// The clients start once the stores are open: the first progress
		// report says when.
		var t0 time.Time
		select {
		case t0 = <-started:
		case <-samplerCtx.Done():
			return
		}
		timer := time.NewTimer(time.Until(t0))
		defer timer.Stop()
		for at := time.Duration(0); at < s.Duration; at += c.Sample {
			timer.Reset(time.Until(t0.Add(at)))
			select {
			case <-samplerCtx.Done():
				return
			case <-timer.C:
			}
			smp := measure(samplerCtx, keys.Load())
			smp.At = time.Since(t0)
			mu.Lock()
			smp.Requests, smp.Errors, smp.SourceCalls = last.Requests, last.Errors, last.SourceCalls
			mu.Unlock()
			r.Samples = append(r.Samples, smp)
		}
	}()
	rep, err := sim.Run(ctx, s)
	stop()
	<-sampled
	r.Elapsed = time.Since(begin)
	if rep == nil {
		return nil, err
	}
	r.Report = rep
	r.Interrupted = rep.Interrupted
	d := s.Duration
	if r.Interrupted && len(r.Samples) > 0 {
		d = r.Samples[len(r.Samples)-1].At
	}
	for _, res := range Resources {
		r.Trends = append(r.Trends, Judge(res, r.Samples, d))
	}
	return r, err
}

// measure samples the process and, if keys is not nil, the store.
func measure(ctx context.Context, keys *func(context.Context) (int64, error)) Sample {
	s := Sample{HeapLive: heapLive(), Goroutines: int64(runtime.NumGoroutine()), OpenFiles: openFiles(), StoreKeys: -1}
	if keys != nil {
		kctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		if n, err := (*keys)(kctx); err == nil {
			s.StoreKeys = n
		}
		cancel()
	}
	return s
}

// heapMetric is the runtime's count of live heap bytes, as of the last GC.
const heapMetric = "/gc/heap/live:bytes"

func heapLive() int64 {
	m := []metrics.Sample{{Name: heapMetric}}
	metrics.Read(m)
	if m[0].Value.Kind() != metrics.KindUint64 {
		return -1
	}
	return int64(m[0].Value.Uint64())
}

// openFiles counts the process's file descriptors, where the system lists
// them in /proc/self/fd; -1 elsewhere.
func openFiles() int64 {
	f, err := os.Open("/proc/self/fd")
	if err != nil {
		return -1
	}
	defer f.Close()
	names, err := f.Readdirnames(-1)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return -1
	}
	return int64(len(names)) - 1 // the directory itself, open to read it
}
