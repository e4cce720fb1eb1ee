package slot_test

import (
	"context"
	"errors"
	"log/slog"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/herdcache/herd/flight"
	"github.com/herdcache/herd/internal/herdtest"
	"github.com/herdcache/herd/slot"
)

var errBoom = errors.New("boom")

// quiet is the logger of the tests that fail refreshes without checking the log.
var quiet = slog.New(slog.DiscardHandler)

// withMode returns opts, and the Background option when background is set.
func withMode(background bool, opts ...slot.Option) []slot.Option {
	if background {
		return append(opts, slot.Background())
	}
	return opts
}

// result is what one caller of Get got.
type result struct {
	v   int
	err error
}

// startGets starts n goroutines calling s.Get(ctx, fetch) and returns a channel
// that receives each caller's result.
func startGets(ctx context.Context, s *slot.Slot[int], n int, fetch slot.FetchFunc[int]) <-chan result {
	out := make(chan result, n)
	for range n {
		go func() {
			v, err := s.Get(ctx, fetch)
			out <- result{v, err}
		}()
	}
	return out
}

// fetcher is a scripted fetch function: each call takes the next step. A step
// blocks on its release channel, if any, then returns its value, lifetime and
// error, or panics.
type fetcher struct {
	t     *testing.T
	mu    sync.Mutex
	steps []step
	calls int
	prevs []int // the prev argument of each call
}

type step struct {
	v       int
	ttl     time.Duration
	err     error
	panic   any
	goexit  bool
	release chan struct{}
}

func (f *fetcher) fetch(ctx context.Context, prev int) (int, time.Duration, error) {
	f.mu.Lock()
	if f.calls >= len(f.steps) {
		f.mu.Unlock()
		f.t.Errorf("unexpected fetch %d", f.calls+1)
		return 0, 0, errors.New("unexpected fetch")
	}
	st := f.steps[f.calls]
	f.calls++
	f.prevs = append(f.prevs, prev)
	f.mu.Unlock()
	if st.release != nil {
		<-st.release
	}
	switch {
	case st.panic != nil:
		panic(st.panic)
	case st.goexit:
		runtime.Goexit()
	}
	return st.v, st.ttl, st.err
}

func (f *fetcher) count() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.calls
}

// mustGet calls s.Get and fails the test unless it returns want and no error.
func mustGet(t *testing.T, s *slot.Slot[int], fetch slot.FetchFunc[int], want int) {
	t.Helper()
	v, err := s.Get(t.Context(), fetch)
	if err != nil || v != want {
		t.Fatalf("Get = %d, %v; want %d, nil", v, err, want)
	}
}

// recorder keeps every record logged to it.
type recorder struct{ herdtest.Recorder }

func (r *recorder) levels() []slog.Level {
	var ls []slog.Level
	for _, rec := range r.Records() {
		ls = append(ls, rec.Level)
	}
	return ls
}

// 1. First Get: callers wait for one fetch, each on its own context.

func TestFirstGetCallersShareOneFetch(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var s slot.Slot[int]
		release := make(chan struct{})
		f := &fetcher{t: t, steps: []step{{v: 42, release: release}}}
		const n = 50
		out := startGets(t.Context(), &s, n, f.fetch)
		synctest.Wait() // every caller now waits on the one fetch
		close(release)
		for range n {
			if r := <-out; r.err != nil || r.v != 42 {
				t.Fatalf("caller got %+v, want 42", r)
			}
		}
		if f.count() != 1 {
			t.Fatalf("%d fetches, want 1", f.count())
		}
	})
}

func TestFirstGetCallerReturnsOnItsOwnContext(t *testing.T) {
	// The caller whose context ends is the one that started the fetch (0),
	// or one that joined it (1).
	for leaving, name := range []string{"first caller leaves", "later caller leaves"} {
		t.Run(name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				var s slot.Slot[int]
				release := make(chan struct{})
				f := &fetcher{t: t, steps: []step{{v: 7, release: release}}}
				leaveCtx, leave := context.WithCancel(t.Context())
				ctxs := []context.Context{t.Context(), t.Context()}
				ctxs[leaving] = leaveCtx
				outs := make([]<-chan result, 2)
				for i, ctx := range ctxs {
					outs[i] = startGets(ctx, &s, 1, f.fetch)
					synctest.Wait()
				}
				leave()
				synctest.Wait()
				select {
				case r := <-outs[leaving]:
					if !errors.Is(r.err, context.Canceled) {
						t.Fatalf("leaving caller got %+v, want context.Canceled", r)
					}
				default:
					t.Fatal("leaving caller still waits after its context ended")
				}
				close(release)
				if r := <-outs[1-leaving]; r.err != nil || r.v != 7 {
					t.Fatalf("staying caller got %+v, want 7", r)
				}
				if f.count() != 1 {
					t.Fatalf("%d fetches, want 1", f.count())
				}
			})
		})
	}
}

