package autorefresh_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"golang.org/x/time/rate"

	"github.com/herdcache/herd/autorefresh"
	"github.com/herdcache/herd/flight"
	"github.com/herdcache/herd/internal/herdtest"
)

// job is the value type of the tests: the state of a remote job.
type job struct {
	State string
	Done  bool
}

type (
	item   = autorefresh.Item[string, job]
	result = autorefresh.Result[string, job]
	cache  = autorefresh.Cache[string, job]
)

// options configures a test cache field by field; a zero field leaves its
// option out, at its default.
type options struct {
	ResyncPeriod time.Duration
	BatchSize    int
	Parallelism  int
	RateLimit    rate.Limit
	RateBurst    int // 0: 1
	SyncTimeout  time.Duration
	MaxItems     int
	SyncOnCreate bool
	IsTerminal   func(job) bool
	Batcher      func([]item) [][]item
	Logger       *slog.Logger
	Observer     autorefresh.Observer
}

func (o options) list() []autorefresh.Option {
	var opts []autorefresh.Option
	add := func(set bool, opt func() autorefresh.Option) {
		if set {
			opts = append(opts, opt())
		}
	}
	add(o.ResyncPeriod != 0, func() autorefresh.Option { return autorefresh.ResyncPeriod(o.ResyncPeriod) })
	add(o.BatchSize != 0, func() autorefresh.Option { return autorefresh.BatchSize(o.BatchSize) })
	add(o.Parallelism != 0, func() autorefresh.Option { return autorefresh.Parallelism(o.Parallelism) })
	add(o.RateLimit != 0, func() autorefresh.Option { return autorefresh.RateLimit(o.RateLimit, max(o.RateBurst, 1)) })
	add(o.SyncTimeout != 0, func() autorefresh.Option { return autorefresh.SyncTimeout(o.SyncTimeout) })
	add(o.MaxItems != 0, func() autorefresh.Option { return autorefresh.MaxItems(o.MaxItems) })
	add(o.SyncOnCreate, autorefresh.SyncOnCreate)
	add(o.IsTerminal != nil, func() autorefresh.Option { return autorefresh.IsTerminal(o.IsTerminal) })
	add(o.Batcher != nil, func() autorefresh.Option { return autorefresh.Batcher(o.Batcher) })
	add(o.Logger != nil, func() autorefresh.Option { return autorefresh.WithLogger(o.Logger) })
	add(o.Observer != nil, func() autorefresh.Option { return autorefresh.WithObserver(o.Observer) })
	return opts
}

const period = time.Minute

// recorder is a sync function that records its calls and fails the test
// when an item is in two calls at once. Its behaviour is fn's; with fn nil,
// every item is unchanged.
type recorder struct {
	t            *testing.T
	fn           func(ctx context.Context, batch []item) ([]result, error)
	allowOverlap bool // for the test of a lost call, which is overlapped on purpose

	mu          sync.Mutex
	batches     [][]item
	starts      []time.Time
	synced      map[string]int
	running     map[string]bool
	inFlight    int
	maxInFlight int
}

func newRecorder(t *testing.T, fn func(context.Context, []item) ([]result, error)) *recorder {
	return &recorder{t: t, fn: fn, synced: map[string]int{}, running: map[string]bool{}}
}

func (r *recorder) sync(ctx context.Context, batch []item) ([]result, error) {
	r.mu.Lock()
	r.batches = append(r.batches, slices.Clone(batch))
	r.starts = append(r.starts, time.Now())
	for _, it := range batch {
		if r.running[it.ID] && !r.allowOverlap {
			r.t.Errorf("item %q is in two sync calls at once", it.ID)
		}
		r.running[it.ID] = true
		r.synced[it.ID]++
	}
	r.inFlight++
	r.maxInFlight = max(r.maxInFlight, r.inFlight)
	r.mu.Unlock()
	// Deferred so that a panic or Goexit in fn is recorded too.
	defer func() {
		r.mu.Lock()
		for _, it := range batch {
			delete(r.running, it.ID)
		}
		r.inFlight--
		r.mu.Unlock()
	}()
	if r.fn == nil {
		return nil, nil
	}
	return r.fn(ctx, batch)
}

func (r *recorder) calls() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.batches)
}

func (r *recorder) count(id string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.synced[id]
}

func (r *recorder) current() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.inFlight
}

// start creates and starts a cache on r, with logs discarded unless opts has
// a Logger, and closes it when the test ends.
func start(t *testing.T, r *recorder, opts options) *cache {
	t.Helper()
	c := create(t, r, opts)
	if err := c.Start(t.Context()); err != nil {
		t.Fatalf("Start: %v", err)
	}
	return c
}

