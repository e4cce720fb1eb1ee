package flight_test

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/herdcache/herd/flight"
	"github.com/herdcache/herd/internal/herdtest"
)

// result is what one caller of Do got.
type result struct {
	v      int
	shared bool
	err    error
}

// startCallers starts n goroutines calling g.DoShared(ctx, key, fn) and returns
// a channel that receives each caller's result.
func startCallers(ctx context.Context, g *flight.Group[string, int], n int, key string, fn func(context.Context) (int, error)) <-chan result {
	out := make(chan result, n)
	for range n {
		go func() {
			v, shared, err := g.DoShared(ctx, key, fn)
			out <- result{v, shared, err}
		}()
	}
	return out
}

func TestDoConcurrentCallersShareOneCall(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var g flight.Group[string, int]
		var calls atomic.Int32
		release := make(chan struct{})
		fn := func(context.Context) (int, error) {
			calls.Add(1)
			<-release
			return 42, nil
		}
		const n = 100
		out := startCallers(t.Context(), &g, n, "k", fn)
		synctest.Wait() // every caller is now waiting on the one call
		close(release)
		for range n {
			r := <-out
			if r.err != nil || r.v != 42 || !r.shared {
				t.Fatalf("caller got %+v, want 42, shared, no error", r)
			}
		}
		if got := calls.Load(); got != 1 {
			t.Fatalf("fn ran %d times, want 1", got)
		}
	})
}

func TestDoSharesTheError(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var g flight.Group[string, int]
		errBoom := errors.New("boom")
		release := make(chan struct{})
		out := startCallers(t.Context(), &g, 10, "k", func(context.Context) (int, error) {
			<-release
			return 0, errBoom
		})
		synctest.Wait()
		close(release)
		for range 10 {
			if r := <-out; !errors.Is(r.err, errBoom) {
				t.Fatalf("err = %v, want %v", r.err, errBoom)
			}
		}
	})
}

func TestDoDifferentKeysRunIndependently(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var g flight.Group[string, int]
		blockA := make(chan struct{})
		outA := startCallers(t.Context(), &g, 1, "a", func(context.Context) (int, error) {
			<-blockA
			return 1, nil
		})
		synctest.Wait()
		// b completes while a is still blocked.
		v, err := g.Do(t.Context(), "b", func(context.Context) (int, error) { return 2, nil })
		if err != nil || v != 2 {
			t.Fatalf("Do(b) = %d, %v; want 2, nil", v, err)
		}
		close(blockA)
		if r := <-outA; r.v != 1 || r.err != nil {
			t.Fatalf("Do(a) = %+v, want 1", r)
		}
	})
}

func TestDoSequentialCallsRunAgain(t *testing.T) {
	var g flight.Group[string, int]
	var calls atomic.Int32
	fn := func(context.Context) (int, error) { return int(calls.Add(1)), nil }
	for want := 1; want <= 3; want++ {
		v, shared, err := g.DoShared(t.Context(), "k", fn)
		if err != nil || v != want || shared {
			t.Fatalf("call %d: got %d, shared=%v, %v", want, v, shared, err)
		}
	}
}

func TestDoCallerReturnsOnItsOwnContext(t *testing.T) {
	for _, tc := range []struct {
		name    string
		leaving int // index of the caller whose context ends: 0 started the call
	}{
		{"first caller leaves", 0},
		{"later caller leaves", 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				var g flight.Group[string, int]
				release := make(chan struct{})
				var fnCtxErr error
				fn := func(ctx context.Context) (int, error) {
					<-release
					fnCtxErr = ctx.Err()
					return 7, nil
				}
				leaveCtx, leave := context.WithCancel(t.Context())
				ctxs := []context.Context{t.Context(), t.Context()}
				ctxs[tc.leaving] = leaveCtx
				outs := make([]<-chan result, 2)
				for i, ctx := range ctxs {
					outs[i] = startCallers(ctx, &g, 1, "k", fn)
					synctest.Wait() // caller i is in before the next one
				}

				leave()
				synctest.Wait()
				select {
				case r := <-outs[tc.leaving]:
					if !errors.Is(r.err, context.Canceled) || r.shared {
						t.Fatalf("leaving caller got %+v, want context.Canceled, not shared", r)
					}
				default:
					t.Fatal("leaving caller still waits after its context ended")
				}

				close(release)
				if r := <-outs[1-tc.leaving]; r.err != nil || r.v != 7 {
					t.Fatalf("staying caller got %+v, want 7", r)
				}
				if fnCtxErr != nil {
					t.Fatalf("fn's context ended with %v when a caller left", fnCtxErr)
				}
			})
		})
	}
}