func TestFirstGetIsNotBlockedByALock(t *testing.T) {
	// A caller with a deadline returns at its deadline while the first fetch
	// is still running: nothing holds a lock across the fetch.
	synctest.Test(t, func(t *testing.T) {
		var s slot.Slot[int]
		release := make(chan struct{})
		f := &fetcher{t: t, steps: []step{{v: 1, release: release}}}
		first := startGets(t.Context(), &s, 1, f.fetch)
		synctest.Wait()
		ctx, cancel := context.WithTimeout(t.Context(), time.Second)
		defer cancel()
		start := time.Now()
		_, err := s.Get(ctx, f.fetch)
		if !errors.Is(err, context.DeadlineExceeded) || time.Since(start) != time.Second {
			t.Fatalf("Get = %v after %v, want DeadlineExceeded after 1s", err, time.Since(start))
		}
		close(release)
		if r := <-first; r.v != 1 {
			t.Fatalf("first caller got %+v", r)
		}
	})
}

func TestFirstFetchErrorIsReturnedAndNothingKept(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		rec := &recorder{}
		s := slot.New[int](slot.RetryDelay(time.Hour), slot.WithLogger(slog.New(rec)))
		release := make(chan struct{})
		f := &fetcher{t: t, steps: []step{{err: errBoom, release: release}, {v: 5, ttl: time.Minute}}}
		out := startGets(t.Context(), s, 3, f.fetch)
		synctest.Wait()
		close(release)
		for range 3 {
			r := <-out
			if !errors.Is(r.err, errBoom) || r.v != 0 {
				t.Fatalf("caller got %+v, want an error wrapping boom", r)
			}
			if !strings.HasPrefix(r.err.Error(), "slot: ") {
				t.Fatalf("error %q lacks the package prefix", r.err)
			}
		}
		if got := rec.levels(); len(got) != 0 {
			t.Fatalf("logged %v: the callers got the error, it is not a failed refresh", got)
		}
		// No retry delay on a first fetch: the next Get fetches at once.
		mustGet(t, s, f.fetch, 5)
		if f.count() != 2 || f.prevs[1] != 0 {
			t.Fatalf("%d fetches, prev %v; want 2, the second with prev 0", f.count(), f.prevs)
		}
	})
}

func TestGetWithEndedContextStartsNoFetch(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := slot.New[int](slot.MaxStale(time.Minute))
		f := &fetcher{t: t, steps: []step{{v: 1, ttl: time.Minute}}}
		ended, cancel := context.WithCancel(t.Context())
		cancel()
		if _, err := s.Get(ended, f.fetch); !errors.Is(err, context.Canceled) {
			t.Fatalf("Get on an ended context with no value = %v, want context.Canceled", err)
		}
		mustGet(t, s, f.fetch, 1)
		// Fresh: served even on an ended context.
		if v, err := s.Get(ended, f.fetch); v != 1 || err != nil {
			t.Fatalf("fresh Get on an ended context = %d, %v", v, err)
		}
		// Stale within MaxStale: served, no refresh started.
		time.Sleep(time.Minute + time.Second)
		if v, err := s.Get(ended, f.fetch); v != 1 || err != nil {
			t.Fatalf("stale Get on an ended context = %d, %v", v, err)
		}
		// Older than MaxStale: nothing to serve without waiting.
		time.Sleep(time.Minute)
		if _, err := s.Get(ended, f.fetch); !errors.Is(err, context.Canceled) {
			t.Fatalf("too stale Get on an ended context = %v, want context.Canceled", err)
		}
		if f.count() != 1 {
			t.Fatalf("%d fetches, want 1: an ended context started a fetch", f.count())
		}
	})
}

// 2. Expired: one caller refreshes, the others get the stale value at once.

