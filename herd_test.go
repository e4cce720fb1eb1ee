package herd_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"go.uber.org/goleak"

	"github.com/herdcache/herd"
	"github.com/herdcache/herd/flight"
	"github.com/herdcache/herd/store"
	"github.com/herdcache/herd/store/memory"
	"github.com/herdcache/herd/store/single"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// newCache builds a cache over a new memory store and closes it when the
// test (or its synctest bubble) ends.
func newCache(t *testing.T, opts ...herd.Option) (*herd.Cache[string], *countingStore) {
	t.Helper()
	s := &countingStore{Store: memory.New[string]()}
	c := herd.New[string](s, append([]herd.Option{herd.WithLogger(discard)}, opts...)...)
	t.Cleanup(func() {
		if err := c.Close(context.Background()); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return c, s
}

var discard = slog.New(slog.DiscardHandler)

// countingStore counts the writes that reach a store.
type countingStore struct {
	store.Store[string]
	sets, deletes atomic.Int32
}

func (s *countingStore) Set(ctx context.Context, key string, e store.Entry[string]) error {
	s.sets.Add(1)
	return s.Store.Set(ctx, key, e)
}

func (s *countingStore) Delete(ctx context.Context, key string) error {
	s.deletes.Add(1)
	return s.Store.Delete(ctx, key)
}

func (s *countingStore) Close(ctx context.Context) error {
	return s.Store.(*memory.Store[string]).Close(ctx)
}

// entry reads key's entry straight from the store.
func (s *countingStore) entry(t *testing.T, key string) store.Entry[string] {
	t.Helper()
	e, ok, err := s.Get(context.Background(), key)
	if err != nil || !ok {
		t.Fatalf("store has no entry for %q (err %v)", key, err)
	}
	return e
}

// source is a loader whose answers a test controls.
type source struct {
	calls atomic.Int32
	mu    sync.Mutex
	value string
	err   error
	gate  chan struct{} // when not nil, each load waits for it to close
}

func (s *source) set(value string, err error) {
	s.mu.Lock()
	s.value, s.err = value, err
	s.mu.Unlock()
}

// block makes the following loads wait until the returned function is called.
func (s *source) block() (release func()) {
	g := make(chan struct{})
	s.mu.Lock()
	s.gate = g
	s.mu.Unlock()
	return func() { close(g) }
}

func (s *source) load(ctx context.Context, key string) (string, error) {
	s.calls.Add(1)
	s.mu.Lock()
	gate, value, err := s.gate, s.value, s.err
	s.mu.Unlock()
	if gate != nil {
		select {
		case <-gate:
			s.mu.Lock()
			value, err = s.value, s.err
			s.mu.Unlock()
		case <-ctx.Done():
			return "", ctx.Err()
		}
	}
	if err != nil {
		return "", err
	}
	return value + ":" + key, nil
}

func mustGet(t *testing.T, c *herd.Cache[string], key string, load herd.Loader[string]) herd.Result[string] {
	t.Helper()
	r, err := c.Fetch(context.Background(), key, load)
	if err != nil {
		t.Fatalf("Get(%q): %v", key, err)
	}
	return r
}

// 1. Miss: 2,000 concurrent Gets of a cold key -> one load, one store write.
func TestColdKeyStampedeLoadsOnce(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c, s := newCache(t, herd.TTL(time.Minute))
		src := &source{value: "v"}
		release := src.block()
		const callers = 2000
		results := make(chan error, callers)
		for range callers {
			go func() {
				v, err := c.Get(context.Background(), "k", src.load)
				if err == nil && v != "v:k" {
					err = fmt.Errorf("got %q", v)
				}
				results <- err
			}()
		}
		synctest.Wait()
		release()
		for range callers {
			if err := <-results; err != nil {
				t.Fatal(err)
			}
		}
		if n := src.calls.Load(); n != 1 {
			t.Fatalf("%d loads for %d concurrent callers, want 1", n, callers)
		}
		synctest.Wait() // the store write follows the callers' answer
		if n := s.sets.Load(); n != 1 {
			t.Fatalf("%d store writes, want 1", n)
		}
		st := c.Stats()
		if st.Misses != callers || st.SharedWaits != callers-1 || st.Loads != 1 {
			t.Fatalf("stats %+v, want %d misses, %d shared waits, 1 load", st, callers, callers-1)
		}
	})
}