func TestDoDeadlineEndsOnlyThatCaller(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var g flight.Group[string, int]
		fn := func(context.Context) (int, error) {
			time.Sleep(time.Minute) // fake time inside the bubble
			return 1, nil
		}
		short, cancel := context.WithTimeout(t.Context(), time.Second)
		defer cancel()
		outShort := startCallers(short, &g, 1, "k", fn)
		outLong := startCallers(t.Context(), &g, 1, "k", fn)
		start := time.Now()
		r := <-outShort
		if !errors.Is(r.err, context.DeadlineExceeded) {
			t.Fatalf("short caller got %+v, want DeadlineExceeded", r)
		}
		if waited := time.Since(start); waited != time.Second {
			t.Fatalf("short caller returned after %v, want its 1s deadline", waited)
		}
		if r := <-outLong; r.err != nil || r.v != 1 {
			t.Fatalf("long caller got %+v", r)
		}
	})
}

func TestDoWithEndedContextStartsNothing(t *testing.T) {
	var g flight.Group[string, int]
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	_, err := g.Do(ctx, "k", func(context.Context) (int, error) {
		t.Error("fn ran for a caller whose context had ended")
		return 0, nil
	})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("err = %v, want context.Canceled", err)
	}
}

type traceKey struct{}

func TestDoFunctionContext(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var g flight.Group[string, int]
		callerCtx, cancel := context.WithCancel(context.WithValue(t.Context(), traceKey{}, "trace-1"))
		type seen struct {
			trace  any
			key    string
			hasKey bool
			intKey bool
			err    error
		}
		got := make(chan seen, 1)
		release := make(chan struct{})
		out := startCallers(callerCtx, &g, 1, "user:42", func(ctx context.Context) (int, error) {
			<-release
			k, ok := flight.KeyFromContext[string](ctx)
			_, intOK := flight.KeyFromContext[int](ctx)
			got <- seen{ctx.Value(traceKey{}), k, ok, intOK, ctx.Err()}
			return 0, nil
		})
		synctest.Wait()
		cancel() // the only caller leaves; by default the call goes on
		<-out
		close(release)
		s := <-got
		if s.trace != "trace-1" {
			t.Errorf("trace value = %v, want trace-1", s.trace)
		}
		if !s.hasKey || s.key != "user:42" {
			t.Errorf("KeyFromContext = %q, %v; want user:42, true", s.key, s.hasKey)
		}
		if s.intKey {
			t.Error("KeyFromContext[int] found a key in a Group[string, ...]")
		}
		if s.err != nil {
			t.Errorf("fn's context ended with %v after its caller left", s.err)
		}
		if _, ok := flight.KeyFromContext[string](t.Context()); ok {
			t.Error("KeyFromContext found a key outside a call")
		}
	})
}

func TestDoAbandonedCallFinishesByDefault(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var g flight.Group[string, int]
		ctx, cancel := context.WithCancel(t.Context())
		release := make(chan struct{})
		finished := make(chan error, 1)
		out := startCallers(ctx, &g, 3, "k", func(ctx context.Context) (int, error) {
			<-release
			finished <- ctx.Err()
			return 1, nil
		})
		synctest.Wait()
		cancel()
		for range 3 {
			if r := <-out; !errors.Is(r.err, context.Canceled) {
				t.Fatalf("got %+v, want context.Canceled", r)
			}
		}
		// A caller arriving now joins the call still in flight.
		later := startCallers(t.Context(), &g, 1, "k", func(context.Context) (int, error) {
			t.Error("a second call started while the abandoned one was still running")
			return 2, nil
		})
		synctest.Wait()
		close(release)
		if err := <-finished; err != nil {
			t.Fatalf("abandoned call's context ended with %v, want it to run to completion", err)
		}
		if r := <-later; r.v != 1 || r.err != nil {
			t.Fatalf("later caller got %+v, want the abandoned call's 1", r)
		}
	})
}