func TestExpiredOneCallerRefreshesOthersGetStale(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var s slot.Slot[int]
		release := make(chan struct{})
		f := &fetcher{t: t, steps: []step{{v: 1, ttl: time.Minute}, {v: 2, ttl: time.Minute, release: release}}}
		mustGet(t, &s, f.fetch, 1)
		time.Sleep(time.Minute)

		refresher := startGets(t.Context(), &s, 1, f.fetch)
		synctest.Wait()
		for range 20 {
			mustGet(t, &s, f.fetch, 1) // at once, while the refresh is blocked
		}
		select {
		case r := <-refresher:
			t.Fatalf("the refreshing caller returned %+v before its fetch did", r)
		default:
		}
		close(release)
		if r := <-refresher; r.v != 2 || r.err != nil {
			t.Fatalf("refreshing caller got %+v, want the new value 2", r)
		}
		mustGet(t, &s, f.fetch, 2)
		if f.count() != 2 {
			t.Fatalf("%d fetches, want 2", f.count())
		}
	})
}

func TestBackgroundRefreshMakesNoCallerWait(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := slot.New[int](slot.Background())
		release := make(chan struct{})
		f := &fetcher{t: t, steps: []step{{v: 1, ttl: time.Minute}, {v: 2, ttl: time.Minute, release: release}}}
		mustGet(t, s, f.fetch, 1)
		time.Sleep(time.Minute)

		// The caller that finds the value expired starts the refresh and
		// still gets the old value at once, as does everyone after it.
		for range 20 {
			mustGet(t, s, f.fetch, 1)
		}
		synctest.Wait()
		if f.count() != 2 {
			t.Fatalf("%d fetches, want 2: one background refresh", f.count())
		}
		close(release)
		synctest.Wait() // the refresh goroutine stores its value and exits
		mustGet(t, s, f.fetch, 2)
	})
}

func TestBackgroundRefreshFailureKeepsOldValue(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		rec := &recorder{}
		s := slot.New[int](slot.Background(), slot.WithLogger(slog.New(rec)))
		f := &fetcher{t: t, steps: []step{
			{v: 1, ttl: time.Minute},
			{err: errBoom},
			{panic: "bad config"},
			{v: 2, ttl: time.Minute},
		}}
		mustGet(t, s, f.fetch, 1)
		time.Sleep(time.Minute)
		mustGet(t, s, f.fetch, 1) // starts a refresh that fails
		synctest.Wait()
		mustGet(t, s, f.fetch, 1) // backed off: no fetch
		time.Sleep(slot.DefaultRetryDelay)
		mustGet(t, s, f.fetch, 1) // starts a refresh that panics
		synctest.Wait()
		mustGet(t, s, f.fetch, 1)
		time.Sleep(slot.DefaultRetryDelay)
		mustGet(t, s, f.fetch, 1) // starts a refresh that succeeds
		synctest.Wait()
		mustGet(t, s, f.fetch, 2)
		if f.count() != 4 {
			t.Fatalf("%d fetches, want 4", f.count())
		}
		if got := rec.levels(); len(got) != 2 {
			t.Fatalf("logged %v, want two failures", got)
		}
		var pe *flight.PanicError
		if err, _ := rec.Attr(1, "err").Any().(error); !errors.As(err, &pe) || pe.Value != "bad config" {
			t.Fatalf("second log record err = %v, want the panic", rec.Attr(1, "err"))
		}
		if !strings.Contains(rec.Attr(1, "stack").String(), "slot_test") {
			t.Fatal("the panic's log record lacks the stack of the panicking fetch")
		}
	})
}

// 3. The fetcher gets the previous value; 0 never expires; ExpiresImmediately
// refetches on the next Get.

func TestFetchGetsPreviousValue(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var s slot.Slot[int]
		fetch := func(_ context.Context, prev int) (int, time.Duration, error) {
			return prev + 1, slot.ExpiresImmediately, nil
		}
		for want := 1; want <= 5; want++ {
			mustGet(t, &s, fetch, want) // 0 on the first fetch, then the last value
		}
	})
}