// 2. Fresh hit: no load.
func TestFreshHitDoesNotLoad(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c, _ := newCache(t, herd.TTL(time.Minute), herd.RefreshAfter(30*time.Second))
		src := &source{value: "v"}
		mustGet(t, c, "k", src.load)
		time.Sleep(29 * time.Second)
		for range 100 {
			if r := mustGet(t, c, "k", src.load); r.Status != herd.StatusFresh || r.Value != "v:k" {
				t.Fatalf("got %+v, want fresh v:k", r)
			}
		}
		if n := src.calls.Load(); n != 1 {
			t.Fatalf("%d loads, want 1", n)
		}
		if st := c.Stats(); st.Hits != 100 || st.Misses != 1 {
			t.Fatalf("stats %+v", st)
		}
	})
}

// 2. Stale: the old value at once, exactly one refresh, then the new value.
func TestStaleServesOldValueAndRefreshesOnce(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c, _ := newCache(t, herd.TTL(time.Hour), herd.RefreshAfter(time.Minute))
		src := &source{value: "v1"}
		mustGet(t, c, "k", src.load)
		time.Sleep(2 * time.Minute)

		src.set("v2", nil)
		release := src.block()
		// Reads from this goroutine: if any waited for the blocked refresh,
		// the bubble would deadlock and the test fail.
		for range 500 {
			r := mustGet(t, c, "k", src.load)
			if r.Status != herd.StatusStale || r.Value != "v1:k" || r.Age() != 2*time.Minute {
				t.Fatalf("got %+v, want stale v1:k aged 2m", r)
			}
		}
		synctest.Wait()
		if n := src.calls.Load(); n != 2 {
			t.Fatalf("%d loads after 500 stale reads, want 1 + 1 refresh", n)
		}
		release()
		synctest.Wait()
		if r := mustGet(t, c, "k", src.load); r.Status != herd.StatusFresh || r.Value != "v2:k" {
			t.Fatalf("after the refresh: %+v, want fresh v2:k", r)
		}
		if st := c.Stats(); st.StaleHits != 500 || st.RefreshesQueued != 1 {
			t.Fatalf("stats %+v, want 500 stale hits and 1 refresh queued", st)
		}
	})
}

// 2. A full refresh queue drops the task, counts it, and never blocks.
func TestFullRefreshQueueDrops(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c, _ := newCache(t, herd.RefreshAfter(time.Minute), herd.Workers(1), herd.QueueSize(2))
		src := &source{value: "v"}
		keys := []string{"a", "b", "c", "d", "e", "f"}
		for _, k := range keys {
			mustGet(t, c, k, src.load)
		}
		time.Sleep(2 * time.Minute)
		release := src.block()
		for _, k := range keys {
			if r := mustGet(t, c, k, src.load); r.Status != herd.StatusStale {
				t.Fatalf("%s: %+v", k, r)
			}
			synctest.Wait() // the worker takes "a" before "b" is queued
		}
		// One running, two queued, three dropped.
		st := c.Stats()
		if st.RefreshesQueued != 3 || st.RefreshesDropped != 3 {
			t.Fatalf("queued %d, dropped %d; want 3 and 3", st.RefreshesQueued, st.RefreshesDropped)
		}
		release()
		synctest.Wait()
		// A dropped key is refreshed on a later stale read.
		if r := mustGet(t, c, "f", src.load); r.Status != herd.StatusStale {
			t.Fatalf("f after the drop: %+v", r)
		}
		synctest.Wait()
		if r := mustGet(t, c, "f", src.load); r.Status != herd.StatusFresh {
			t.Fatalf("f was not refreshed on a later read: %+v", r)
		}
	})
}