func create(t *testing.T, r *recorder, opts options) *cache {
	t.Helper()
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	c := autorefresh.New(r.sync, opts.list()...)
	t.Cleanup(func() {
		if err := c.Close(context.Background()); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return c
}

// at sleeps until d after t0 and lets every goroutine of the bubble settle.
func at(t0 time.Time, d time.Duration) {
	time.Sleep(time.Until(t0.Add(d)))
	synctest.Wait()
}

func mustCreate(t *testing.T, c *cache, id string, v job) {
	t.Helper()
	if _, created, err := c.GetOrCreate(id, v); err != nil || !created {
		t.Fatalf("GetOrCreate(%q) = created %v, %v; want a new item", id, created, err)
	}
}

func mustGet(t *testing.T, c *cache, id string) job {
	t.Helper()
	v, err := c.Get(id)
	if err != nil {
		t.Fatalf("Get(%q): %v", id, err)
	}
	return v
}

func updateAll(state string) func(context.Context, []item) ([]result, error) {
	return func(_ context.Context, batch []item) ([]result, error) {
		out := make([]result, len(batch))
		for i, it := range batch {
			out[i] = result{ID: it.ID, Action: autorefresh.Update, Value: job{State: state}}
		}
		return out, nil
	}
}

// lockedBuffer is a log destination safe for concurrent writers.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// events collects what an Observer receives.
type events struct {
	mu sync.Mutex
	ev []autorefresh.Event
}

func (e *events) Observe(ev autorefresh.Event) {
	e.mu.Lock()
	e.ev = append(e.ev, ev)
	e.mu.Unlock()
}

func (e *events) of(kind autorefresh.EventKind) []autorefresh.Event {
	e.mu.Lock()
	defer e.mu.Unlock()
	var out []autorefresh.Event
	for _, ev := range e.ev {
		if ev.Kind == kind {
			out = append(out, ev)
		}
	}
	return out
}

func TestNewPanicsOnOptionsOutOfRange(t *testing.T) {
	syncFn := func(context.Context, []item) ([]result, error) { return nil, nil }
	for _, tc := range []struct {
		opt  func() autorefresh.Option
		want string
	}{
		{func() autorefresh.Option { return autorefresh.ResyncPeriod(0) }, "autorefresh: ResyncPeriod must be positive, got 0s"},
		{func() autorefresh.Option { return autorefresh.ResyncPeriod(-time.Second) }, "autorefresh: ResyncPeriod must be positive, got -1s"},
		{func() autorefresh.Option { return autorefresh.BatchSize(0) }, "autorefresh: BatchSize must be positive, got 0"},
		{func() autorefresh.Option { return autorefresh.Parallelism(-1) }, "autorefresh: Parallelism must be in [1, 10000], got -1"},
		{func() autorefresh.Option { return autorefresh.Parallelism(math.MaxInt) }, fmt.Sprintf("autorefresh: Parallelism must be in [1, 10000], got %d", math.MaxInt)},
		{func() autorefresh.Option { return autorefresh.RateLimit(-1, 1) }, "autorefresh: RateLimit must be positive (rate.Inf for no limit), got -1"},
		{func() autorefresh.Option { return autorefresh.RateLimit(1, 0) }, "autorefresh: RateLimit burst must be positive, got 0"},
		{func() autorefresh.Option { return autorefresh.SyncTimeout(0) }, "autorefresh: SyncTimeout must be positive, got 0s"},
		{func() autorefresh.Option { return autorefresh.MaxItems(-1) }, "autorefresh: MaxItems must be positive, got -1"},
		{func() autorefresh.Option { return autorefresh.IsTerminal[job](nil) }, "autorefresh: IsTerminal must not be nil"},
		{
			func() autorefresh.Option { return autorefresh.IsTerminal(func(string) bool { return false }) },
			"autorefresh: IsTerminal must be a func(autorefresh_test.job) bool, got func(string) bool",
		},
		{
			func() autorefresh.Option {
				return autorefresh.Batcher(func(items []autorefresh.Item[int, job]) [][]autorefresh.Item[int, job] { return nil })
			},
			"autorefresh: Batcher must be a func([]autorefresh.Item[string,", // then the type names, with their import paths
		},
	} {
		t.Run(tc.want, func(t *testing.T) {
			defer func() {
				if r, _ := recover().(string); !strings.HasPrefix(r, tc.want) {
					t.Fatalf("New panicked with %q, want %q", r, tc.want)
				}
			}()
			autorefresh.New(syncFn, tc.opt())
		})
	}
	func() {
		defer func() {
			if r := recover(); r != "autorefresh: New needs a SyncFunc, got nil" {
				t.Fatalf("New(nil) panicked with %v", r)
			}
		}()
		autorefresh.New[string, job](nil)
	}()
	c := autorefresh.New(syncFn, autorefresh.RateLimit(rate.Inf, 1), autorefresh.ResyncPeriod(math.MaxInt64))
	if err := c.Close(t.Context()); err != nil {
		t.Fatalf("Close before Start: %v", err)
	}
}

// Behaviour 1: every period, every non-terminal item is synced exactly once,
// in batches of at most BatchSize; terminal items never.
func TestEveryCycleSyncsEachNonTerminalItemOnce(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := newRecorder(t, func(context.Context, []item) ([]result, error) {
			time.Sleep(time.Second)
			return nil, nil
		})
		c := start(t, r, options{
			ResyncPeriod: period, BatchSize: 7, Parallelism: 3,
			IsTerminal: func(j job) bool { return j.Done },
		})
		t0 := time.Now()
		const n, terminal = 50, 5
		for i := range n {
			mustCreate(t, c, fmt.Sprint("job", i), job{Done: i < terminal})
		}
		at(t0, period-time.Second)
		if got := r.calls(); got != 0 {
			t.Fatalf("%d sync calls before the first period", got)
		}
		for cycle := 1; cycle <= 3; cycle++ {
			at(t0, time.Duration(cycle)*period+30*time.Second)
			for i := range n {
				want := cycle
				if i < terminal {
					want = 0
				}
				if got := r.count(fmt.Sprint("job", i)); got != want {
					t.Fatalf("after cycle %d, job%d synced %d times, want %d", cycle, i, got, want)
				}
			}
			// 45 items in batches of at most 7: 7 calls per cycle.
			if got, want := r.calls(), 7*cycle; got != want {
				t.Fatalf("after cycle %d: %d sync calls, want %d", cycle, got, want)
			}
			if s := c.Stats(); s.Cycles != uint64(cycle) || s.LastCycleItems != n-terminal {
				t.Fatalf("after cycle %d: Stats = %+v", cycle, s)
			}
		}
		for _, b := range r.batches {
			if len(b) == 0 || len(b) > 7 {
				t.Fatalf("a batch of %d items, want 1 to 7", len(b))
			}
		}
	})
}

func TestItemThatTurnsTerminalIsNoLongerSynced(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := newRecorder(t, func(_ context.Context, batch []item) ([]result, error) {
			var out []result
			for _, it := range batch {
				if it.ID == "finishing" {
					out = append(out, result{ID: it.ID, Action: autorefresh.Update, Value: job{State: "done", Done: true}})
				}
			}
			return out, nil
		})
		c := start(t, r, options{ResyncPeriod: period, IsTerminal: func(j job) bool { return j.Done }})
		t0 := time.Now()
		mustCreate(t, c, "finishing", job{})
		mustCreate(t, c, "running", job{})
		mustCreate(t, c, "updated", job{})
		at(t0, period+time.Second)
		// Between the cycles, a caller finishes "updated".
		if err := c.Update("updated", job{Done: true}); err != nil {
			t.Fatal(err)
		}
		at(t0, 3*period+time.Second)
		if got := r.count("finishing"); got != 1 {
			t.Fatalf("an item made terminal by its sync was synced %d times, want 1", got)
		}
		if got := r.count("updated"); got != 1 {
			t.Fatalf("an item made terminal by Update was synced %d times, want 1", got)
		}
		if got := r.count("running"); got != 3 {
			t.Fatalf("a running item was synced %d times in 3 cycles", got)
		}
		if v := mustGet(t, c, "finishing"); v.State != "done" {
			t.Fatalf("terminal item = %+v, want it kept with its last value", v)
		}
	})
}

func TestParallelismBoundsConcurrentCalls(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := newRecorder(t, func(context.Context, []item) ([]result, error) {
			time.Sleep(time.Second)
			return nil, nil
		})
		c := start(t, r, options{ResyncPeriod: period, BatchSize: 2, Parallelism: 3})
		t0 := time.Now()
		for i := range 20 {
			mustCreate(t, c, fmt.Sprint("job", i), job{})
		}
		at(t0, period)
		if got := r.current(); got != 3 {
			t.Fatalf("%d calls running at the start of the cycle, want 3", got)
		}
		at(t0, period+30*time.Second)
		if r.maxInFlight != 3 {
			t.Fatalf("at most %d calls ran at once, want exactly Parallelism (3)", r.maxInFlight)
		}
		if got := r.calls(); got != 10 {
			t.Fatalf("%d calls, want 10", got)
		}
	})
}

func TestRateLimitBoundsCallStarts(t *testing.T) {
	for _, burst := range []int{1, 3} {
		t.Run(fmt.Sprint("burst=", burst), func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				const limit, n = 5, 16
				r := newRecorder(t, nil)
				c := start(t, r, options{
					ResyncPeriod: period, BatchSize: 1, Parallelism: 4,
					RateLimit: limit, RateBurst: burst,
				})
				t0 := time.Now()
				for i := range n {
					mustCreate(t, c, fmt.Sprint("job", i), job{})
				}
				at(t0, period+30*time.Second)
				starts := r.starts
				if len(starts) != n {
					t.Fatalf("%d calls, want %d", len(starts), n)
				}
				// A token bucket of rate r and burst b lets at most b+1 calls
				// start in any window shorter than 1/r.
				for i := range len(starts) - burst {
					if gap := starts[i+burst].Sub(starts[i]); gap < time.Second/limit {
						t.Fatalf("calls %d and %d started %v apart, want at least %v", i, i+burst, gap, time.Second/limit)
					}
				}
				// At most limit calls per second once the burst is spent.
				perSecond := map[int64]int{}
				for _, s := range starts[burst:] {
					perSecond[s.Unix()]++
				}
				for sec, k := range perSecond {
					if k > limit {
						t.Fatalf("%d calls started in second %d, want at most %d", k, sec, limit)
					}
				}
				// And the limiter is the only brake: the last call starts as
				// soon as the rate allows.
				want := time.Duration(n-burst) * time.Second / limit
				if got := starts[n-1].Sub(starts[0]); got > want+time.Millisecond {
					t.Fatalf("the calls took %v to start, want %v", got, want)
				}
			})
		})
	}
}