func TestLifetimes(t *testing.T) {
	for _, tc := range []struct {
		name string
		ttl  time.Duration
		// fetches after a Get at each of these times since the first fetch
		after []time.Duration
		want  []int
	}{
		{"zero never expires", 0, []time.Duration{0, time.Hour, 100 * 365 * 24 * time.Hour}, []int{1, 1, 1}},
		{"ExpiresImmediately refetches on the next Get", slot.ExpiresImmediately, []time.Duration{0, 0, 0}, []int{2, 3, 4}},
		{"other negative durations too", -time.Hour, []time.Duration{0, 0}, []int{2, 3}},
		{"positive expires after it", time.Minute, []time.Duration{time.Minute - 1, time.Minute, time.Minute + 1, 2 * time.Minute}, []int{1, 2, 2, 3}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				var s slot.Slot[int]
				var calls int
				fetch := func(_ context.Context, prev int) (int, time.Duration, error) {
					calls++
					return prev + 1, tc.ttl, nil
				}
				start := time.Now()
				mustGet(t, &s, fetch, 1)
				for i, at := range tc.after {
					time.Sleep(time.Until(start.Add(at)))
					v, err := s.Get(t.Context(), fetch)
					if err != nil || calls != tc.want[i] {
						t.Fatalf("Get at %v: %d fetches (%v), want %d", at, calls, err, tc.want[i])
					}
					if v != calls {
						t.Fatalf("Get at %v = %d, want the value of fetch %d (the caller refreshes)", at, v, calls)
					}
				}
			})
		})
	}
}

// 4. A failed refresh returns the old value and backs off; failures are logged.

func TestFailedRefreshServesOldValueAndBacksOff(t *testing.T) {
	for _, tc := range []struct {
		name string
		opts []slot.Option
		want time.Duration // the effective delay
	}{
		{"default", nil, 5 * time.Second},
		{"configured", []slot.Option{slot.RetryDelay(time.Minute)}, time.Minute},
	} {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				s := slot.New[int](append(tc.opts, slot.WithLogger(quiet))...)
				f := &fetcher{t: t, steps: []step{{v: 1, ttl: time.Second}, {err: errBoom}, {v: 2, ttl: time.Hour}}}
				mustGet(t, s, f.fetch, 1)
				time.Sleep(time.Second)
				mustGet(t, s, f.fetch, 1) // the refresh fails: old value, no error
				if f.count() != 2 {
					t.Fatalf("%d fetches, want 2", f.count())
				}
				time.Sleep(tc.want - 1)
				mustGet(t, s, f.fetch, 1)
				if f.count() != 2 {
					t.Fatalf("fetched again %v after a failure, before the retry delay %v", tc.want-1, tc.want)
				}
				time.Sleep(time.Nanosecond) // exactly the retry delay after the failure
				mustGet(t, s, f.fetch, 2)
				if f.count() != 3 || f.prevs[2] != 1 {
					t.Fatalf("%d fetches, prevs %v; want a third with prev 1", f.count(), f.prevs)
				}
			})
		})
	}
}

func TestConsecutiveFailuresAreLoggedWarnThenError(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		rec := &recorder{}
		s := slot.New[int](slot.WithLogger(slog.New(rec)), slot.RetryDelay(time.Second))
		f := &fetcher{t: t, steps: []step{
			{v: 1, ttl: slot.ExpiresImmediately},
			{err: errBoom},
			{err: errBoom},
			{err: errBoom},
			{err: errBoom},
			{v: 2, ttl: slot.ExpiresImmediately},
			{err: errBoom},
		}}
		mustGet(t, s, f.fetch, 1)
		for range 4 {
			mustGet(t, s, f.fetch, 1)
			time.Sleep(time.Second)
		}
		mustGet(t, s, f.fetch, 2)
		mustGet(t, s, f.fetch, 2) // fails: the count starts again
		want := []slog.Level{slog.LevelWarn, slog.LevelWarn, slog.LevelError, slog.LevelError, slog.LevelWarn}
		got := rec.levels()
		if len(got) != len(want) {
			t.Fatalf("logged levels %v, want %v", got, want)
		}
		for i := range want {
			if got[i] != want[i] {
				t.Fatalf("logged levels %v, want %v", got, want)
			}
		}
		for i, n := range []int64{1, 2, 3, 4, 1} {
			if c := rec.Attr(i, "failures").Int64(); c != n {
				t.Fatalf("record %d says %d failures, want %d", i, c, n)
			}
		}
		if err, _ := rec.Attr(0, "err").Any().(error); !errors.Is(err, errBoom) {
			t.Fatalf("record err = %v, want boom", err)
		}
		if d := rec.Attr(0, "retry_in").Duration(); d != time.Second {
			t.Fatalf("record retry_in = %v, want 1s", d)
		}
	})
}