// 2. Refresh workers are a bounded pool, even with 10,000 stale keys at once.
func TestRefreshWorkersAreBounded(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const workers, keys = 8, 10_000
		c, _ := newCache(t, herd.RefreshAfter(time.Minute), herd.Workers(workers), herd.QueueSize(100))
		var running, peak atomic.Int32
		gate := make(chan struct{})
		var release sync.Once
		defer release.Do(func() { close(gate) }) // a failure must not leave the refreshes blocked
		blocking := atomic.Bool{}
		load := func(ctx context.Context, key string) (string, error) {
			if blocking.Load() {
				n := running.Add(1)
				for {
					p := peak.Load()
					if n <= p || peak.CompareAndSwap(p, n) {
						break
					}
				}
				<-gate
				running.Add(-1)
			}
			return key, nil
		}
		for i := range keys {
			mustGet(t, c, fmt.Sprint(i), load)
		}
		time.Sleep(2 * time.Minute)
		blocking.Store(true)
		before := runtime.NumGoroutine()
		var wg sync.WaitGroup
		for i := range keys {
			wg.Go(func() { mustGet(t, c, fmt.Sprint(i), load) })
		}
		wg.Wait()
		synctest.Wait()
		// Each worker and the load goroutine it waits on, give or take a few
		// goroutines of the runtime and the store that come and go: bounded,
		// where one per stale key would be 10,000.
		const slack = 16
		if extra := runtime.NumGoroutine() - before; extra > 2*workers+slack {
			t.Fatalf("%d goroutines added by 10,000 stale reads, want at most %d", extra, 2*workers+slack)
		}
		release.Do(func() { close(gate) })
		synctest.Wait()
		if p := peak.Load(); p != workers {
			t.Fatalf("peak of %d concurrent refreshes, want %d", p, workers)
		}
		st := c.Stats()
		if st.RefreshesQueued+st.RefreshesDropped != keys || st.RefreshesQueued > workers+100 {
			t.Fatalf("queued %d + dropped %d, want %d with at most %d queued",
				st.RefreshesQueued, st.RefreshesDropped, keys, workers+100)
		}
	})
}

// 3. Expired: the caller waits for one load.
func TestExpiredEntryWaitsForLoad(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c, _ := newCache(t, herd.TTL(time.Minute))
		src := &source{value: "v1"}
		mustGet(t, c, "k", src.load)
		time.Sleep(time.Minute)
		src.set("v2", nil)
		release := src.block()
		got := make(chan herd.Result[string])
		go func() { got <- mustGet(t, c, "k", src.load) }()
		synctest.Wait()
		select {
		case r := <-got:
			t.Fatalf("Get of an expired key returned %+v without waiting for the load", r)
		default:
		}
		release()
		if r := <-got; r.Status != herd.StatusLoaded || r.Value != "v2:k" {
			t.Fatalf("got %+v, want loaded v2:k", r)
		}
	})
}

// 3. A failed load within StaleIfError returns the old value; past it, the error.
func TestStaleIfError(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c, _ := newCache(t, herd.TTL(time.Minute), herd.StaleIfError(time.Hour))
		src := &source{value: "v1"}
		mustGet(t, c, "k", src.load)
		time.Sleep(2 * time.Minute)
		errDown := errors.New("database down")
		src.set("", errDown)
		r, err := c.Fetch(context.Background(), "k", src.load)
		if err != nil || r.Value != "v1:k" || r.Status != herd.StatusStaleOnError {
			t.Fatalf("Fetch = %+v, %v; want v1:k stale-on-error", r, err)
		}
		if st := c.Stats(); st.StaleOnError != 1 || st.LoadErrors != 1 {
			t.Fatalf("stats %+v, want 1 stale-on-error and 1 load error", st)
		}
		time.Sleep(time.Hour)
		_, err = c.Get(context.Background(), "k", src.load)
		if !errors.Is(err, errDown) {
			t.Fatalf("past the StaleIfError window: %v, want the loader's error", err)
		}
	})
}

