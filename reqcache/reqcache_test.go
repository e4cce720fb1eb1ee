package reqcache_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"
	"weak"

	"github.com/herdcache/herd/flight"
	"github.com/herdcache/herd/internal/herdtest"
	"github.com/herdcache/herd/reqcache"
)

var errBoom = errors.New("boom")

// discard is the logger of the tests that reach a guard without checking the log.
var discard = slog.New(slog.DiscardHandler)

// counter returns a load function that counts its calls and returns
// prefix + the call number.
func counter(prefix string) (func(context.Context) (string, error), *atomic.Int32) {
	var n atomic.Int32
	return func(context.Context) (string, error) {
		return fmt.Sprint(prefix, n.Add(1)), nil
	}, &n
}

// mustGet calls reqcache.Get and fails the test unless it returns want.
func mustGet(ctx context.Context, t *testing.T, group, key string, fn func(context.Context) (string, error), want string) {
	t.Helper()
	v, err := reqcache.Get(ctx, group, key, fn)
	if err != nil || v != want {
		t.Fatalf("Get(%s, %s) = %q, %v; want %q", group, key, v, err, want)
	}
}

type result struct {
	v   string
	err error
}

// startGets starts n goroutines calling reqcache.Get(ctx, "g", "k", fn) and
// returns a channel that receives each caller's result.
func startGets(ctx context.Context, n int, fn func(context.Context) (string, error)) <-chan result {
	out := make(chan result, n)
	for range n {
		go func() {
			v, err := reqcache.Get(ctx, "g", "k", fn)
			out <- result{v, err}
		}()
	}
	return out
}

// recorder keeps every record logged to it.
type recorder struct{ herdtest.Recorder }

func (r *recorder) messages() []string {
	var m []string
	for _, rec := range r.Records() {
		m = append(m, rec.Level.String()+" "+rec.Message)
	}
	return m
}

// 1. With on a context that has a cache returns it unchanged.

func TestWithReturnsAContextWithACacheUnchanged(t *testing.T) {
	ctx := reqcache.With(t.Context())
	if again := reqcache.With(ctx, reqcache.Lifetime(time.Second)); again != ctx {
		t.Fatal("With on a context with a cache returned a new context")
	}
	type k struct{}
	nested := reqcache.With(context.WithValue(ctx, k{}, 1))
	load, n := counter("v")
	mustGet(ctx, t, "g", "k", load, "v1")
	mustGet(nested, t, "g", "k", load, "v1") // the nested call shares the cache
	if n.Load() != 1 {
		t.Fatalf("%d loads, want 1", n.Load())
	}
	if other := reqcache.With(t.Context()); other == ctx {
		t.Fatal("With on a context without a cache returned it unchanged")
	}
}

// 2. Get loads once per group and key; concurrent Gets share; errors are not
// cached; a hit of another type reloads.

func TestGetLoadsOncePerGroupAndKey(t *testing.T) {
	ctx := reqcache.With(t.Context())
	load, n := counter("v")
	for range 3 {
		mustGet(ctx, t, "g", "a", load, "v1")
	}
	mustGet(ctx, t, "g", "b", load, "v2")
	mustGet(ctx, t, "g", "a", load, "v1")
	if n.Load() != 2 {
		t.Fatalf("%d loads, want 2", n.Load())
	}
}

func TestGetConcurrentCallersShareOneLoad(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ctx := reqcache.With(t.Context())
		release := make(chan struct{})
		var n atomic.Int32
		out := startGets(ctx, 20, func(context.Context) (string, error) {
			n.Add(1)
			<-release
			return "v", nil
		})
		synctest.Wait() // one caller loads, the others wait on it
		close(release)
		for range 20 {
			if r := <-out; r.v != "v" || r.err != nil {
				t.Fatalf("caller got %+v", r)
			}
		}
		if n.Load() != 1 {
			t.Fatalf("%d loads, want 1", n.Load())
		}
	})
}