// 5. MaxStale: past it, a caller waits for the refresh.

func TestMaxStaleCallerWaitsForTheRefresh(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := slot.New[int](slot.Background(), slot.MaxStale(30*time.Second))
		release := make(chan struct{})
		f := &fetcher{t: t, steps: []step{{v: 1, ttl: time.Minute}, {v: 2, ttl: time.Minute, release: release}}}
		mustGet(t, s, f.fetch, 1)
		time.Sleep(time.Minute + 10*time.Second)
		mustGet(t, s, f.fetch, 1) // within MaxStale: old value, refresh starts
		time.Sleep(20 * time.Second)
		mustGet(t, s, f.fetch, 1) // exactly MaxStale old: still served

		time.Sleep(time.Second)
		waiting := startGets(t.Context(), s, 2, f.fetch)
		synctest.Wait()
		select {
		case r := <-waiting:
			t.Fatalf("a caller got %+v, a value older than MaxStale", r)
		default:
		}
		close(release)
		for range 2 {
			if r := <-waiting; r.v != 2 || r.err != nil {
				t.Fatalf("waiting caller got %+v, want the new value 2", r)
			}
		}
		if f.count() != 2 {
			t.Fatalf("%d fetches, want 2", f.count())
		}
	})
}

func TestMaxStaleStartsARefreshAndReturnsItsFailure(t *testing.T) {
	for _, background := range []bool{false, true} {
		name := "foreground"
		if background {
			name = "background"
		}
		t.Run(name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				s := slot.New[int](withMode(background, slot.MaxStale(time.Second), slot.RetryDelay(time.Minute), slot.WithLogger(quiet))...)
				f := &fetcher{t: t, steps: []step{{v: 1, ttl: time.Minute}, {err: errBoom}, {v: 3, ttl: time.Minute}}}
				mustGet(t, s, f.fetch, 1)
				time.Sleep(time.Hour)
				// Too old, no refresh running: this caller's refresh fails.
				v, err := s.Get(t.Context(), f.fetch)
				if !errors.Is(err, errBoom) || v != 0 {
					t.Fatalf("Get = %d, %v; want an error wrapping boom", v, err)
				}
				// Backed off: the last error at once, no fetch.
				if _, err := s.Get(t.Context(), f.fetch); !errors.Is(err, errBoom) || f.count() != 2 {
					t.Fatalf("Get while backed off = %v after %d fetches; want boom, 2", err, f.count())
				}
				time.Sleep(time.Minute)
				mustGet(t, s, f.fetch, 3)
			})
		})
	}
}

func TestMaxStaleWaiterReturnsOnItsOwnContext(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := slot.New[int](slot.MaxStale(time.Second))
		release := make(chan struct{})
		f := &fetcher{t: t, steps: []step{{v: 1, ttl: time.Minute}, {v: 2, ttl: time.Minute, release: release}}}
		mustGet(t, s, f.fetch, 1)
		time.Sleep(time.Hour)
		first := startGets(t.Context(), s, 1, f.fetch)
		synctest.Wait()
		ctx, cancel := context.WithTimeout(t.Context(), time.Second)
		defer cancel()
		if _, err := s.Get(ctx, f.fetch); !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("Get = %v, want DeadlineExceeded", err)
		}
		close(release)
		if r := <-first; r.v != 2 {
			t.Fatalf("first caller got %+v", r)
		}
	})
}

// 6. A panicking fetcher.

func TestPanicReachesTheRefreshingCallerAndTheSlotStaysUsable(t *testing.T) {
	for _, tc := range []struct {
		name string
		step step
		is   func(error) bool
	}{
		{"panic", step{panic: "corrupt"}, func(err error) bool {
			var pe *flight.PanicError
			return errors.As(err, &pe) && pe.Value == "corrupt" && strings.Contains(string(pe.Stack), "slot_test")
		}},
		{"panic with an error", step{panic: errBoom}, func(err error) bool {
			var pe *flight.PanicError
			return errors.As(err, &pe) && errors.Is(err, errBoom)
		}},
		{"Goexit", step{goexit: true}, func(err error) bool { return errors.Is(err, flight.ErrGoexit) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				rec := &recorder{}
				s := slot.New[int](slot.WithLogger(slog.New(rec)))
				release := make(chan struct{})
				bad := tc.step
				bad.release = release
				f := &fetcher{t: t, steps: []step{{v: 1, ttl: time.Minute}, bad, {v: 2, ttl: time.Minute}}}
				mustGet(t, s, f.fetch, 1)
				time.Sleep(time.Minute)
				refresher := startGets(t.Context(), s, 1, f.fetch)
				synctest.Wait()
				mustGet(t, s, f.fetch, 1) // another caller: stale, at once
				close(release)
				if r := <-refresher; !tc.is(r.err) || r.v != 0 {
					t.Fatalf("refreshing caller got %+v", r)
				}
				// The slot keeps the old value, backs off, then refreshes.
				mustGet(t, s, f.fetch, 1)
				if len(rec.levels()) != 1 {
					t.Fatalf("logged %v, want the failure once", rec.levels())
				}
				time.Sleep(slot.DefaultRetryDelay)
				mustGet(t, s, f.fetch, 2)
			})
		})
	}
}