// 4. A failed refresh keeps the old value and backs off; a success resets.
func TestFailedRefreshBacksOff(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c, _ := newCache(t, herd.TTL(24*time.Hour), herd.RefreshAfter(time.Minute),
			herd.RefreshBackoff(time.Second, time.Minute))
		src := &source{value: "v1"}
		mustGet(t, c, "k", src.load)
		time.Sleep(2 * time.Minute)
		src.set("", errors.New("down"))

		// Read every 100ms for 10 minutes: 6,000 stale reads.
		readFor := func(d time.Duration, want string) {
			for end := time.Now().Add(d); time.Now().Before(end); time.Sleep(100 * time.Millisecond) {
				if r := mustGet(t, c, "k", src.load); r.Value != want {
					t.Fatalf("a failed refresh lost the old value: %+v", r)
				}
				synctest.Wait()
			}
		}
		before := src.calls.Load()
		readFor(10*time.Minute, "v1:k")
		retries := src.calls.Load() - before
		// Waits of 1s, 2s, ... 64s capped at 60s, each jittered to between
		// half and all of it: about 14 tries in 10 minutes, at least 10, at
		// most about 25 — not one per read.
		if retries < 10 || retries > 25 {
			t.Fatalf("%d refresh attempts in 10 minutes of reads, want exponential backoff", retries)
		}
		if st := c.Stats(); st.RefreshesFailed != uint64(retries) {
			t.Fatalf("RefreshesFailed = %d, want %d", st.RefreshesFailed, retries)
		}

		// A success resets the backoff: the next failure waits ~1s, not ~60s.
		src.set("v2", nil)
		time.Sleep(time.Minute) // past any backoff
		mustGet(t, c, "k", src.load)
		synctest.Wait()
		if r := mustGet(t, c, "k", src.load); r.Value != "v2:k" {
			t.Fatalf("refresh after recovery: %+v", r)
		}
		time.Sleep(2 * time.Minute)
		src.set("", errors.New("down again"))
		before = src.calls.Load()
		readFor(2*time.Second, "v2:k")
		if n := src.calls.Load() - before; n < 2 {
			t.Fatalf("%d attempts in the 2s after a reset, want the backoff to start again at 1s", n)
		}
	})
}

// 5. ErrNotFound is cached for NegativeTTL; other errors are never cached.
func TestNegativeCaching(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c, _ := newCache(t, herd.TTL(time.Hour), herd.NegativeTTL(time.Minute))
		var calls atomic.Int32
		load := func(_ context.Context, key string) (string, error) {
			calls.Add(1)
			return "", fmt.Errorf("user %s: %w", key, herd.ErrNotFound)
		}
		for range 10 {
			if _, err := c.Get(context.Background(), "ghost", load); !errors.Is(err, herd.ErrNotFound) {
				t.Fatalf("err = %v, want ErrNotFound", err)
			}
		}
		if n := calls.Load(); n != 1 {
			t.Fatalf("%d loads within NegativeTTL, want 1", n)
		}
		if st := c.Stats(); st.NegativeHits != 9 || st.LoadErrors != 0 {
			t.Fatalf("stats %+v, want 9 negative hits and no load error", st)
		}
		time.Sleep(time.Minute)
		_, _ = c.Get(context.Background(), "ghost", load)
		if n := calls.Load(); n != 2 {
			t.Fatalf("%d loads after NegativeTTL, want 2", n)
		}
	})
}

func TestNotFoundWithoutNegativeTTLIsNotCached(t *testing.T) {
	c, _ := newCache(t)
	var calls atomic.Int32
	load := func(context.Context, string) (string, error) {
		calls.Add(1)
		return "", herd.ErrNotFound
	}
	for range 3 {
		if _, err := c.Get(context.Background(), "ghost", load); !errors.Is(err, herd.ErrNotFound) {
			t.Fatalf("err = %v", err)
		}
	}
	if n := calls.Load(); n != 3 {
		t.Fatalf("%d loads, want 3: not found is not cached without NegativeTTL", n)
	}
}

func TestErrorsAreNotCached(t *testing.T) {
	c, _ := newCache(t, herd.TTL(time.Hour), herd.NegativeTTL(time.Hour))
	src := &source{}
	errDown := errors.New("down")
	src.set("", errDown)
	if _, err := c.Get(context.Background(), "k", src.load); !errors.Is(err, errDown) {
		t.Fatalf("err = %v", err)
	}
	src.set("v", nil)
	if v, err := c.Get(context.Background(), "k", src.load); err != nil || v != "v:k" {
		t.Fatalf("after the error: %q, %v; the error was cached", v, err)
	}
}