// Behaviour 2: a call that takes longer than a period is not overlapped.
func TestLongCallIsNotOverlapped(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := newRecorder(t, func(ctx context.Context, batch []item) ([]result, error) {
			if batch[0].ID == "slow" {
				select {
				case <-time.After(period + period/2):
				case <-ctx.Done():
					t.Errorf("slow call cancelled: %v", ctx.Err())
				}
			}
			return nil, nil
		})
		c := start(t, r, options{ResyncPeriod: period, BatchSize: 1, Parallelism: 2})
		t0 := time.Now()
		mustCreate(t, c, "slow", job{})
		mustCreate(t, c, "fast", job{})
		// slow: synced at 1m (until 2m30s), skipped at 2m, synced at 3m
		// (until 4m30s), skipped at 4m. fast: every cycle.
		at(t0, 4*period+period/2)
		if got := r.count("slow"); got != 2 {
			t.Fatalf("slow item synced %d times in 4 periods, want 2", got)
		}
		if got := r.count("fast"); got != 4 {
			t.Fatalf("fast item synced %d times in 4 periods, want 4", got)
		}
		if s := c.Stats(); s.SkippedHeld != 2 {
			t.Fatalf("SkippedHeld = %d, want 2", s.SkippedHeld)
		}
	})
}

// Behaviour 2: the marks of a call lost past its deadline expire, and its
// late results are discarded.
func TestLostCallMarksExpire(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		releaseLost := make(chan struct{})
		releaseSecond := make(chan struct{})
		lostCtxErr := make(chan error, 1)
		r := newRecorder(t, nil)
		r.allowOverlap = true
		r.fn = func(ctx context.Context, batch []item) ([]result, error) {
			if r.count("a") == 1 {
				<-releaseLost // ignores ctx: lost
				lostCtxErr <- ctx.Err()
				return []result{{ID: "a", Action: autorefresh.Update, Value: job{State: "late"}}}, nil
			}
			<-releaseSecond
			return []result{{ID: "a", Action: autorefresh.Update, Value: job{State: "second"}}}, nil
		}
		c := start(t, r, options{ResyncPeriod: period, Parallelism: 2, SyncTimeout: period + period/2})
		t0 := time.Now()
		mustCreate(t, c, "a", job{State: "created"})
		at(t0, 2*period+time.Second)
		if got := r.count("a"); got != 1 {
			t.Fatalf("item synced %d times while its first call held it, want 1", got)
		}
		// The first call's deadline passed at 2m30s: the cycle at 3m syncs again.
		at(t0, 3*period+time.Second)
		if got := r.count("a"); got != 2 {
			t.Fatalf("item synced %d times after the lost call's deadline, want 2", got)
		}
		// The lost call returns while the second one runs: its result is
		// discarded, although the item has not changed.
		close(releaseLost)
		if err := <-lostCtxErr; !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("lost call's context: %v, want DeadlineExceeded", err)
		}
		synctest.Wait()
		if v := mustGet(t, c, "a"); v.State != "created" {
			t.Fatalf("the lost call's late result was applied: %+v", v)
		}
		if s := c.Stats(); s.ResultsDiscarded != 1 {
			t.Fatalf("ResultsDiscarded = %d, want 1", s.ResultsDiscarded)
		}
		close(releaseSecond)
		synctest.Wait()
		if v := mustGet(t, c, "a"); v.State != "second" {
			t.Fatalf("value %+v, want the second call's", v)
		}
	})
}

// Behaviour 2: a call that returns after its deadline is lost, even when no
// cycle has synced its items again yet.
func TestLateResultOfLostCallIsDiscarded(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := newRecorder(t, func(_ context.Context, batch []item) ([]result, error) {
			time.Sleep(20 * time.Second) // ignores its context
			return updateAll("late")(nil, batch)
		})
		var ev events
		c := start(t, r, options{ResyncPeriod: period, SyncTimeout: 10 * time.Second, Observer: &ev})
		t0 := time.Now()
		mustCreate(t, c, "a", job{State: "created"})
		at(t0, period+30*time.Second)
		if v := mustGet(t, c, "a"); v.State != "created" {
			t.Fatalf("a call that returned after its deadline updated the item to %+v", v)
		}
		if s := c.Stats(); s.ResultsDiscarded != 1 || s.Updated != 0 {
			t.Fatalf("Stats = %+v, want 1 result discarded", s)
		}
		if e := ev.of(autorefresh.EventDiscard); len(e) != 1 || e[0].Items != 1 {
			t.Fatalf("EventDiscard events = %+v, want one of 1 item", e)
		}
		at(t0, 2*period+time.Second)
		if got := r.count("a"); got != 2 {
			t.Fatalf("item synced %d times, want 2: the lost call's item is synced at the next cycle", got)
		}
	})
}

// Behaviour 3: a result is applied only if the item did not change since
// the call read it.
func TestChangeDuringCallWins(t *testing.T) {
	for _, tc := range []struct {
		name   string
		action autorefresh.Action
		change func(*cache) error
		want   func(t *testing.T, c *cache)
	}{
		{
			name: "Update wins over an update", action: autorefresh.Update,
			change: func(c *cache) error { return c.Update("a", job{State: "mine"}) },
			want:   wantState("a", "mine"),
		},
		{
			name: "Update wins over a delete", action: autorefresh.Delete,
			change: func(c *cache) error { return c.Update("a", job{State: "mine"}) },
			want:   wantState("a", "mine"),
		},
		{
			name: "re-create wins over an update", action: autorefresh.Update,
			change: func(c *cache) error {
				if err := c.Delete("a"); err != nil {
					return err
				}
				_, _, err := c.GetOrCreate("a", job{State: "new"})
				return err
			},
			want: wantState("a", "new"),
		},
		{
			name: "Delete wins over an update", action: autorefresh.Update,
			change: func(c *cache) error { return c.Delete("a") },
			want: func(t *testing.T, c *cache) {
				if _, err := c.Get("a"); !errors.Is(err, autorefresh.ErrNotFound) {
					t.Fatalf("Get(a) = %v, want the deleted item to stay deleted", err)
				}
			},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				release := make(chan struct{})
				r := newRecorder(t, func(_ context.Context, batch []item) ([]result, error) {
					<-release
					out := make([]result, len(batch))
					for i, it := range batch {
						out[i] = result{ID: it.ID, Action: tc.action, Value: job{State: "synced"}}
					}
					return out, nil
				})
				c := start(t, r, options{ResyncPeriod: period})
				t0 := time.Now()
				mustCreate(t, c, "a", job{})
				mustCreate(t, c, "b", job{})
				at(t0, period)
				if r.current() != 1 || len(r.batches[0]) != 2 {
					t.Fatalf("want one call with both items running, got %v", r.batches)
				}
				if err := tc.change(c); err != nil {
					t.Fatal(err)
				}
				close(release)
				synctest.Wait()
				tc.want(t, c)
				// b did not change: its result applies.
				v, err := c.Get("b")
				switch {
				case tc.action == autorefresh.Update && (err != nil || v.State != "synced"):
					t.Fatalf("Get(b) = %+v, %v; want the synced value", v, err)
				case tc.action == autorefresh.Delete && !errors.Is(err, autorefresh.ErrNotFound):
					t.Fatalf("Get(b) = %+v, %v; want b deleted by its result", v, err)
				}
				if s := c.Stats(); s.ResultsDiscarded != 1 {
					t.Fatalf("ResultsDiscarded = %d, want 1", s.ResultsDiscarded)
				}
			})
		})
	}
}