func TestGetErrorsAreSharedButNotCached(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ctx := reqcache.With(t.Context())
		release := make(chan struct{})
		var n atomic.Int32
		out := startGets(ctx, 5, func(context.Context) (string, error) {
			n.Add(1)
			<-release
			return "", errBoom
		})
		synctest.Wait()
		close(release)
		for range 5 {
			if r := <-out; !errors.Is(r.err, errBoom) {
				t.Fatalf("caller got %+v, want boom", r)
			}
		}
		if n.Load() != 1 {
			t.Fatalf("%d loads, want 1 shared", n.Load())
		}
		load, m := counter("ok")
		mustGet(ctx, t, "g", "k", load, "ok1")
		if m.Load() != 1 {
			t.Fatal("the error was cached: the next Get did not load")
		}
	})
}

func TestGetWaiterReturnsOnItsOwnContext(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ctx := reqcache.With(t.Context())
		release := make(chan struct{})
		fn := func(context.Context) (string, error) {
			<-release
			return "v", nil
		}
		loader := startGets(ctx, 1, fn)
		synctest.Wait()
		waiterCtx, cancel := context.WithTimeout(ctx, time.Second)
		defer cancel()
		start := time.Now()
		_, err := reqcache.Get(waiterCtx, "g", "k", fn)
		if !errors.Is(err, context.DeadlineExceeded) || time.Since(start) != time.Second {
			t.Fatalf("waiter got %v after %v, want DeadlineExceeded after 1s", err, time.Since(start))
		}
		close(release)
		if r := <-loader; r.v != "v" || r.err != nil {
			t.Fatalf("loader got %+v", r)
		}
		mustGet(ctx, t, "g", "k", fn, "v") // cached though a waiter left
	})
}

func TestGetWaiterLoadsItselfWhenTheLoadersContextEnded(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ctx := reqcache.With(t.Context())
		var n atomic.Int32
		fn := func(ctx context.Context) (string, error) {
			n.Add(1)
			select {
			case <-ctx.Done():
				return "", fmt.Errorf("query: %w", ctx.Err())
			case <-time.After(time.Minute):
				return "v", nil
			}
		}
		short, cancel := context.WithTimeout(ctx, time.Second)
		defer cancel()
		loader := startGets(short, 1, fn)
		synctest.Wait()
		waiter := startGets(ctx, 1, fn)
		if r := <-loader; !errors.Is(r.err, context.DeadlineExceeded) {
			t.Fatalf("loader got %+v, want its own DeadlineExceeded", r)
		}
		if r := <-waiter; r.v != "v" || r.err != nil {
			t.Fatalf("waiter got %+v, want to load v itself", r)
		}
		if n.Load() != 2 {
			t.Fatalf("%d loads, want 2", n.Load())
		}
	})
}

func TestGetOfAnotherTypeReloads(t *testing.T) {
	ctx := reqcache.With(t.Context())
	var ints, strs int
	loadInt := func(context.Context) (int, error) { ints++; return 7, nil }
	loadStr := func(context.Context) (string, error) { strs++; return "seven", nil }

	for _, step := range []struct {
		typ   string
		wantI int
		wantS int
	}{
		{"int", 1, 0},
		{"int", 1, 0},
		{"string", 1, 1}, // another type: reloads, no panic
		{"string", 1, 1},
		{"int", 2, 1}, // replaced by the string: reloads again
	} {
		var err error
		switch step.typ {
		case "int":
			var v int
			v, err = reqcache.Get(ctx, "g", "k", loadInt)
			if v != 7 {
				t.Fatalf("Get[int] = %d", v)
			}
		case "string":
			var v string
			v, err = reqcache.Get(ctx, "g", "k", loadStr)
			if v != "seven" {
				t.Fatalf("Get[string] = %q", v)
			}
		}
		if err != nil || ints != step.wantI || strs != step.wantS {
			t.Fatalf("after Get[%s]: %d int loads, %d string loads, %v; want %d, %d",
				step.typ, ints, strs, err, step.wantI, step.wantS)
		}
	}
}