// 6. Jitter spreads the refresh and expiry times of keys loaded together.
func TestJitterSpreadsRefreshTimes(t *testing.T) {
	for _, tc := range []struct {
		jitter            float64
		wantSpreadAtLeast time.Duration
	}{
		{0, 0},
		{0.2, 10 * time.Second}, // of a possible 12s
	} {
		t.Run(fmt.Sprint("jitter=", tc.jitter), func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				c, s := newCache(t, herd.TTL(10*time.Minute), herd.RefreshAfter(time.Minute), herd.Jitter(tc.jitter))
				src := &source{value: "v"}
				const keys = 10_000
				start := time.Now()
				earliest, latest := time.Duration(1<<62), time.Duration(0)
				distinct := make(map[time.Time]bool)
				for i := range keys {
					k := fmt.Sprint(i)
					mustGet(t, c, k, src.load)
					synctest.Wait() // the load's store write lands after the caller has its value
					e := s.entry(t, k)
					d := e.RefreshAt.Sub(start)
					earliest, latest = min(earliest, d), max(latest, d)
					distinct[e.RefreshAt] = true
					if !e.RefreshAt.Before(e.ExpiresAt) {
						t.Fatalf("jitter put RefreshAt %v after ExpiresAt %v", e.RefreshAt, e.ExpiresAt)
					}
				}
				if time.Since(start) != 0 {
					t.Fatal("keys were not loaded at the same instant")
				}
				if latest > time.Minute || earliest < time.Duration(float64(time.Minute)*(1-tc.jitter)) {
					t.Fatalf("refresh times in [%v, %v], want within [%v, 1m]", earliest, latest,
						time.Duration(float64(time.Minute)*(1-tc.jitter)))
				}
				if spread := latest - earliest; spread < tc.wantSpreadAtLeast {
					t.Fatalf("refresh times spread over %v, want at least %v", spread, tc.wantSpreadAtLeast)
				}
				if tc.jitter > 0 && len(distinct) < keys/2 {
					t.Fatalf("only %d distinct refresh instants for %d keys", len(distinct), keys)
				}
			})
		})
	}
}

type traceKey struct{}

// 7. A caller's context governs only its wait; the load fills the cache.
func TestCallerCancellationDoesNotStopTheLoad(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c, _ := newCache(t)
		var loadCtxErr error
		var trace any
		gate := make(chan struct{})
		load := func(ctx context.Context, key string) (string, error) {
			<-gate
			loadCtxErr, trace = ctx.Err(), ctx.Value(traceKey{})
			return "v", nil
		}
		ctx, cancel := context.WithCancel(context.WithValue(context.Background(), traceKey{}, "t-1"))
		errs := make(chan error, 1)
		go func() {
			_, err := c.Get(ctx, "k", load)
			errs <- err
		}()
		synctest.Wait()
		cancel()
		if err := <-errs; !errors.Is(err, context.Canceled) {
			t.Fatalf("cancelled caller got %v", err)
		}
		close(gate)
		synctest.Wait()
		if loadCtxErr != nil || trace != "t-1" {
			t.Fatalf("load context: err %v, trace %v; want live, with the caller's values", loadCtxErr, trace)
		}
		if r := mustGet(t, c, "k", load); r.Status != herd.StatusFresh || r.Value != "v" {
			t.Fatalf("the abandoned load did not fill the cache: %+v", r)
		}
	})
}

// 7. LoadTimeout bounds the load whatever the callers' contexts.
func TestLoadTimeout(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c, _ := newCache(t, herd.LoadTimeout(3*time.Second))
		start := time.Now()
		_, err := c.Get(context.Background(), "k", func(ctx context.Context, _ string) (string, error) {
			<-ctx.Done()
			return "", ctx.Err()
		})
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("err = %v, want DeadlineExceeded", err)
		}
		if took := time.Since(start); took != 3*time.Second {
			t.Fatalf("load ended after %v, want the 3s LoadTimeout", took)
		}
	})
}

// 8. A loader panic or Goexit reaches every waiter; nothing is cached.
func TestLoaderPanicAndGoexit(t *testing.T) {
	for name, bad := range map[string]func(){
		"panic":  func() { panic("boom") },
		"goexit": runtime.Goexit,
	} {
		t.Run(name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				c, s := newCache(t, herd.TTL(time.Hour), herd.StaleIfError(time.Hour))
				gate := make(chan struct{})
				load := func(context.Context, string) (string, error) {
					<-gate
					bad()
					return "unreachable", nil
				}
				errs := make(chan error, 50)
				for range 50 {
					go func() {
						_, err := c.Get(context.Background(), "k", load)
						errs <- err
					}()
				}
				synctest.Wait()
				close(gate)
				for range 50 {
					err := <-errs
					var pe *flight.PanicError
					if name == "panic" && !errors.As(err, &pe) {
						t.Fatalf("waiter got %v, want *flight.PanicError", err)
					}
					if name == "goexit" && !errors.Is(err, flight.ErrGoexit) {
						t.Fatalf("waiter got %v, want flight.ErrGoexit", err)
					}
				}
				if n := s.sets.Load(); n != 0 {
					t.Fatalf("%d store writes after a %s", n, name)
				}
				if r := mustGet(t, c, "k", func(context.Context, string) (string, error) { return "ok", nil }); r.Value != "ok" {
					t.Fatalf("next Get: %+v", r)
				}
			})
		})
	}
}