func TestDoCancelWhenAbandoned(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		g := flight.Group[string, int]{CancelWhenAbandoned: true}
		var calls atomic.Int32
		fn := func(ctx context.Context) (int, error) {
			n := calls.Add(1)
			select {
			case <-ctx.Done():
				return 0, ctx.Err()
			case <-time.After(time.Hour):
				return int(n), nil
			}
		}
		ctxA, leaveA := context.WithCancel(t.Context())
		ctxB, leaveB := context.WithCancel(t.Context())
		outA := startCallers(ctxA, &g, 1, "k", fn)
		outB := startCallers(ctxB, &g, 1, "k", fn)
		synctest.Wait()

		leaveA()
		synctest.Wait()
		<-outA
		// One caller is still waiting: the call must not be cancelled yet.
		later := startCallers(t.Context(), &g, 1, "k", fn)
		synctest.Wait()
		if got := calls.Load(); got != 1 {
			t.Fatalf("%d calls after one of two callers left, want 1", got)
		}
		leaveB()
		<-outB
		// later is still waiting: the call lives on.
		if r := <-later; r.err != nil || r.v != 1 {
			t.Fatalf("later caller got %+v, want the first call's result", r)
		}

		// Now abandon a call completely: the next caller starts a new call
		// rather than join the cancelled one.
		ctxC, leaveC := context.WithCancel(t.Context())
		outC := startCallers(ctxC, &g, 1, "k2", fn)
		synctest.Wait()
		leaveC()
		<-outC
		v, err := g.Do(t.Context(), "k2", fn)
		if err != nil {
			t.Fatalf("caller after abandonment got %v; it joined the cancelled call", err)
		}
		if v != 3 || calls.Load() != 3 {
			t.Fatalf("got %d after %d calls, want a fresh third call", v, calls.Load())
		}
	})
}

var errSentinel = errors.New("sentinel")

func TestDoPanicReachesEveryWaiter(t *testing.T) {
	for _, tc := range []struct {
		name  string
		value any
	}{
		{"string", "boom"},
		{"error", fmt.Errorf("wrapped: %w", errSentinel)},
		{"nil", nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				var g flight.Group[string, int]
				release := make(chan struct{})
				out := startCallers(t.Context(), &g, 5, "k", func(context.Context) (int, error) {
					<-release
					panic(tc.value)
				})
				synctest.Wait()
				close(release)
				for range 5 {
					r := <-out
					var pe *flight.PanicError
					if !errors.As(r.err, &pe) {
						t.Fatalf("err = %v, want *flight.PanicError", r.err)
					}
					if !strings.Contains(string(pe.Stack), "flight_test") {
						t.Fatalf("stack does not show the panicking function:\n%s", pe.Stack)
					}
					if _, isErr := tc.value.(error); isErr && !errors.Is(r.err, errSentinel) {
						t.Fatalf("errors.Is does not see the panicked error through %v", r.err)
					}
				}
				// The key is free again.
				v, err := g.Do(t.Context(), "k", func(context.Context) (int, error) { return 9, nil })
				if err != nil || v != 9 {
					t.Fatalf("Do after panic = %d, %v", v, err)
				}
			})
		})
	}
}

func TestDoGoexitReachesEveryWaiter(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var g flight.Group[string, int]
		release := make(chan struct{})
		out := startCallers(t.Context(), &g, 5, "k", func(context.Context) (int, error) {
			<-release
			runtime.Goexit()
			return 0, nil
		})
		synctest.Wait()
		close(release)
		for range 5 {
			if r := <-out; !errors.Is(r.err, flight.ErrGoexit) {
				t.Fatalf("err = %v, want ErrGoexit", r.err)
			}
		}
		v, err := g.Do(t.Context(), "k", func(context.Context) (int, error) { return 9, nil })
		if err != nil || v != 9 {
			t.Fatalf("Do after Goexit = %d, %v", v, err)
		}
	})
}

func TestForgetStartsANewCallAndTheOldOneKeepsItsSuccessor(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var g flight.Group[string, int]
		releaseA := make(chan struct{})
		releaseB := make(chan struct{})
		var calls atomic.Int32
		outA := startCallers(t.Context(), &g, 1, "k", func(context.Context) (int, error) {
			calls.Add(1)
			<-releaseA
			return 1, nil
		})
		synctest.Wait()
		g.Forget("k")
		outB := startCallers(t.Context(), &g, 1, "k", func(context.Context) (int, error) {
			calls.Add(1)
			<-releaseB
			return 2, nil
		})
		synctest.Wait()

		// A finishes: it must not remove B from the group.
		close(releaseA)
		if r := <-outA; r.v != 1 {
			t.Fatalf("A's caller got %+v", r)
		}
		outC := startCallers(t.Context(), &g, 1, "k", func(context.Context) (int, error) {
			calls.Add(1)
			return 3, nil
		})
		synctest.Wait()
		close(releaseB)
		if r := <-outB; r.v != 2 || !r.shared {
			t.Fatalf("B's caller got %+v, want 2, shared with C", r)
		}
		if r := <-outC; r.v != 2 {
			t.Fatalf("C got %+v, want to have joined B (2)", r)
		}
		if got := calls.Load(); got != 2 {
			t.Fatalf("%d calls, want 2", got)
		}
	})
}