func TestPanicInFirstFetchReachesEveryWaiter(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var s slot.Slot[int]
		release := make(chan struct{})
		f := &fetcher{t: t, steps: []step{{panic: "boom", release: release}, {v: 1}}}
		out := startGets(t.Context(), &s, 5, f.fetch)
		synctest.Wait()
		close(release)
		for range 5 {
			var pe *flight.PanicError
			if r := <-out; !errors.As(r.err, &pe) {
				t.Fatalf("caller got %+v, want a *flight.PanicError", r)
			}
		}
		mustGet(t, &s, f.fetch, 1)
	})
}

// The fetch's context.

type traceKey struct{}

func TestFetchContext(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := slot.New[int](slot.FetchTimeout(time.Minute))
		type seen struct {
			trace    any
			deadline time.Time
			err      error
		}
		got := make(chan seen, 1)
		release := make(chan struct{})
		ctx, cancel := context.WithCancel(context.WithValue(t.Context(), traceKey{}, "trace-1"))
		start := time.Now()
		out := startGets(ctx, s, 1, func(ctx context.Context, _ int) (int, time.Duration, error) {
			<-release
			d, _ := ctx.Deadline()
			got <- seen{ctx.Value(traceKey{}), d, ctx.Err()}
			return 1, 0, nil
		})
		synctest.Wait()
		cancel() // the only caller leaves; the fetch goes on
		if r := <-out; !errors.Is(r.err, context.Canceled) {
			t.Fatalf("caller got %+v, want context.Canceled", r)
		}
		close(release)
		sn := <-got
		if sn.trace != "trace-1" {
			t.Errorf("trace value = %v, want trace-1", sn.trace)
		}
		if !sn.deadline.Equal(start.Add(time.Minute)) {
			t.Errorf("fetch deadline = %v, want FetchTimeout after the start", sn.deadline)
		}
		if sn.err != nil {
			t.Errorf("fetch context ended with %v when its caller left", sn.err)
		}
		synctest.Wait()
		// The abandoned fetch still filled the slot.
		mustGet(t, s, func(context.Context, int) (int, time.Duration, error) {
			t.Error("fetched again though the abandoned fetch succeeded")
			return 0, 0, nil
		}, 1)
	})
}

func TestFetchTimeoutEndsAHungFetch(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := slot.New[int](slot.FetchTimeout(time.Second))
		_, err := s.Get(t.Context(), func(ctx context.Context, _ int) (int, time.Duration, error) {
			<-ctx.Done()
			return 0, 0, ctx.Err()
		})
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("Get = %v, want the fetch's DeadlineExceeded", err)
		}
	})
}

// Close.

func TestCloseWaitsForTheBackgroundRefresh(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := slot.New[int](slot.Background())
		f := &fetcher{t: t, steps: []step{{v: 1, ttl: time.Minute}, {v: 2, release: make(chan struct{})}}}
		mustGet(t, s, f.fetch, 1)
		time.Sleep(time.Minute)
		mustGet(t, s, f.fetch, 1) // starts the refresh

		closed := make(chan error, 1)
		go func() { closed <- s.Close(t.Context()) }()
		synctest.Wait()
		select {
		case err := <-closed:
			t.Fatalf("Close returned %v while a refresh was running", err)
		default:
		}
		close(f.steps[1].release)
		if err := <-closed; err != nil {
			t.Fatalf("Close = %v", err)
		}
		if _, err := s.Get(t.Context(), f.fetch); !errors.Is(err, slot.ErrClosed) {
			t.Fatalf("Get after Close = %v, want ErrClosed", err)
		}
		if err := s.Close(t.Context()); err != nil {
			t.Fatalf("second Close = %v", err)
		}
	})
}