func wantState(id, state string) func(*testing.T, *cache) {
	return func(t *testing.T, c *cache) {
		t.Helper()
		if v := mustGet(t, c, id); v.State != state {
			t.Fatalf("Get(%q) = %+v, want state %q", id, v, state)
		}
	}
}

// A batch waiting for a worker reads its values when its call starts: a
// change made while it waited is synced rather than overwritten.
func TestCallReadsValuesWhenItStarts(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		release := make(chan struct{})
		r := newRecorder(t, nil)
		r.fn = func(_ context.Context, batch []item) ([]result, error) {
			if r.calls() == 1 {
				<-release // the only worker is busy: the other batch waits
			}
			it := batch[0]
			return []result{{ID: it.ID, Action: autorefresh.Update, Value: job{State: it.Value.State + "+synced"}}}, nil
		}
		c := start(t, r, options{ResyncPeriod: period, BatchSize: 1, Parallelism: 1})
		t0 := time.Now()
		mustCreate(t, c, "a", job{State: "v1"})
		mustCreate(t, c, "b", job{State: "v1"})
		at(t0, period)
		first := r.batches[0][0].ID
		waiting := map[string]string{"a": "b", "b": "a"}[first]
		if err := c.Update(waiting, job{State: "v2"}); err != nil {
			t.Fatal(err)
		}
		close(release)
		synctest.Wait()
		if got := r.batches[1][0].Value.State; got != "v2" {
			t.Fatalf("the waiting batch's call got %q, want the value updated while it waited", got)
		}
		if v := mustGet(t, c, waiting); v.State != "v2+synced" {
			t.Fatalf("Get(%q) = %+v, want its call's result applied", waiting, v)
		}
		if v := mustGet(t, c, first); v.State != "v1+synced" {
			t.Fatalf("Get(%q) = %+v", first, v)
		}
	})
}

// An item that becomes terminal, is deleted or is marked by DeleteDelayed
// while its batch waits for a worker is left out of the call.
func TestItemChangedBeforeItsCallIsLeftOut(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		release := make(chan struct{})
		r := newRecorder(t, nil)
		r.fn = func(context.Context, []item) ([]result, error) {
			if r.calls() == 1 {
				<-release // the only worker is busy: the other batches wait
			}
			return nil, nil
		}
		c := start(t, r, options{
			ResyncPeriod: period, BatchSize: 1, Parallelism: 1,
			IsTerminal: func(j job) bool { return j.Done },
		})
		t0 := time.Now()
		ids := []string{"a", "b", "c", "d", "e"}
		for _, id := range ids {
			mustCreate(t, c, id, job{})
		}
		at(t0, period)
		first := r.batches[0][0].ID
		waiting := slices.DeleteFunc(slices.Clone(ids), func(id string) bool { return id == first })
		if err := c.Update(waiting[0], job{Done: true}); err != nil {
			t.Fatal(err)
		}
		if err := c.Delete(waiting[1]); err != nil {
			t.Fatal(err)
		}
		if err := c.DeleteDelayed(waiting[2]); err != nil {
			t.Fatal(err)
		}
		close(release)
		synctest.Wait()
		for _, id := range waiting[:3] {
			if n := r.count(id); n != 0 {
				t.Fatalf("%s was passed to the sync function after it became terminal or deleted", id)
			}
		}
		if n := r.count(waiting[3]); n != 1 {
			t.Fatalf("an unchanged waiting item was synced %d times, want 1", n)
		}
		if got := r.calls(); got != 2 {
			t.Fatalf("%d calls, want 2: empty batches make no call", got)
		}
	})
}

// Behaviour 4: GetOrCreate is atomic.
func TestGetOrCreateIsAtomic(t *testing.T) {
	r := newRecorder(t, nil)
	c := create(t, r, options{})
	for round := range 20 {
		id := fmt.Sprint("job", round)
		const callers = 100
		type got struct {
			v       job
			created bool
			err     error
		}
		out := make(chan got, callers)
		var ready, wg sync.WaitGroup
		ready.Add(callers)
		for i := range callers {
			wg.Go(func() {
				ready.Done()
				ready.Wait() // start together
				v, created, err := c.GetOrCreate(id, job{State: fmt.Sprint(i)})
				out <- got{v, created, err}
			})
		}
		wg.Wait()
		close(out)
		var winner string
		creators := 0
		var values []string
		for g := range out {
			if g.err != nil {
				t.Fatal(g.err)
			}
			if g.created {
				creators++
				winner = g.v.State
			}
			values = append(values, g.v.State)
		}
		if creators != 1 {
			t.Fatalf("round %d: created reported %d times, want exactly once", round, creators)
		}
		for _, v := range values {
			if v != winner {
				t.Fatalf("round %d: a caller got %q, the creator stored %q", round, v, winner)
			}
		}
	}
	if c.Len() != 20 {
		t.Fatalf("Len = %d, want 20", c.Len())
	}
	s := c.Stats()
	if s.Created != 20 || s.Misses != 20 || s.Hits != 20*99 || s.Size != 20 {
		t.Fatalf("Stats = %+v, want 20 created, 20 misses, 1980 hits", s)
	}
}

func TestSyncOnCreate(t *testing.T) {
	for _, tc := range []struct {
		name         string
		syncOnCreate bool
		wantCalls    int
	}{
		{"on", true, 1},
		{"off", false, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				r := newRecorder(t, updateAll("synced"))
				c := create(t, r, options{
					ResyncPeriod: time.Hour, SyncOnCreate: tc.syncOnCreate, BatchSize: 2,
					IsTerminal: func(j job) bool { return j.Done },
				})
				t0 := time.Now()
				mustCreate(t, c, "before-start", job{})
				if err := c.Start(t.Context()); err != nil {
					t.Fatal(err)
				}
				synctest.Wait()
				if got := r.count("before-start"); got != tc.wantCalls {
					t.Fatalf("an item created before Start synced %d times at Start, want %d", got, tc.wantCalls)
				}
				mustCreate(t, c, "a", job{})
				mustCreate(t, c, "terminal", job{Done: true})
				// An existing item is not synced again by GetOrCreate.
				if _, created, _ := c.GetOrCreate("before-start", job{}); created {
					t.Fatal("GetOrCreate created an existing item")
				}
				synctest.Wait()
				if got := r.count("a"); got != tc.wantCalls {
					t.Fatalf("new item synced %d times before the first period, want %d", got, tc.wantCalls)
				}
				if got := r.count("before-start"); got != tc.wantCalls {
					t.Fatalf("existing item synced %d times, want %d", got, tc.wantCalls)
				}
				if got := r.count("terminal"); got != 0 {
					t.Fatalf("terminal item synced %d times", got)
				}
				if tc.syncOnCreate {
					if v := mustGet(t, c, "a"); v.State != "synced" {
						t.Fatalf("Get(a) = %+v, want the result of the sync on create", v)
					}
				}
				if time.Since(t0) != 0 {
					t.Fatalf("the sync on create happened %v after the creation, want at once", time.Since(t0))
				}
			})
		})
	}
}