func TestGetOfAnotherTypeWaitingOnALoadReloads(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ctx := reqcache.With(t.Context())
		release := make(chan struct{})
		ints := make(chan int, 1)
		go func() {
			v, _ := reqcache.Get(ctx, "g", "k", func(context.Context) (int, error) {
				<-release
				return 7, nil
			})
			ints <- v
		}()
		synctest.Wait()
		strs := startGets(ctx, 1, func(context.Context) (string, error) { return "seven", nil })
		synctest.Wait()
		close(release)
		if v := <-ints; v != 7 {
			t.Fatalf("Get[int] = %d", v)
		}
		if r := <-strs; r.v != "seven" || r.err != nil {
			t.Fatalf("Get[string] waiting on an int load got %+v", r)
		}
	})
}

// 3. No cache in the context: Get just calls the function.

func TestGetWithoutACacheCallsTheFunction(t *testing.T) {
	ctx := t.Context()
	load, n := counter("v")
	mustGet(ctx, t, "g", "k", load, "v1")
	mustGet(ctx, t, "g", "k", load, "v2")
	reqcache.Set(ctx, "g", "k", "set")
	reqcache.Delete(ctx, "g", "k")
	mustGet(ctx, t, "g", "k", load, "v3")
	if _, err := reqcache.Get(ctx, "g", "k", func(context.Context) (int, error) { return 0, errBoom }); !errors.Is(err, errBoom) {
		t.Fatalf("err = %v, want boom as returned", err)
	}
	if n.Load() != 3 {
		t.Fatalf("%d loads, want 3", n.Load())
	}
}

// 4. Without: nothing read or stored, the parent's cache untouched.

func TestWithout(t *testing.T) {
	parent := reqcache.With(t.Context())
	load, n := counter("v")
	mustGet(parent, t, "g", "k", load, "v1")

	w := reqcache.Without(parent)
	mustGet(w, t, "g", "k", load, "v2")   // not read from the parent's cache
	mustGet(w, t, "g", "new", load, "v3") // not stored...
	mustGet(w, t, "g", "new", load, "v4")
	reqcache.Set(w, "g", "k", "set through Without")
	reqcache.Delete(w, "g", "k")

	mustGet(parent, t, "g", "k", load, "v1")   // the parent's cache still serves
	mustGet(parent, t, "g", "new", load, "v5") // ...in the parent's cache either
	mustGet(parent, t, "g", "new", load, "v5") // which still stores
	if n.Load() != 5 {
		t.Fatalf("%d loads, want 5", n.Load())
	}

	// With on a context from Without attaches a new, separate cache.
	fresh := reqcache.With(w)
	reqcache.Set(fresh, "g", "k", "fresh")
	mustGet(fresh, t, "g", "k", load, "fresh")
	mustGet(parent, t, "g", "k", load, "v1")

	if ctx := t.Context(); reqcache.Without(ctx) != ctx {
		t.Fatal("Without on a context without a cache did not return it unchanged")
	}
}

// 5. Set and Delete; groups are isolated.

func TestSetAndDelete(t *testing.T) {
	ctx := reqcache.With(t.Context())
	load, n := counter("v")
	reqcache.Set(ctx, "g", "k", "set")
	mustGet(ctx, t, "g", "k", load, "set")
	reqcache.Set(ctx, "g", "k", "set again")
	mustGet(ctx, t, "g", "k", load, "set again")
	reqcache.Delete(ctx, "g", "k")
	mustGet(ctx, t, "g", "k", load, "v1")
	reqcache.Delete(ctx, "g", "missing") // a no-op
	reqcache.Delete(ctx, "other", "k")   // another group: a no-op here
	mustGet(ctx, t, "g", "k", load, "v1")
	if n.Load() != 1 {
		t.Fatalf("%d loads, want 1", n.Load())
	}
}