// 9. A Set or Delete during a load or refresh of the key wins.
func TestWriteDuringLoadWins(t *testing.T) {
	for _, tc := range []struct {
		name    string
		refresh bool
		write   func(c *herd.Cache[string]) error
		want    string // "" for no entry
	}{
		{"set during load", false, func(c *herd.Cache[string]) error { return c.Set(context.Background(), "k", "v2") }, "v2"},
		{"delete during load", false, func(c *herd.Cache[string]) error { return c.Delete(context.Background(), "k") }, ""},
		{"set during refresh", true, func(c *herd.Cache[string]) error { return c.Set(context.Background(), "k", "v2") }, "v2"},
		{"delete during refresh", true, func(c *herd.Cache[string]) error { return c.Delete(context.Background(), "k") }, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				c, s := newCache(t, herd.RefreshAfter(time.Minute))
				src := &source{value: "loaded"}
				if tc.refresh {
					mustGet(t, c, "k", src.load)
					time.Sleep(2 * time.Minute)
				}
				release := src.block()
				go func() { _, _ = c.Get(context.Background(), "k", src.load) }()
				synctest.Wait() // the load or refresh is in flight
				if err := tc.write(c); err != nil {
					t.Fatal(err)
				}
				release()
				synctest.Wait()
				e, ok, _ := s.Get(context.Background(), "k")
				switch {
				case tc.want == "" && ok:
					t.Fatalf("the late load wrote %q over the Delete", e.Value)
				case tc.want != "" && (!ok || e.Value != tc.want):
					t.Fatalf("store holds %q (present %v), want %q", e.Value, ok, tc.want)
				}
			})
		})
	}
}

// failingStore fails every call.
type failingStore struct{ gets, sets atomic.Int32 }

var errStoreDown = errors.New("store down")

func (f *failingStore) Get(context.Context, string) (store.Entry[string], bool, error) {
	f.gets.Add(1)
	return store.Entry[string]{}, false, errStoreDown
}

func (f *failingStore) Set(context.Context, string, store.Entry[string]) error {
	f.sets.Add(1)
	return errStoreDown
}

func (f *failingStore) Delete(context.Context, string) error { return errStoreDown }

// countingHandler counts log records.
type countingHandler struct{ n atomic.Int32 }

func (h *countingHandler) Enabled(context.Context, slog.Level) bool  { return true }
func (h *countingHandler) Handle(context.Context, slog.Record) error { h.n.Add(1); return nil }
func (h *countingHandler) WithAttrs([]slog.Attr) slog.Handler        { return h }
func (h *countingHandler) WithGroup(string) slog.Handler             { return h }

// 10. A failing store costs a load, not an error; failures are counted and
// logged at a sane rate.
func TestFailingStoreCostsALoad(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		fs := &failingStore{}
		logs := &countingHandler{}
		c := herd.New[string](fs, herd.TTL(time.Minute), herd.WithLogger(slog.New(logs)))
		defer func() { _ = c.Close(context.Background()) }()
		src := &source{value: "v"}
		for range 100 {
			v, err := c.Get(context.Background(), "k", src.load)
			if err != nil || v != "v:k" {
				t.Fatalf("Get over a failing store = %q, %v", v, err)
			}
			synctest.Wait() // the load ends when its (failed) store write does
		}
		if n := src.calls.Load(); n != 100 {
			t.Fatalf("%d loads, want one per Get", n)
		}
		if st := c.Stats(); st.StoreErrors != 200 {
			t.Fatalf("StoreErrors = %d, want 200 (a failed read and write per Get)", st.StoreErrors)
		}
		if n := logs.n.Load(); n != 1 {
			t.Fatalf("%d log records for 200 store errors in one instant, want 1", n)
		}
		time.Sleep(10 * time.Second)
		_, _ = c.Get(context.Background(), "k", src.load)
		if n := logs.n.Load(); n != 2 {
			t.Fatalf("%d log records 10s later, want 2", n)
		}
		if err := c.Set(context.Background(), "k", "v"); !errors.Is(err, errStoreDown) {
			t.Fatalf("Set over a failing store: %v, want the store's error", err)
		}
	})
}