// Behaviour 5: a failed sync keeps its items, is counted, and its items
// come up again at the next cycle, not before.
func TestSyncErrorKeepsItemsUntilNextCycle(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		errSource := errors.New("source down")
		r := newRecorder(t, nil)
		r.fn = func(_ context.Context, batch []item) ([]result, error) {
			if r.calls() == 1 {
				// Results that come with an error are discarded.
				return []result{{ID: batch[0].ID, Action: autorefresh.Delete}}, errSource
			}
			return updateAll("synced")(nil, batch)
		}
		var ev events
		var logs lockedBuffer
		c := start(t, r, options{
			ResyncPeriod: period, Observer: &ev,
			Logger: slog.New(slog.NewTextHandler(&logs, nil)),
		})
		t0 := time.Now()
		mustCreate(t, c, "a", job{State: "v1"})
		mustCreate(t, c, "b", job{State: "v1"})
		at(t0, period)
		if v := mustGet(t, c, "a"); v.State != "v1" || c.Len() != 2 {
			t.Fatalf("after a failed sync: a = %+v, Len = %d; want both items unchanged", v, c.Len())
		}
		if s := c.Stats(); s.SyncErrors != 1 || s.Syncs != 1 {
			t.Fatalf("Stats = %+v, want 1 sync error", s)
		}
		if e := ev.of(autorefresh.EventSyncError); len(e) != 1 || !errors.Is(e[0].Err, errSource) || e[0].Items != 2 {
			t.Fatalf("EventSyncError events = %+v", e)
		}
		if !strings.Contains(logs.String(), "source down") || !strings.Contains(logs.String(), "level=WARN") {
			t.Fatalf("the error was not logged as a warning:\n%s", logs.String())
		}
		// No retry before the next cycle.
		at(t0, 2*period-time.Second)
		if got := r.calls(); got != 1 {
			t.Fatalf("%d calls before the next cycle, want no retry (1)", got)
		}
		at(t0, 2*period)
		if r.count("a") != 2 || r.count("b") != 2 {
			t.Fatalf("items synced %d and %d times, want both retried at the next cycle", r.count("a"), r.count("b"))
		}
		if v := mustGet(t, c, "a"); v.State != "synced" {
			t.Fatalf("a = %+v after the retry", v)
		}
	})
}

// A source that is down fails every batch: the log gets one record per 10
// seconds, saying how many it left out, and Stats counts them all.
func TestSyncErrorsAreLoggedAtARate(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := newRecorder(t, func(context.Context, []item) ([]result, error) {
			return nil, errors.New("source down")
		})
		var logs lockedBuffer
		c := start(t, r, options{
			ResyncPeriod: period, BatchSize: 1, Parallelism: 5,
			Logger: slog.New(slog.NewTextHandler(&logs, nil)),
		})
		t0 := time.Now()
		for i := range 5 {
			mustCreate(t, c, fmt.Sprint("job", i), job{})
		}
		at(t0, 2*period)
		if s := c.Stats(); s.SyncErrors != 10 {
			t.Fatalf("SyncErrors = %d, want 10", s.SyncErrors)
		}
		lines := strings.Split(strings.TrimSpace(logs.String()), "\n")
		if len(lines) != 2 {
			t.Fatalf("%d log records for 10 errors in two cycles, want 2:\n%s", len(lines), logs.String())
		}
		if !strings.Contains(lines[1], "suppressed=4") {
			t.Fatalf("the second record does not count the 4 left out: %s", lines[1])
		}
	})
}

// Behaviour 5: a panicking sync is recovered with its stack logged, and
// the pool keeps its size.
func TestPanickingSyncIsRecovered(t *testing.T) {
	for _, tc := range []struct {
		name      string
		fail      func()
		wantLog   []string
		wantErrIs error
	}{
		{"panic", func() { panic("boom") }, []string{"level=ERROR", "boom", "autorefresh_test.TestPanickingSyncIsRecovered"}, nil},
		{"Goexit", runtime.Goexit, []string{"level=ERROR", "Goexit"}, flight.ErrGoexit},
	} {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				release := make(chan struct{})
				r := newRecorder(t, nil)
				r.fn = func(context.Context, []item) ([]result, error) {
					if r.calls() <= 4 {
						tc.fail()
					}
					<-release
					return nil, nil
				}
				var ev events
				var logs lockedBuffer
				c := start(t, r, options{
					ResyncPeriod: period, BatchSize: 1, Parallelism: 2, Observer: &ev,
					Logger: slog.New(slog.NewTextHandler(&logs, nil)),
				})
				t0 := time.Now()
				for i := range 4 {
					mustCreate(t, c, fmt.Sprint("job", i), job{})
				}
				at(t0, period)
				if s := c.Stats(); s.SyncPanics != 4 || s.SyncErrors != 0 || s.Size != 4 {
					t.Fatalf("after 4 failed calls: Stats = %+v", s)
				}
				for _, want := range tc.wantLog {
					if !strings.Contains(logs.String(), want) {
						t.Fatalf("log lacks %q:\n%s", want, logs.String())
					}
				}
				e := ev.of(autorefresh.EventSyncPanic)
				if len(e) != 4 {
					t.Fatalf("%d EventSyncPanic, want 4", len(e))
				}
				var pe *flight.PanicError
				if tc.wantErrIs != nil && !errors.Is(e[0].Err, tc.wantErrIs) {
					t.Fatalf("event error %v, want %v", e[0].Err, tc.wantErrIs)
				} else if tc.wantErrIs == nil && (!errors.As(e[0].Err, &pe) || pe.Value != "boom") {
					t.Fatalf("event error %v, want a *flight.PanicError of boom", e[0].Err)
				}
				// The next cycle still runs Parallelism calls at once.
				at(t0, 2*period)
				if got := r.current(); got != 2 {
					t.Fatalf("%d calls running after the panics, want the pool's 2", got)
				}
				close(release)
				synctest.Wait()
				if got := r.calls(); got != 8 {
					t.Fatalf("%d calls, want every item synced again (8)", got)
				}
			})
		})
	}
}

// Behaviour 6: MaxItems bounds the set by evicting the least recently used
// item.
func TestMaxItemsEvictsLeastRecentlyUsed(t *testing.T) {
	var ev events
	c := create(t, newRecorder(t, nil), options{MaxItems: 3, Observer: &ev})
	for _, id := range []string{"a", "b", "c"} {
		mustCreate(t, c, id, job{})
	}
	mustGet(t, c, "a") // use order, oldest first: b, c, a
	mustCreate(t, c, "d", job{})
	assertEvicted(t, c, "b")

	if err := c.Update("c", job{State: "used"}); err != nil { // oldest first: a, d, c
		t.Fatal(err)
	}
	mustCreate(t, c, "e", job{})
	assertEvicted(t, c, "a", "b")

	if _, _, err := c.GetOrCreate("d", job{}); err != nil { // oldest first: c, e, d
		t.Fatal(err)
	}
	mustCreate(t, c, "f", job{})
	assertEvicted(t, c, "a", "b", "c")
	for _, id := range []string{"d", "e", "f"} {
		mustGet(t, c, id)
	}

	if s := c.Stats(); s.Evictions != 3 || s.Size != 3 {
		t.Fatalf("Stats = %+v, want 3 evictions, size 3", s)
	}
	if e := ev.of(autorefresh.EventEvict); len(e) != 3 || e[0].Items != 1 {
		t.Fatalf("EventEvict events = %+v, want 3", e)
	}
}

// assertEvicted checks that the set holds 3 items and none of gone. It does
// not Get the items present, which would change their order of use.
func assertEvicted(t *testing.T, c *cache, gone ...string) {
	t.Helper()
	if c.Len() != 3 {
		t.Fatalf("Len = %d, want 3", c.Len())
	}
	for _, id := range gone {
		if _, err := c.Get(id); !errors.Is(err, autorefresh.ErrNotFound) {
			t.Fatalf("Get(%q) = %v, want it evicted", id, err)
		}
	}
}