func TestCloseCancelsTheFetchWhenItsContextEnds(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := slot.New[int](slot.Background(), slot.WithLogger(quiet))
		fetchErr := make(chan error, 1)
		fetch := func(ctx context.Context, prev int) (int, time.Duration, error) {
			if prev == 0 {
				return 1, slot.ExpiresImmediately, nil
			}
			<-ctx.Done() // a fetch that would hang but honours its context
			fetchErr <- ctx.Err()
			return 0, 0, ctx.Err()
		}
		mustGet(t, s, fetch, 1)
		mustGet(t, s, fetch, 1) // starts the hanging refresh
		ctx, cancel := context.WithTimeout(t.Context(), time.Second)
		defer cancel()
		if err := s.Close(ctx); !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("Close = %v, want DeadlineExceeded", err)
		}
		if err := <-fetchErr; !errors.Is(err, context.Canceled) {
			t.Fatalf("fetch context ended with %v, want Canceled by Close", err)
		}
	})
}

func TestCloseOfAZeroSlot(t *testing.T) {
	var s slot.Slot[string]
	if err := s.Close(t.Context()); err != nil {
		t.Fatalf("Close = %v", err)
	}
	fetch := func(context.Context, string) (string, time.Duration, error) { return "v", 0, nil }
	if _, err := s.Get(t.Context(), fetch); !errors.Is(err, slot.ErrClosed) {
		t.Fatalf("Get after Close = %v, want ErrClosed", err)
	}
}

// TestGetRace hammers a slot from many goroutines with values that expire at
// once, random cancellation, failures and panics; run it under -race.
func TestGetRace(t *testing.T) {
	for _, background := range []bool{false, true} {
		s := slot.New[int](withMode(background, slot.RetryDelay(time.Microsecond), slot.MaxStale(time.Millisecond), slot.WithLogger(quiet))...)
		var calls atomic.Int64
		fetch := func(_ context.Context, prev int) (int, time.Duration, error) {
			n := calls.Add(1)
			switch {
			case n%13 == 0:
				panic("x")
			case n%7 == 0:
				return 0, 0, errBoom
			}
			runtime.Gosched()
			return prev + 1, slot.ExpiresImmediately, nil
		}
		var wg sync.WaitGroup
		for range 32 {
			wg.Go(func() {
				last := 0
				for j := range 200 {
					ctx, cancel := context.WithCancel(t.Context())
					if j%11 == 0 {
						cancel()
					}
					v, err := s.Get(ctx, fetch)
					cancel()
					if err == nil {
						if v < last {
							t.Errorf("value went back from %d to %d", last, v)
						}
						last = v
					}
				}
			})
		}
		wg.Wait()
		if err := s.Close(t.Context()); err != nil {
			t.Fatal(err)
		}
	}
}

// Regressions.

// A Get with a nil context on an expired value used to read ctx.Err() with
// the slot's mutex held: the panic left it locked, and every later Get and
// Close hung. The check now comes first, with a clear message; the slot's
// locked sections unlock by defer.
func TestRegressionSlotPanicUnderMutex(t *testing.T) {
	s := slot.New[int](slot.WithLogger(quiet))
	fetch := func(context.Context, int) (int, time.Duration, error) { return 1, slot.ExpiresImmediately, nil }
	mustGet(t, s, fetch, 1)
	func() {
		defer func() {
			if r := recover(); r != "slot: nil Context" {
				t.Fatalf("Get(nil) panicked with %v, want slot: nil Context", r)
			}
		}()
		//nolint:staticcheck // SA1012: a nil context is the point of the test
		_, _ = s.Get(nil, fetch)
	}()
	herdtest.Returns(t, "Get and Close after the panic", func() error {
		if _, err := s.Get(context.Background(), fetch); err != nil {
			return err
		}
		return s.Close(context.Background())
	})
}