func TestForgetOfIdleKeyIsNoop(t *testing.T) {
	var g flight.Group[string, int]
	g.Forget("nothing") // zero value, nothing in flight
	v, err := g.Do(t.Context(), "nothing", func(context.Context) (int, error) { return 1, nil })
	if v != 1 || err != nil {
		t.Fatalf("Do = %d, %v", v, err)
	}
}

func TestDoSharedReportsSharing(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var g flight.Group[string, int]
		_, shared, _ := g.DoShared(t.Context(), "alone", func(context.Context) (int, error) { return 1, nil })
		if shared {
			t.Fatal("a lone caller reported a shared result")
		}
		release := make(chan struct{})
		out := startCallers(t.Context(), &g, 2, "pair", func(context.Context) (int, error) {
			<-release
			return 1, nil
		})
		synctest.Wait()
		close(release)
		for range 2 {
			if r := <-out; !r.shared {
				t.Fatal("one of two callers reported an unshared result")
			}
		}
	})
}

// TestDoRace hammers a group from many goroutines with random keys, random
// cancellation and panics; run it under -race.
func TestDoRace(t *testing.T) {
	for _, cancelAbandoned := range []bool{false, true} {
		g := flight.Group[int, int]{CancelWhenAbandoned: cancelAbandoned}
		var wg sync.WaitGroup
		for i := range 64 {
			wg.Go(func() {
				for j := range 200 {
					ctx, cancel := context.WithCancel(t.Context())
					if j%7 == 0 {
						cancel()
					}
					key := (i + j) % 5
					v, err := g.Do(ctx, key, func(ctx context.Context) (int, error) {
						k, _ := flight.KeyFromContext[int](ctx)
						if j%31 == 0 {
							panic("x")
						}
						runtime.Gosched()
						return k * 10, nil
					})
					cancel()
					var pe *flight.PanicError
					switch {
					case err == nil && v != key*10:
						t.Errorf("key %d got %d", key, v)
					case err != nil && !errors.Is(err, context.Canceled) && !errors.As(err, &pe):
						t.Errorf("unexpected error %v", err)
					}
				}
			})
		}
		wg.Wait()
	}
}

// Regressions.

func TestRegressionFlightNilContextPanicsBeforeTheLock(t *testing.T) {
	var g flight.Group[string, int]
	func() {
		defer func() {
			if r := recover(); r != "flight: nil Context" {
				t.Fatalf("Do(nil) panicked with %v, want flight: nil Context", r)
			}
		}()
		//nolint:staticcheck // SA1012: a nil context is the point of the test
		_, _ = g.Do(nil, "k", func(context.Context) (int, error) { return 1, nil })
	}()
	// The group is not wedged.
	if v, err := g.Do(t.Context(), "k", func(context.Context) (int, error) { return 2, nil }); v != 2 || err != nil {
		t.Fatalf("Do after a nil-context panic = %d, %v", v, err)
	}
}

// The in-flight map was read with the group's mutex held and unlocked by
// hand: a key of an interface type holding a value that cannot be hashed
// panicked there and left every later call of the group hanging.
func TestRegressionFlightUnhashableKeyLeavesTheGroupUsable(t *testing.T) {
	var g flight.Group[any, int]
	for name, call := range map[string]func(){
		"Do":     func() { _, _ = g.Do(t.Context(), []int{1}, func(context.Context) (int, error) { return 1, nil }) },
		"Forget": func() { g.Forget([]int{1}) },
	} {
		func() {
			defer func() {
				if recover() == nil {
					t.Fatalf("%s of an unhashable key did not panic", name)
				}
			}()
			call()
		}()
	}
	herdtest.Returns(t, "Do after the panics", func() error {
		_, err := g.Do(context.Background(), "k", func(context.Context) (int, error) { return 1, nil })
		return err
	})
}