// Behaviour 6: DeleteDelayed hides the item after the next cycle, and the
// item is not synced meanwhile.
func TestDeleteDelayedRemovesAtNextCycle(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := newRecorder(t, nil)
		c := start(t, r, options{ResyncPeriod: period})
		t0 := time.Now()
		mustCreate(t, c, "a", job{State: "v1"})
		mustCreate(t, c, "b", job{})
		if err := c.DeleteDelayed("a"); err != nil {
			t.Fatal(err)
		}
		if err := c.DeleteDelayed("missing"); err != nil {
			t.Fatalf("DeleteDelayed of a missing id: %v", err)
		}
		at(t0, period-time.Second)
		if v := mustGet(t, c, "a"); v.State != "v1" || c.Len() != 2 {
			t.Fatalf("before the cycle: a = %+v, Len = %d; want it still there", v, c.Len())
		}
		at(t0, period)
		if _, err := c.Get("a"); !errors.Is(err, autorefresh.ErrNotFound) {
			t.Fatalf("after the cycle: Get(a) = %v, want ErrNotFound", err)
		}
		if c.Len() != 1 || r.count("a") != 0 || r.count("b") != 1 {
			t.Fatalf("Len = %d, a synced %d times, b %d; want 1, 0, 1", c.Len(), r.count("a"), r.count("b"))
		}
	})
}

// Behaviour 6: re-creating an item after DeleteDelayed keeps the new item,
// whether the cycle came in between or not.
func TestRecreateAfterDeleteDelayedKeepsNewItem(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := newRecorder(t, nil)
		c := start(t, r, options{ResyncPeriod: period})
		t0 := time.Now()
		mustCreate(t, c, "before", job{State: "old"})
		mustCreate(t, c, "after", job{State: "old"})
		for _, id := range []string{"before", "after"} {
			if err := c.DeleteDelayed(id); err != nil {
				t.Fatal(err)
			}
		}
		// "before" is re-created before the cycle removes the old item.
		v, created, err := c.GetOrCreate("before", job{State: "new"})
		if err != nil || !created || v.State != "new" {
			t.Fatalf("GetOrCreate after DeleteDelayed = %+v, %v, %v; want the new item", v, created, err)
		}
		at(t0, period)
		// "after" is re-created after the cycle removed it.
		mustCreate(t, c, "after", job{State: "new"})
		at(t0, 3*period)
		for _, id := range []string{"before", "after"} {
			if v := mustGet(t, c, id); v.State != "new" {
				t.Fatalf("Get(%q) = %+v, want the re-created item", id, v)
			}
		}
		if r.count("before") != 3 || r.count("after") != 2 {
			t.Fatalf("re-created items synced %d and %d times, want 3 and 2", r.count("before"), r.count("after"))
		}
	})
}

// Behaviour 7: Close stops the cycles and workers, waits for running calls
// and lets their results land.
func TestCloseWaitsForRunningCalls(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := newRecorder(t, func(ctx context.Context, batch []item) ([]result, error) {
			select {
			case <-time.After(10 * time.Second):
			case <-ctx.Done():
				t.Errorf("a call was cancelled by a Close that could wait: %v", ctx.Err())
			}
			return updateAll("synced")(ctx, batch)
		})
		c := autorefresh.New(r.sync, autorefresh.ResyncPeriod(period), autorefresh.WithLogger(slog.New(slog.DiscardHandler)))
		if err := c.Start(t.Context()); err != nil {
			t.Fatal(err)
		}
		t0 := time.Now()
		mustCreate(t, c, "a", job{})
		at(t0, period+time.Second)
		if err := c.Close(t.Context()); err != nil {
			t.Fatalf("Close: %v", err)
		}
		if got := time.Since(t0); got != period+10*time.Second {
			t.Fatalf("Close returned at %v, want when the running call returned (%v)", got, period+10*time.Second)
		}
		if s := c.Stats(); s.Updated != 1 {
			t.Fatalf("the running call's result was not applied: %+v", s)
		}
		at(t0, 5*period)
		if got := r.calls(); got != 1 {
			t.Fatalf("%d calls after Close, want none (1 in all)", got)
		}
		if err := c.Close(t.Context()); err != nil {
			t.Fatalf("second Close: %v", err)
		}
		if _, _, err := c.GetOrCreate("b", job{}); !errors.Is(err, autorefresh.ErrClosed) {
			t.Fatalf("GetOrCreate after Close = %v, want ErrClosed", err)
		}
		for name, err := range map[string]error{
			"Start":         c.Start(t.Context()),
			"Update":        c.Update("a", job{}),
			"Delete":        c.Delete("a"),
			"DeleteDelayed": c.DeleteDelayed("a"),
		} {
			if !errors.Is(err, autorefresh.ErrClosed) {
				t.Errorf("%s after Close = %v, want ErrClosed", name, err)
			}
		}
		if _, err := c.Get("a"); !errors.Is(err, autorefresh.ErrClosed) {
			t.Fatalf("Get after Close = %v, want ErrClosed", err)
		}
	})
}

// Behaviour 7: Close waits only within its context, then ends the calls'
// contexts.
func TestCloseGivesUpAtItsContext(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		callErr := make(chan error, 1)
		r := newRecorder(t, func(ctx context.Context, _ []item) ([]result, error) {
			<-ctx.Done()
			callErr <- ctx.Err()
			return nil, ctx.Err()
		})
		c := start(t, r, options{ResyncPeriod: period})
		t0 := time.Now()
		mustCreate(t, c, "a", job{})
		at(t0, period)
		ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
		defer cancel()
		err := c.Close(ctx)
		if !errors.Is(err, context.DeadlineExceeded) || !strings.HasPrefix(err.Error(), "autorefresh: close: ") {
			t.Fatalf("Close = %v, want autorefresh: close: context deadline exceeded", err)
		}
		if got := time.Since(t0); got != period+5*time.Second {
			t.Fatalf("Close returned at %v, want at its deadline", got)
		}
		if err := <-callErr; !errors.Is(err, context.Canceled) {
			t.Fatalf("the running call's context: %v, want Canceled by Close", err)
		}
		// The workers are gone now: a second Close returns at once.
		if err := c.Close(t.Context()); err != nil {
			t.Fatalf("second Close: %v", err)
		}
		if time.Since(t0) != period+5*time.Second {
			t.Fatal("the second Close waited")
		}
	})
}

// Behaviour 7: batches not started when Close is called are never started.
func TestCloseDropsBatchesNotStarted(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		release := make(chan struct{})
		r := newRecorder(t, func(context.Context, []item) ([]result, error) {
			<-release
			return nil, nil
		})
		c := start(t, r, options{ResyncPeriod: period, BatchSize: 1, Parallelism: 1})
		t0 := time.Now()
		for i := range 5 {
			mustCreate(t, c, fmt.Sprint("job", i), job{})
		}
		at(t0, period)
		closed := make(chan error)
		go func() { closed <- c.Close(t.Context()) }()
		synctest.Wait()
		select {
		case err := <-closed:
			t.Fatalf("Close returned %v while a call was running", err)
		default:
		}
		close(release)
		if err := <-closed; err != nil {
			t.Fatal(err)
		}
		if got := r.calls(); got != 1 {
			t.Fatalf("%d calls, want only the one running at Close", got)
		}
	})
}

// Behaviour 7: a worker waiting for the rate limiter at Close drops its
// batch and returns at once.
func TestCloseDropsBatchesWaitingForTheRateLimiter(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := newRecorder(t, nil)
		c := start(t, r, options{ResyncPeriod: period, BatchSize: 1, Parallelism: 2, RateLimit: rate.Every(time.Hour)})
		t0 := time.Now()
		mustCreate(t, c, "a", job{})
		mustCreate(t, c, "b", job{})
		at(t0, period+time.Second)
		if got := r.calls(); got != 1 {
			t.Fatalf("%d calls, want 1: the other waits an hour for the limiter", got)
		}
		if err := c.Close(t.Context()); err != nil {
			t.Fatal(err)
		}
		if time.Since(t0) != period+time.Second {
			t.Fatalf("Close waited for the rate limiter until %v", time.Since(t0))
		}
		at(t0, 3*time.Hour)
		if got := r.calls(); got != 1 {
			t.Fatalf("%d calls, want the batch that waited at Close dropped", got)
		}
	})
}