func TestGroupsAreIsolated(t *testing.T) {
	ctx := reqcache.With(t.Context())
	users, nu := counter("user")
	orders, no := counter("order")
	mustGet(ctx, t, "user", "42", users, "user1")
	mustGet(ctx, t, "order", "42", orders, "order1")
	mustGet(ctx, t, "user", "42", users, "user1")
	reqcache.Set(ctx, "order", "7", "set")
	mustGet(ctx, t, "user", "7", users, "user2")
	reqcache.Delete(ctx, "user", "42")
	mustGet(ctx, t, "order", "42", orders, "order1")
	mustGet(ctx, t, "user", "42", users, "user3")
	// A group and key that concatenate alike are still distinct.
	mustGet(ctx, t, "user4", "2", users, "user4")
	if nu.Load() != 4 || no.Load() != 1 {
		t.Fatalf("%d user loads, %d order loads; want 4, 1", nu.Load(), no.Load())
	}
}

func TestSetOrDeleteWhileALoadRunsWins(t *testing.T) {
	set := func(ctx context.Context) { reqcache.Set(ctx, "g", "k", "set") }
	del := func(ctx context.Context) { reqcache.Delete(ctx, "g", "k") }
	for _, tc := range []struct {
		name    string
		during  func(ctx context.Context)
		loadErr error  // what the load in flight fails with
		want    string // what a Get after the load returns
	}{
		{"Set", set, nil, "set"},
		{"Delete", del, nil, "after"},
		{"Set during a failing load", set, errBoom, "set"},
		{"Delete during a failing load", del, errBoom, "after"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				ctx := reqcache.With(t.Context())
				release := make(chan struct{})
				out := startGets(ctx, 1, func(context.Context) (string, error) {
					<-release
					if tc.loadErr != nil {
						return "", tc.loadErr
					}
					return "late", nil
				})
				synctest.Wait()
				tc.during(ctx)
				close(release)
				if r := <-out; !errors.Is(r.err, tc.loadErr) || (r.err == nil && r.v != "late") {
					t.Fatalf("the loading caller got %+v, want its own result", r)
				}
				mustGet(ctx, t, "g", "k", func(context.Context) (string, error) { return "after", nil }, tc.want)
			})
		})
	}
}

// 6. The lifetime guard and the entry bound.

func TestLifetimeGuard(t *testing.T) {
	for _, tc := range []struct {
		name string
		opts []reqcache.Option
		life time.Duration // 0: never ends
	}{
		{"default is 5 minutes", nil, 5 * time.Minute},
		{"configured", []reqcache.Option{reqcache.Lifetime(time.Second)}, time.Second},
		{"disabled", []reqcache.Option{reqcache.Lifetime(reqcache.Forever)}, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				rec := &recorder{}
				ctx := reqcache.With(t.Context(), append(tc.opts, reqcache.WithLogger(slog.New(rec)))...)
				load, n := counter("v")
				mustGet(ctx, t, "g", "k", load, "v1")
				if tc.life == 0 {
					time.Sleep(1000 * time.Hour)
					mustGet(ctx, t, "g", "k", load, "v1")
					if len(rec.messages()) != 0 || n.Load() != 1 {
						t.Fatalf("%d loads, logged %v; want 1 load, no log", n.Load(), rec.messages())
					}
					return
				}
				time.Sleep(tc.life - 1)
				mustGet(ctx, t, "g", "k", load, "v1") // still serving
				time.Sleep(time.Nanosecond)           // exactly the lifetime

				mustGet(ctx, t, "g", "k", load, "v2") // no longer serving
				mustGet(ctx, t, "g", "k", load, "v3") // nor storing
				reqcache.Set(ctx, "g", "s", "set")
				mustGet(ctx, t, "g", "s", load, "v4")
				got := rec.messages()
				if len(got) != 1 || !strings.HasPrefix(got[0], "WARN reqcache: ") || !strings.Contains(got[0], "lifetime") {
					t.Fatalf("logged %q, want one warning about the lifetime", got)
				}
				if n.Load() != 4 {
					t.Fatalf("%d loads, want 4", n.Load())
				}
			})
		})
	}
}