// closingStore records that the cache closed it.
type closingStore struct {
	store.Store[string]
	closed atomic.Int32
}

func (s *closingStore) Close() error {
	s.closed.Add(1)
	return s.Store.(*memory.Store[string]).Close(context.Background())
}

// 11. Close stops the workers, waits for in-flight refreshes, closes the store.
func TestClose(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := &closingStore{Store: memory.New[string]()}
		c := herd.New[string](s, herd.RefreshAfter(time.Minute), herd.WithLogger(discard))
		src := &source{value: "v"}
		mustGet(t, c, "k", src.load)
		time.Sleep(2 * time.Minute)
		release := src.block()
		mustGet(t, c, "k", src.load) // queues a refresh, which blocks
		synctest.Wait()

		closed := make(chan error)
		go func() { closed <- c.Close(context.Background()) }()
		synctest.Wait()
		select {
		case err := <-closed:
			t.Fatalf("Close returned (%v) while a refresh was running", err)
		default:
		}
		release()
		if err := <-closed; err != nil {
			t.Fatalf("Close: %v", err)
		}
		if n := s.closed.Load(); n != 1 {
			t.Fatalf("store closed %d times, want 1", n)
		}
		if _, err := c.Get(context.Background(), "k", src.load); !errors.Is(err, herd.ErrClosed) {
			t.Fatalf("Get after Close: %v", err)
		}
		if err := c.Set(context.Background(), "k", "v"); !errors.Is(err, herd.ErrClosed) {
			t.Fatalf("Set after Close: %v", err)
		}
		if err := c.Delete(context.Background(), "k"); !errors.Is(err, herd.ErrClosed) {
			t.Fatalf("Delete after Close: %v", err)
		}
		if err := c.Close(context.Background()); err != nil {
			t.Fatalf("second Close: %v", err)
		}
		if n := s.closed.Load(); n != 1 {
			t.Fatalf("second Close closed the store again")
		}
	})
}

func TestCloseIsBoundedByItsContext(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c, _ := newCache(t)
		gate := make(chan struct{})
		go func() {
			_, _ = c.Get(context.Background(), "k", func(context.Context, string) (string, error) {
				<-gate
				return "v", nil
			})
		}()
		synctest.Wait()
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		if err := c.Close(ctx); !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("Close with a load stuck: %v, want DeadlineExceeded", err)
		}
		close(gate) // the load finishes and its goroutine exits
		synctest.Wait()
	})
}

// 12. The observer receives the events that Stats counts.
func TestObserverSeesWhatStatsCount(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var mu sync.Mutex
		seen := make(map[herd.EventKind]uint64)
		obs := herd.ObserverFunc(func(e herd.Event) {
			mu.Lock()
			seen[e.Kind]++
			mu.Unlock()
		})
		c, _ := newCache(t, herd.TTL(time.Hour), herd.RefreshAfter(time.Minute), herd.NegativeTTL(time.Minute), herd.WithObserver(obs))
		src := &source{value: "v"}
		mustGet(t, c, "a", src.load)
		synctest.Wait() // the load's store write lands
		mustGet(t, c, "a", src.load)
		_, _ = c.Get(context.Background(), "ghost", func(context.Context, string) (string, error) { return "", herd.ErrNotFound })
		_, _ = c.Get(context.Background(), "ghost", src.load)
		time.Sleep(2 * time.Minute)
		mustGet(t, c, "a", src.load)
		synctest.Wait()
		st := c.Stats()
		mu.Lock()
		defer mu.Unlock()
		for kind, want := range map[herd.EventKind]uint64{
			herd.EventHit: st.Hits, herd.EventMiss: st.Misses, herd.EventStaleHit: st.StaleHits,
			herd.EventNegativeHit: st.NegativeHits, herd.EventLoad: st.Loads, herd.EventRefreshQueued: st.RefreshesQueued,
		} {
			if want == 0 || seen[kind] != want {
				t.Errorf("%v: observer saw %d, Stats say %d (want both > 0)", kind, seen[kind], want)
			}
		}
		if st.LoadTime < 0 {
			t.Errorf("LoadTime %v", st.LoadTime)
		}
	})
}