// Behaviour 7: Start twice is an error.
func TestStartTwiceIsAnError(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c := start(t, newRecorder(t, nil), options{})
		if err := c.Start(t.Context()); !errors.Is(err, autorefresh.ErrAlreadyStarted) {
			t.Fatalf("second Start = %v, want ErrAlreadyStarted", err)
		}
		ctx, cancel := context.WithCancel(t.Context())
		cancel()
		c2 := create(t, newRecorder(t, nil), options{})
		if err := c2.Start(ctx); !errors.Is(err, context.Canceled) {
			t.Fatalf("Start on an ended context = %v, want Canceled", err)
		}
		if err := c2.Start(t.Context()); err != nil {
			t.Fatalf("Start after a refused Start: %v", err)
		}
	})
}

// When Start's context ends, the cache stops syncing and closes itself.
func TestStartContextEndStopsTheCache(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		callErr := make(chan error, 1)
		r := newRecorder(t, func(ctx context.Context, _ []item) ([]result, error) {
			<-ctx.Done()
			callErr <- ctx.Err()
			return nil, ctx.Err()
		})
		c := create(t, r, options{ResyncPeriod: period})
		ctx, cancel := context.WithCancel(t.Context())
		if err := c.Start(ctx); err != nil {
			t.Fatal(err)
		}
		t0 := time.Now()
		mustCreate(t, c, "a", job{})
		at(t0, period)
		cancel()
		if err := <-callErr; !errors.Is(err, context.Canceled) {
			t.Fatalf("running call's context: %v, want Canceled", err)
		}
		synctest.Wait()
		if _, _, err := c.GetOrCreate("b", job{}); !errors.Is(err, autorefresh.ErrClosed) {
			t.Fatalf("GetOrCreate after Start's context ended = %v, want ErrClosed", err)
		}
		at(t0, 5*period)
		if got := r.calls(); got != 1 {
			t.Fatalf("%d calls, want none after Start's context ended", got)
		}
	})
}

func TestBatcher(t *testing.T) {
	parity := func(items []item) [][]item {
		var odd, even []item
		for _, it := range items {
			if len(it.Value.State)%2 == 1 {
				odd = append(odd, it)
			} else {
				even = append(even, it)
			}
		}
		return [][]item{odd, even}
	}
	for _, tc := range []struct {
		name    string
		batcher func([]item) [][]item
		check   func(t *testing.T, batches [][]item)
	}{
		{"groups are kept and split to BatchSize", parity, func(t *testing.T, batches [][]item) {
			// 7 odd and 5 even items, BatchSize 4: 4+3 and 4+1.
			var sizes []int
			for _, b := range batches {
				for _, it := range b[1:] {
					if len(it.Value.State)%2 != len(b[0].Value.State)%2 {
						t.Fatalf("batch %v mixes the Batcher's groups", b)
					}
				}
				sizes = append(sizes, len(b))
			}
			slices.Sort(sizes)
			if !slices.Equal(sizes, []int{1, 3, 4, 4}) {
				t.Fatalf("batch sizes %v, want [1 3 4 4]", sizes)
			}
		}},
		{"repeated, invented and left out items", func(items []item) [][]item {
			return [][]item{items[:3], items[:6], {{ID: "invented"}}}
		}, nil},
		{"panic", func([]item) [][]item { panic("bad batcher") }, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				r := newRecorder(t, nil)
				c := start(t, r, options{ResyncPeriod: period, BatchSize: 4, Batcher: tc.batcher})
				t0 := time.Now()
				for i := range 12 {
					state := "x" // odd: job0 to job6
					if i >= 7 {
						state = "xx"
					}
					mustCreate(t, c, fmt.Sprint("job", i), job{State: state})
				}
				at(t0, period)
				for i := range 12 {
					if got := r.count(fmt.Sprint("job", i)); got != 1 {
						t.Fatalf("job%d synced %d times in a cycle, want 1", i, got)
					}
				}
				if r.count("invented") != 0 {
					t.Fatal("an item the Batcher invented was synced")
				}
				for _, b := range r.batches {
					if len(b) > 4 {
						t.Fatalf("batch of %d items, BatchSize is 4", len(b))
					}
				}
				if tc.check != nil {
					tc.check(t, r.batches)
				}
			})
		})
	}
}

// Behaviour 8: Stats and the Observer count what happened.
func TestStatsAndEvents(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := newRecorder(t, func(ctx context.Context, batch []item) ([]result, error) {
			time.Sleep(2 * time.Second)
			return updateAll("synced")(ctx, batch)
		})
		var ev events
		c := start(t, r, options{ResyncPeriod: period, BatchSize: 3, Parallelism: 2, Observer: &ev})
		t0 := time.Now()
		for i := range 7 {
			mustCreate(t, c, fmt.Sprint("job", i), job{})
		}
		mustGet(t, c, "job0")
		if _, err := c.Get("nope"); !errors.Is(err, autorefresh.ErrNotFound) {
			t.Fatalf("Get of a missing id = %v, want ErrNotFound", err)
		}
		at(t0, 2*period+time.Minute/2)
		want := autorefresh.Stats{
			Size: 7, Hits: 1, Misses: 8, Created: 7,
			Cycles: 2, LastCycleItems: 7,
			Syncs: 6, SyncTime: 6 * 2 * time.Second, ItemsSynced: 14,
			Updated: 14,
		}
		if got := c.Stats(); got != want {
			t.Fatalf("Stats =\n%+v, want\n%+v", got, want)
		}
		cycles := ev.of(autorefresh.EventCycle)
		if len(cycles) != 2 || cycles[1].Items != 7 {
			t.Fatalf("EventCycle events %+v, want 2 of 7 items", cycles)
		}
		syncs := ev.of(autorefresh.EventSync)
		items := 0
		for _, e := range syncs {
			items += e.Items
			if e.Duration != 2*time.Second || e.Err != nil {
				t.Fatalf("EventSync %+v, want a latency of 2s and no error", e)
			}
		}
		if len(syncs) != 6 || items != 14 {
			t.Fatalf("%d EventSync for %d items, want 6 for 14", len(syncs), items)
		}
	})
}

func TestKindsHaveNames(t *testing.T) {
	for k, want := range map[fmt.Stringer]string{
		autorefresh.Unchanged: "unchanged", autorefresh.Update: "update", autorefresh.Delete: "delete",
		autorefresh.Action(9):  "Action(9)",
		autorefresh.EventCycle: "cycle", autorefresh.EventSync: "sync", autorefresh.EventSyncError: "sync_error",
		autorefresh.EventSyncPanic: "sync_panic", autorefresh.EventEvict: "evict", autorefresh.EventDiscard: "discard",
		autorefresh.EventKind(0): "unknown", autorefresh.EventKind(99): "unknown",
	} {
		if got := k.String(); got != want {
			t.Errorf("String() = %q, want %q", got, want)
		}
	}
}