func TestLifetimeGuardAlsoStopsSet(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		rec := &recorder{}
		ctx := reqcache.With(t.Context(), reqcache.Lifetime(time.Second), reqcache.WithLogger(slog.New(rec)))
		time.Sleep(time.Second)
		reqcache.Set(ctx, "g", "k", "set") // the first access past the lifetime
		load, _ := counter("v")
		mustGet(ctx, t, "g", "k", load, "v1")
		if got := rec.messages(); len(got) != 1 {
			t.Fatalf("logged %q, want one warning", got)
		}
	})
}

func TestEntryBound(t *testing.T) {
	rec := &recorder{}
	ctx := reqcache.With(t.Context(), reqcache.MaxEntries(2), reqcache.WithLogger(slog.New(rec)))
	load, n := counter("v")
	mustGet(ctx, t, "g", "a", load, "v1")
	mustGet(ctx, t, "g", "b", load, "v2")
	mustGet(ctx, t, "g", "c", load, "v3") // past the bound: loaded, not stored
	mustGet(ctx, t, "g", "c", load, "v4")
	reqcache.Set(ctx, "g", "d", "dropped")
	mustGet(ctx, t, "g", "d", load, "v5")
	mustGet(ctx, t, "g", "a", load, "v1") // stored keys still served
	reqcache.Set(ctx, "g", "b", "replaced")
	mustGet(ctx, t, "g", "b", load, "replaced")
	reqcache.Delete(ctx, "g", "a") // room again
	mustGet(ctx, t, "g", "c", load, "v6")
	mustGet(ctx, t, "g", "c", load, "v6")
	if n.Load() != 6 {
		t.Fatalf("%d loads, want 6", n.Load())
	}
	got := rec.messages()
	if len(got) != 1 || !strings.HasPrefix(got[0], "WARN reqcache: ") || !strings.Contains(got[0], "entry bound") {
		t.Fatalf("logged %q, want one warning about the bound", got)
	}
}

func TestEntryBoundDefault(t *testing.T) {
	ctx := reqcache.With(t.Context(), reqcache.WithLogger(discard))
	var n int
	load := func(context.Context) (int, error) { n++; return n, nil }
	for i := range reqcache.DefaultMaxEntries + 1 {
		if _, err := reqcache.Get(ctx, "g", fmt.Sprint(i), load); err != nil {
			t.Fatal(err)
		}
	}
	first, _ := reqcache.Get(ctx, "g", "0", load)
	last, _ := reqcache.Get(ctx, "g", fmt.Sprint(reqcache.DefaultMaxEntries), load)
	if first != 1 || last != reqcache.DefaultMaxEntries+2 {
		t.Fatalf("first key = %d (want 1, cached), key past the bound = %d (want a new load, %d)",
			first, last, reqcache.DefaultMaxEntries+2)
	}

	unbounded := reqcache.With(t.Context(), reqcache.MaxEntries(reqcache.Unbounded))
	for i := range reqcache.DefaultMaxEntries + 1 {
		reqcache.Set(unbounded, "g", fmt.Sprint(i), i)
	}
	if v, _ := reqcache.Get(unbounded, "g", fmt.Sprint(reqcache.DefaultMaxEntries), load); v != reqcache.DefaultMaxEntries {
		t.Fatalf("MaxEntries(Unbounded) did not store past the default bound: got %d", v)
	}
}

// Panics.