// Fetch tells fresh, stale, loaded and their age.
func TestFetchReportsStatusAndAge(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c, _ := newCache(t, herd.TTL(time.Hour), herd.RefreshAfter(10*time.Minute))
		src := &source{value: "v"}
		if r := mustGet(t, c, "k", src.load); r.Status != herd.StatusLoaded || r.Age() != 0 {
			t.Fatalf("first: %+v", r)
		}
		time.Sleep(5 * time.Minute)
		if r := mustGet(t, c, "k", src.load); r.Status != herd.StatusFresh || r.Age() != 5*time.Minute {
			t.Fatalf("at 5m: %+v", r)
		}
		time.Sleep(10 * time.Minute)
		if r := mustGet(t, c, "k", src.load); r.Status != herd.StatusStale || r.Age() != 15*time.Minute {
			t.Fatalf("at 15m: %+v", r)
		}
		for s, want := range map[herd.Status]string{
			herd.StatusFresh: "fresh", herd.StatusStale: "stale", herd.StatusLoaded: "loaded",
			herd.StatusStaleOnError: "stale-on-error", 0: "unknown",
		} {
			if s.String() != want {
				t.Errorf("Status(%d).String() = %q", s, s.String())
			}
		}
	})
}

// A loader sets its entry's TTL, or asks for it not to be cached.
func TestSetTTLFromTheLoader(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c, s := newCache(t, herd.TTL(time.Hour), herd.StaleIfError(time.Minute))
		var calls atomic.Int32
		load := func(ttl time.Duration) herd.Loader[string] {
			return func(ctx context.Context, key string) (string, error) {
				calls.Add(1)
				if !herd.SetTTL(ctx, ttl) {
					return "", errors.New("SetTTL did not find the loader's context")
				}
				return key, nil
			}
		}
		mustGet(t, c, "short", load(30*time.Second))
		synctest.Wait()
		e := s.entry(t, "short")
		if e.ExpiresAt.Sub(e.StoredAt) != 30*time.Second || e.KeepUntil.Sub(e.ExpiresAt) != time.Minute {
			t.Fatalf("entry times %+v, want a 30s TTL kept 1m more", e)
		}
		mustGet(t, c, "nostore", load(0))
		synctest.Wait()
		mustGet(t, c, "nostore", load(0))
		if n := calls.Load(); n != 3 {
			t.Fatalf("%d loads, want the 0-TTL value loaded each time", n)
		}
		if herd.SetTTL(context.Background(), time.Second) {
			t.Fatal("SetTTL outside a loader reported success")
		}
	})
}

func TestInvalidOptionsPanic(t *testing.T) {
	for name, opt := range map[string]herd.Option{
		"negative TTL":             herd.TTL(-1),
		"refresh not before TTL":   herd.RefreshAfter(time.Hour),
		"negative stale-if-error":  herd.StaleIfError(-1),
		"negative NegativeTTL":     herd.NegativeTTL(-1),
		"jitter of 1":              herd.Jitter(1),
		"negative jitter":          herd.Jitter(-0.1),
		"negative load timeout":    herd.LoadTimeout(-1),
		"zero workers":             herd.Workers(0),
		"zero queue":               herd.QueueSize(0),
		"backoff max below min":    herd.RefreshBackoff(time.Minute, time.Second),
		"locker without lease TTL": herd.WithLocker(&memory.Locker{}, 0),
	} {
		t.Run(name, func(t *testing.T) {
			defer func() {
				r := recover()
				if msg, ok := r.(string); !ok || len(msg) < len("herd: ") || msg[:6] != "herd: " {
					t.Fatalf("New panicked with %v, want a message starting with \"herd: \"", r)
				}
			}()
			herd.New[string](single.New[string](), herd.TTL(time.Minute), opt)
		})
	}
}