func TestRegressionSlotNewRejectsOptionsOutOfRange(t *testing.T) {
	for _, tc := range []struct {
		opt  func() slot.Option
		want string
	}{
		{func() slot.Option { return slot.RetryDelay(0) }, "slot: RetryDelay must be positive, got 0s"},
		{func() slot.Option { return slot.RetryDelay(-time.Second) }, "slot: RetryDelay must be positive, got -1s"},
		{func() slot.Option { return slot.MaxStale(0) }, "slot: MaxStale must be positive, got 0s"},
		{func() slot.Option { return slot.FetchTimeout(-1) }, "slot: FetchTimeout must be positive, got -1ns"},
	} {
		t.Run(tc.want, func(t *testing.T) {
			defer func() {
				if r := recover(); r != tc.want {
					t.Fatalf("New panicked with %v, want %q", r, tc.want)
				}
			}()
			slot.New[int](tc.opt())
		})
	}
}

// A failed refresh is logged on the fetch's own goroutine, where nothing
// recovered a panic of the logger's handler: it crashed the process, and the
// callers waiting on the refresh were never released.
func TestRegressionSlotLoggerPanicOnFetchGoroutine(t *testing.T) {
	rec := &recorder{}
	old := slog.Default()
	slog.SetDefault(slog.New(rec))
	t.Cleanup(func() { slog.SetDefault(old) })
	for _, background := range []bool{false, true} {
		synctest.Test(t, func(t *testing.T) {
			s := slot.New[int](withMode(background, slot.WithLogger(slog.New(herdtest.Panicking("handler down"))), slot.RetryDelay(time.Minute))...)
			f := &fetcher{t: t, steps: []step{{v: 1, ttl: slot.ExpiresImmediately}, {err: errBoom}, {v: 2}}}
			mustGet(t, s, f.fetch, 1)
			mustGet(t, s, f.fetch, 1) // the refresh fails and its log panics
			synctest.Wait()
			time.Sleep(time.Minute) // the retry delay: the slot refreshes again
			if background {
				mustGet(t, s, f.fetch, 1)
				synctest.Wait()
			}
			mustGet(t, s, f.fetch, 2)
			if err := s.Close(t.Context()); err != nil {
				t.Fatalf("Close: %v", err)
			}
		})
	}
	if got := len(rec.levels()); got != 2 {
		t.Fatalf("slog.Default got %d reports of the logger's panic, want 2", got)
	}
	if err, _ := rec.Attr(0, "err").Any().(error); err == nil || !strings.Contains(err.Error(), "handler down") {
		t.Fatalf("the report's err = %v, want the handler's panic", err)
	}
}

// Close used to return ctx.Err() bare, unlike every other package.
func TestRegressionSlotCloseContract(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := slot.New[int](slot.Background(), slot.WithLogger(quiet))
		release := make(chan struct{})
		f := &fetcher{t: t, steps: []step{{v: 1, ttl: slot.ExpiresImmediately}, {v: 2, release: release}}}
		mustGet(t, s, f.fetch, 1)
		mustGet(t, s, f.fetch, 1) // starts the background refresh

		short, cancel := context.WithTimeout(t.Context(), time.Second)
		defer cancel()
		err := s.Close(short)
		if !errors.Is(err, context.DeadlineExceeded) || !strings.HasPrefix(err.Error(), "slot: close: ") {
			t.Fatalf("Close past its context = %v, want slot: close: wrapping DeadlineExceeded", err)
		}
		// A later Close waits for the same fetch (Close cancelled its
		// context, but this fetch ignores it until released).
		closed := make(chan error, 2)
		for range 2 {
			go func() { closed <- s.Close(t.Context()) }()
		}
		synctest.Wait()
		select {
		case err := <-closed:
			t.Fatalf("a second Close returned %v while the fetch ran", err)
		default:
		}
		close(release)
		for range 2 {
			if err := <-closed; err != nil {
				t.Fatalf("Close = %v", err)
			}
		}
		if _, err := s.Get(t.Context(), f.fetch); !errors.Is(err, slot.ErrClosed) {
			t.Fatalf("Get after Close = %v, want ErrClosed", err)
		}
	})
}

// A nil fetch function panics at the call, with a value cached too, rather
// than being hidden until the value expires.
func TestRegressionSlotNilFetchPanicsAtTheCall(t *testing.T) {
	s := slot.New[int]()
	defer s.Close(context.Background())
	if _, err := s.Get(context.Background(), func(context.Context, int) (int, time.Duration, error) { return 1, 0, nil }); err != nil {
		t.Fatal(err)
	}
	defer func() {
		if r := recover(); r != "slot: Get needs a fetch function, got nil" {
			t.Fatalf("panic %v", r)
		}
	}()
	_, _ = s.Get(context.Background(), nil)
}