// TestRace hammers a running cache from many goroutines; run it under -race.
func TestRace(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := newRecorder(t, func(_ context.Context, batch []item) ([]result, error) {
			out := make([]result, 0, len(batch))
			for i, it := range batch {
				out = append(out, result{ID: it.ID, Action: autorefresh.Action(i % 3), Value: job{State: "s", Done: i%5 == 0}})
			}
			return out, nil
		})
		c := start(t, r, options{
			ResyncPeriod: time.Second, BatchSize: 3, Parallelism: 4, MaxItems: 20, RateLimit: 50,
			SyncOnCreate: true, IsTerminal: func(j job) bool { return j.Done },
		})
		var wg sync.WaitGroup
		for g := range 16 {
			wg.Go(func() {
				for i := range 300 {
					id := fmt.Sprint((g + i) % 30)
					switch i % 6 {
					case 0, 1:
						_, _, _ = c.GetOrCreate(id, job{})
					case 2:
						_, _ = c.Get(id)
					case 3:
						_ = c.Update(id, job{State: "u"})
					case 4:
						_ = c.DeleteDelayed(id)
					case 5:
						_ = c.Delete(id)
					}
					if i%10 == 0 {
						time.Sleep(100 * time.Millisecond)
					}
				}
			})
		}
		wg.Wait()
		if n := c.Len(); n > 20 {
			t.Fatalf("Len = %d beyond MaxItems", n)
		}
		if s := c.Stats(); s.Syncs == 0 || s.Cycles == 0 {
			t.Fatalf("nothing synced: %+v", s)
		}
	})
}

// Regressions.

// An Observer that panicked on the loop's or a worker's goroutine had
// nothing above it to recover the panic: the process died.
func TestRegressionAutorefreshObserverPanicOnOwnGoroutines(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var logs lockedBuffer
		r := newRecorder(t, updateAll("synced"))
		c := start(t, r, options{
			ResyncPeriod: period,
			Logger:       slog.New(slog.NewTextHandler(&logs, nil)),
			Observer: autorefresh.ObserverFunc(func(e autorefresh.Event) {
				panic("observer down: " + e.Kind.String())
			}),
		})
		t0 := time.Now()
		mustCreate(t, c, "a", job{})
		at(t0, period)
		at(t0, 2*period)
		if got := r.count("a"); got != 2 {
			t.Fatalf("a synced %d times in two cycles, want 2: the loop or a worker died", got)
		}
		if v := mustGet(t, c, "a"); v.State != "synced" {
			t.Fatalf("a = %+v, want the sync's result applied", v)
		}
		// Two cycle events and two sync events panicked.
		if s := c.Stats(); s.CallbackPanics != 4 || s.SyncPanics != 0 {
			t.Fatalf("Stats = %+v, want 4 callback panics and no sync panic", s)
		}
		if !strings.Contains(logs.String(), "observer down: cycle") || !strings.Contains(logs.String(), "level=ERROR") {
			t.Fatalf("the observer's panic was not logged:\n%s", logs.String())
		}
	})
}

// A failed sync is logged on the worker's goroutine: a logger whose handler
// panicked killed the process.
func TestRegressionAutorefreshLoggerPanicOnWorker(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := newRecorder(t, func(context.Context, []item) ([]result, error) {
			return nil, errors.New("source down")
		})
		var ev events
		c := start(t, r, options{ResyncPeriod: period, Logger: slog.New(herdtest.Panicking("handler down")), Observer: &ev})
		t0 := time.Now()
		mustCreate(t, c, "a", job{})
		at(t0, period)
		at(t0, 2*period)
		if got := r.count("a"); got != 2 {
			t.Fatalf("a synced %d times in two cycles, want 2: a worker died", got)
		}
		s := c.Stats()
		if s.SyncErrors != 2 || s.CallbackPanics == 0 {
			t.Fatalf("Stats = %+v, want 2 sync errors and the logger's panics counted", s)
		}
		if got := len(ev.of(autorefresh.EventSyncError)); got != 2 {
			t.Fatalf("%d EventSyncError, want 2: the observer still hears of each", got)
		}
	})
}

// GetOrCreate hashed its id with the mutex held and unlocked by hand: an id
// that cannot be a map key (an interface K holding a slice) panicked there
// and left every later call of the cache, and Close, hanging.
func TestRegressionAutorefreshPanicUnderMutex(t *testing.T) {
	c := autorefresh.New(func(context.Context, []autorefresh.Item[any, int]) ([]autorefresh.Result[any, int], error) {
		return nil, nil
	}, autorefresh.WithLogger(slog.New(slog.DiscardHandler)))
	func() {
		defer func() {
			if r := recover(); r == nil {
				t.Fatal("GetOrCreate of an unhashable id did not panic")
			}
		}()
		_, _, _ = c.GetOrCreate([]int{1}, 1)
	}()
	herdtest.Returns(t, "GetOrCreate and Close after the panic", func() error {
		if _, _, err := c.GetOrCreate("a", 1); err != nil {
			return err
		}
		return c.Close(context.Background())
	})
}

// Results were matched to their batch by id under the mutex, in a deferred
// function of the worker: a result whose id cannot be a map key killed the
// process. It is now the sync call's own panic.
func TestRegressionAutorefreshUnhashableResultID(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		calls := 0
		c := autorefresh.New(func(_ context.Context, batch []autorefresh.Item[any, int]) ([]autorefresh.Result[any, int], error) {
			calls++
			if calls == 1 {
				return []autorefresh.Result[any, int]{{ID: []int{1}, Action: autorefresh.Delete}}, nil
			}
			return []autorefresh.Result[any, int]{{ID: batch[0].ID, Action: autorefresh.Update, Value: 2}}, nil
		}, autorefresh.ResyncPeriod(period), autorefresh.WithLogger(slog.New(slog.DiscardHandler)))
		if err := c.Start(t.Context()); err != nil {
			t.Fatal(err)
		}
		defer func() {
			if err := c.Close(t.Context()); err != nil {
				t.Errorf("Close: %v", err)
			}
		}()
		t0 := time.Now()
		if _, _, err := c.GetOrCreate("a", 1); err != nil {
			t.Fatal(err)
		}
		at(t0, period)
		if s := c.Stats(); s.SyncPanics != 1 {
			t.Fatalf("Stats = %+v, want the bad result counted as the call's panic", s)
		}
		at(t0, 2*period)
		if v, err := c.Get("a"); v != 2 || err != nil {
			t.Fatalf("Get(a) = %d, %v; want the next cycle's result", v, err)
		}
	})
}

func TestRegressionAutorefreshNilContextPanics(t *testing.T) {
	c := create(t, newRecorder(t, nil), options{})
	for name, call := range map[string]func(){
		"Start": func() { _ = c.Start(nil) }, //nolint:staticcheck // SA1012: the point of the test
		"Close": func() { _ = c.Close(nil) }, //nolint:staticcheck // SA1012: the point of the test
	} {
		t.Run(name, func(t *testing.T) {
			defer func() {
				if r := recover(); r != "autorefresh: nil Context" {
					t.Fatalf("%s(nil) panicked with %v", name, r)
				}
			}()
			call()
		})
	}
}

// The number of batches of a cut was computed as (n+size-1)/size, which
// overflows for BatchSize(math.MaxInt): the loop panicked and the process
// died. Every bound an option accepts works.
func TestRegressionAutorefreshLargestOptionsWork(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := newRecorder(t, nil)
		c := start(t, r, options{
			ResyncPeriod: period, BatchSize: math.MaxInt, Parallelism: autorefresh.MaxParallelism,
			RateLimit: rate.Inf, RateBurst: math.MaxInt, MaxItems: math.MaxInt, SyncTimeout: math.MaxInt64,
		})
		t0 := time.Now()
		for _, id := range []string{"a", "b", "c"} {
			mustCreate(t, c, id, job{})
		}
		at(t0, period)
		r.mu.Lock()
		defer r.mu.Unlock()
		if len(r.batches) != 1 || len(r.batches[0]) != 3 {
			t.Fatalf("calls %v, want one of the 3 items", r.batches)
		}
	})
}