func TestPanicPropagatesToTheLoaderAndReachesTheWaiters(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ctx := reqcache.With(t.Context())
		release := make(chan struct{})
		fn := func(context.Context) (string, error) {
			<-release
			panic("corrupt row")
		}
		recovered := make(chan any, 1)
		go func() {
			defer func() { recovered <- recover() }()
			_, _ = reqcache.Get(ctx, "g", "k", fn)
		}()
		synctest.Wait()
		waiters := startGets(ctx, 3, fn)
		synctest.Wait()
		close(release)
		if r := <-recovered; r != "corrupt row" {
			t.Fatalf("the loading caller recovered %v, want its own panic", r)
		}
		for range 3 {
			r := <-waiters
			var pe *flight.PanicError
			if !errors.As(r.err, &pe) || pe.Value != "corrupt row" || !strings.Contains(string(pe.Stack), "reqcache_test") {
				t.Fatalf("waiter got %+v, want a *flight.PanicError", r)
			}
			if !strings.Contains(r.err.Error(), "reqcache: ") {
				t.Fatalf("waiter error %q lacks the package prefix", r.err)
			}
		}
		load, _ := counter("v")
		mustGet(ctx, t, "g", "k", load, "v1") // nothing cached, no deadlock
	})
}

func TestGoexitReachesTheWaiters(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ctx := reqcache.With(t.Context())
		release := make(chan struct{})
		fn := func(context.Context) (string, error) {
			<-release
			runtime.Goexit()
			return "", nil
		}
		exited := make(chan bool, 1)
		go func() {
			returned := false
			defer func() { exited <- !returned }()
			_, _ = reqcache.Get(ctx, "g", "k", fn)
			returned = true
		}()
		synctest.Wait()
		waiters := startGets(ctx, 3, fn)
		synctest.Wait()
		close(release)
		if !<-exited {
			t.Fatal("Get returned to the caller whose function called runtime.Goexit")
		}
		for range 3 {
			if r := <-waiters; !errors.Is(r.err, flight.ErrGoexit) {
				t.Fatalf("waiter got %+v, want ErrGoexit", r)
			}
		}
		load, _ := counter("v")
		mustGet(ctx, t, "g", "k", load, "v1")
	})
}

// TestGetRace hammers one request cache from many goroutines with a few keys,
// two types, Sets, Deletes, errors and cancellation; run it under -race.
func TestGetRace(t *testing.T) {
	ctx := reqcache.With(t.Context())
	var wg sync.WaitGroup
	for i := range 32 {
		wg.Go(func() {
			for j := range 300 {
				key := fmt.Sprint((i + j) % 4)
				cctx, cancel := context.WithCancel(ctx)
				if j%9 == 0 {
					cancel()
				}
				switch j % 5 {
				case 0:
					reqcache.Set(cctx, "g", key, "set:"+key)
				case 1:
					reqcache.Delete(cctx, "g", key)
				case 2:
					_, _ = reqcache.Get(cctx, "g", key, func(context.Context) (int, error) { return 1, nil })
				default:
					v, err := reqcache.Get(cctx, "g", key, func(context.Context) (string, error) {
						runtime.Gosched()
						if j%7 == 0 {
							return "", errBoom
						}
						return "load:" + key, nil
					})
					if err == nil && v != "load:"+key && v != "set:"+key {
						t.Errorf("key %s got %q", key, v)
					}
				}
				cancel()
			}
		})
	}
	wg.Wait()
}

// Regressions.

// A function that fails on a deadline of its own used to be run again by
// every caller that shared it, one after the other, because its error was a
// context error while their contexts lived: the last of N waited N times as
// long. Which context ended decides now.
func TestRegressionReqcacheTimedOutCallRunsOncePerWaiter(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ctx := reqcache.With(t.Context())
		var n atomic.Int32
		fn := func(ctx context.Context) (string, error) {
			n.Add(1)
			ctx, cancel := context.WithTimeout(ctx, time.Second)
			defer cancel()
			<-ctx.Done()
			return "", fmt.Errorf("query: %w", ctx.Err())
		}
		const callers = 5
		out := startGets(ctx, callers, fn)
		for range callers {
			if r := <-out; !errors.Is(r.err, context.DeadlineExceeded) {
				t.Fatalf("a caller got %+v, want the shared DeadlineExceeded", r)
			}
		}
		if got := n.Load(); got != 1 {
			t.Fatalf("the function ran %d times for %d callers sharing it, want once", got, callers)
		}
	})
}

// An expired cache used to drop its entries at the next access only: a
// context held past the lifetime (by a goroutine that outlived its request)
// kept every value reachable for as long as it was held.
func TestRegressionReqcacheExpiredEntriesReleasedAtLifetime(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ctx := reqcache.With(context.Background(), reqcache.Lifetime(time.Minute), reqcache.WithLogger(discard))
		released := setCollectable(ctx)
		time.Sleep(time.Minute)
		synctest.Wait()
		if !released() {
			t.Fatal("a value is still reachable through the request's context after the cache's lifetime")
		}
		runtime.KeepAlive(ctx)
	})
}

// setCollectable stores a value in ctx's cache, keeping no other reference to
// it, and returns a function that reports whether it has been collected.
func setCollectable(ctx context.Context) func() bool {
	v := new([1 << 10]byte)
	reqcache.Set(ctx, "g", "big", v)
	w := weak.Make(v)
	return func() bool {
		runtime.GC()
		return w.Value() == nil
	}
}

// The cache ends, and lets go of its values, when the context it was
// attached to ends or at Close; an ended cache is no cache.
func TestCacheEndsWithItsContextOrClose(t *testing.T) {
	t.Run("context", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			parent, cancel := context.WithCancel(context.Background())
			ctx := reqcache.With(parent)
			released := setCollectable(ctx)
			if _, ok := reqcache.Peek[*[1 << 10]byte](ctx, "g", "big"); !ok {
				t.Fatal("the value is not cached")
			}
			cancel()
			synctest.Wait()
			if !released() {
				t.Fatal("a value is still reachable after the cache's context ended")
			}
			load, n := counter("v")
			mustGet(ctx, t, "g", "k", load, "v1")
			mustGet(ctx, t, "g", "k", load, "v2")
			if n.Load() != 2 {
				t.Fatalf("%d loads, want 2: an ended cache stores nothing", n.Load())
			}
		})
	})
	t.Run("Close", func(t *testing.T) {
		ctx := reqcache.With(context.Background())
		released := setCollectable(ctx)
		for range 2 {
			if err := reqcache.Close(ctx); err != nil {
				t.Fatalf("Close = %v", err)
			}
		}
		if !released() {
			t.Fatal("a value is still reachable after Close")
		}
		reqcache.Set(ctx, "g", "k", "set")
		if v, ok := reqcache.Peek[string](ctx, "g", "k"); ok {
			t.Fatalf("Peek after Close = %q, want nothing", v)
		}
		if err := reqcache.Close(context.Background()); err != nil {
			t.Fatalf("Close of a context without a cache = %v", err)
		}
	})
}

// The request cache it replaces could be asked whether a value is cached
// without a function to call on a miss; Get always needed one.
func TestRegressionReqcachePeekNeverLoadsOrWaits(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ctx := reqcache.With(t.Context())
		if v, ok := reqcache.Peek[string](ctx, "g", "k"); ok || v != "" {
			t.Fatalf("Peek of a missing key = %q, %v", v, ok)
		}
		release := make(chan struct{})
		out := startGets(ctx, 1, func(context.Context) (string, error) {
			<-release
			return "v", nil
		})
		synctest.Wait()
		if _, ok := reqcache.Peek[string](ctx, "g", "k"); ok {
			t.Fatal("Peek of a key in flight found a value")
		}
		close(release)
		<-out
		if v, ok := reqcache.Peek[string](ctx, "g", "k"); !ok || v != "v" {
			t.Fatalf("Peek after the load = %q, %v; want v, true", v, ok)
		}
		if v, ok := reqcache.Peek[int](ctx, "g", "k"); ok || v != 0 {
			t.Fatalf("Peek of another type = %d, %v; want a miss", v, ok)
		}
		if _, ok := reqcache.Peek[string](ctx, "other", "k"); ok {
			t.Fatal("Peek saw another group's entry")
		}
		if _, ok := reqcache.Peek[string](reqcache.Without(ctx), "g", "k"); ok {
			t.Fatal("Peek on a context from Without found a value")
		}
		if _, ok := reqcache.Peek[string](t.Context(), "g", "k"); ok {
			t.Fatal("Peek on a context without a cache found a value")
		}

		// A failed load leaves nothing to peek at.
		_, _ = reqcache.Get(ctx, "g", "failed", func(context.Context) (string, error) { return "", errBoom })
		if _, ok := reqcache.Peek[string](ctx, "g", "failed"); ok {
			t.Fatal("Peek found the result of a failed load")
		}
	})
}

func TestRegressionReqcacheOptionsOutOfRangePanic(t *testing.T) {
	for _, tc := range []struct {
		opt  func() reqcache.Option
		want string
	}{
		{func() reqcache.Option { return reqcache.Lifetime(0) }, "reqcache: Lifetime must be positive (reqcache.Forever turns the guard off), got 0s"},
		{func() reqcache.Option { return reqcache.Lifetime(-time.Second) }, "reqcache: Lifetime must be positive (reqcache.Forever turns the guard off), got -1s"},
		{func() reqcache.Option { return reqcache.MaxEntries(0) }, "reqcache: MaxEntries must be positive (reqcache.Unbounded turns the bound off), got 0"},
	} {
		t.Run(tc.want, func(t *testing.T) {
			for _, attach := range []func(reqcache.Option){
				func(o reqcache.Option) { reqcache.With(t.Context(), o) },
				func(o reqcache.Option) { reqcache.NewMiddleware(o) },
			} {
				func() {
					defer func() {
						if r := recover(); r != tc.want {
							t.Fatalf("panicked with %v, want %q", r, tc.want)
						}
					}()
					attach(tc.opt())
				}()
			}
		})
	}
}

func TestRegressionReqcacheNilContextPanics(t *testing.T) {
	for name, call := range map[string]func(){
		"With":    func() { reqcache.With(nil) },                            //nolint:staticcheck // SA1012: the point of the test
		"Without": func() { reqcache.Without(nil) },                         //nolint:staticcheck // SA1012: the point of the test
		"Get":     func() { _, _ = reqcache.Get(nil, "g", "k", counterFn) }, //nolint:staticcheck // SA1012: the point of the test
		"Peek":    func() { reqcache.Peek[string](nil, "g", "k") },          //nolint:staticcheck // SA1012: the point of the test
		"Set":     func() { reqcache.Set(nil, "g", "k", "v") },              //nolint:staticcheck // SA1012: the point of the test
		"Delete":  func() { reqcache.Delete(nil, "g", "k") },                //nolint:staticcheck // SA1012: the point of the test
		"Close":   func() { _ = reqcache.Close(nil) },                       //nolint:staticcheck // SA1012: the point of the test
	} {
		t.Run(name, func(t *testing.T) {
			defer func() {
				if r := recover(); r != "reqcache: nil Context" {
					t.Fatalf("%s(nil) panicked with %v, want reqcache: nil Context", name, r)
				}
			}()
			call()
		})
	}
}

func counterFn(context.Context) (string, error) { return "v", nil }

// A nil function panics at the call, with a value cached too.
func TestRegressionReqcacheNilFunctionPanicsAtTheCall(t *testing.T) {
	ctx := reqcache.With(context.Background())
	if _, err := reqcache.Get(ctx, "g", "k", func(context.Context) (int, error) { return 1, nil }); err != nil {
		t.Fatal(err)
	}
	defer func() {
		if r := recover(); r != "reqcache: Get needs a function, got nil" {
			t.Fatalf("panic %v", r)
		}
	}()
	_, _ = reqcache.Get[int](ctx, "g", "k", nil)
}
