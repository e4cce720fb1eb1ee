package flight_test

import (
	"context"
	"errors"
	"runtime"
	"strings"
	"testing"
	"testing/synctest"

	"github.com/herdcache/herd/flight"
)

// A caller whose context cannot end runs the call on its own goroutine.

func TestDoOnACallerThatCannotLeaveCostsOneAllocation(t *testing.T) {
	var g flight.Group[string, int]
	ctx := context.Background()
	fn := func(context.Context) (int, error) { return 1, nil }
	if n := testing.AllocsPerRun(100, func() {
		if v, err := g.Do(ctx, "k", fn); v != 1 || err != nil {
			t.Fatalf("Do = %d, %v", v, err)
		}
	}); n > 1 {
		t.Fatalf("%v allocations per uncontended Do, want at most 1", n)
	}
}

func TestDoOnACallerThatCannotLeaveReturnsAPanicAsAnError(t *testing.T) {
	var g flight.Group[string, int]
	_, err := g.Do(context.Background(), "k", func(context.Context) (int, error) { panic("boom") })
	var pe *flight.PanicError
	if !errors.As(err, &pe) || pe.Value != "boom" {
		t.Fatalf("err = %v, want a *flight.PanicError of boom", err)
	}
	if !strings.Contains(string(pe.Stack), "inline_test") {
		t.Fatalf("stack does not show the panicking function:\n%s", pe.Stack)
	}
	if v, err := g.Do(context.Background(), "k", func(context.Context) (int, error) { return 2, nil }); v != 2 || err != nil {
		t.Fatalf("Do after the panic = %d, %v", v, err)
	}
}

func TestDoGoexitOnACallerThatCannotLeave(t *testing.T) {
	for _, own := range []bool{false, true} {
		t.Run(map[bool]string{false: "caller's goroutine", true: "OwnGoroutine"}[own], func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				g := flight.Group[string, int]{OwnGoroutine: own}
				release := make(chan struct{})
				fn := func(context.Context) (int, error) {
					<-release
					runtime.Goexit()
					return 0, nil
				}
				first := make(chan error, 1)
				exited := make(chan struct{})
				go func() {
					defer close(exited)
					_, err := g.Do(context.Background(), "k", fn)
					first <- err
				}()
				synctest.Wait()
				other := startCallers(t.Context(), &g, 1, "k", fn)
				synctest.Wait()
				close(release)
				if r := <-other; !errors.Is(r.err, flight.ErrGoexit) {
					t.Fatalf("the other waiter got %v, want ErrGoexit", r.err)
				}
				<-exited
				select {
				case err := <-first:
					if !own || !errors.Is(err, flight.ErrGoexit) {
						t.Fatalf("the first caller returned %v", err)
					}
				default:
					if own {
						t.Fatal("the first caller never returned, though the call had its own goroutine")
					}
				}
			})
		})
	}
}

func TestDoFunctionContextHidesTheFirstCallersCancellation(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var g flight.Group[string, int]
		ctx, cancel := context.WithCancelCause(context.WithValue(t.Context(), traceKey{}, "trace-2"))
		release := make(chan struct{})
		got := make(chan [3]any, 1)
		out := startCallers(ctx, &g, 1, "k", func(ctx context.Context) (int, error) {
			<-release
			_, hasDeadline := ctx.Deadline()
			got <- [3]any{context.Cause(ctx), hasDeadline, ctx.Value(traceKey{})}
			return 0, nil
		})
		synctest.Wait()
		cancel(errors.New("caller gone"))
		<-out
		close(release)
		if s := <-got; s[0] != nil || s[1] != false || s[2] != "trace-2" {
			t.Fatalf("Cause, has deadline, trace value = %v; want <nil>, false, trace-2", s)
		}
	})
}

// Callers that join a call run by its first caller, before and after it
// publishes, get its result.
func TestJoiningACallRunOnItsFirstCaller(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var g flight.Group[string, int]
		published, finish := make(chan struct{}), make(chan struct{})
		started := make(chan struct{})
		first := make(chan int, 1)
		go func() {
			v, _ := g.Do(context.Background(), "k", func(ctx context.Context) (int, error) {
				close(started)
				<-published
				flight.Publish(ctx, 7)
				<-finish
				return 0, nil
			})
			first <- v
		}()
		<-started
		w := g.Join("k")
		before := startCallers(t.Context(), &g, 1, "k", nil)
		synctest.Wait()
		close(published)
		synctest.Wait()
		after := startCallers(t.Context(), &g, 1, "k", nil)
		if v, shared, err := w.Wait(t.Context()); v != 7 || !shared || err != nil {
			t.Fatalf("Join's waiter got %d, %v, %v", v, shared, err)
		}
		for _, out := range []<-chan result{before, after} {
			if r := <-out; r.v != 7 || r.err != nil {
				t.Fatalf("a joining caller got %+v", r)
			}
		}
		close(finish)
		if v := <-first; v != 7 {
			t.Fatalf("the first caller got %d", v)
		}
	})
}

// DoWith passes the key and the argument, tells the caller that started
// the call from those that joined it, and costs the one allocation of Do
// with a function made once and a pointer-shaped argument.
func TestDoWith(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var g flight.Group[string, int]
		release := make(chan struct{})
		fn := func(_ context.Context, key string, arg any) (int, error) {
			<-release
			return len(key) + *arg.(*int), nil
		}
		ten := 10
		type res struct {
			v               int
			shared, started bool
			err             error
		}
		results := make(chan res, 5)
		ctx, cancel := context.WithCancel(context.Background()) // can end: the call runs on its own goroutine
		defer cancel()
		for range 5 {
			go func() {
				v, shared, started, err := g.DoWith(ctx, "key", &ten, fn)
				results <- res{v, shared, started, err}
			}()
		}
		synctest.Wait()
		close(release)
		starters := 0
		for range 5 {
			r := <-results
			if r.v != 13 || r.err != nil || !r.shared {
				t.Fatalf("DoWith = %+v, want 13, shared", r)
			}
			if r.started {
				starters++
			}
		}
		if starters != 1 {
			t.Fatalf("%d callers started the call, want 1", starters)
		}
	})
	var g flight.Group[string, int]
	ctx := context.Background()
	one := 1
	fn := func(_ context.Context, _ string, arg any) (int, error) { return *arg.(*int), nil }
	if n := testing.AllocsPerRun(100, func() {
		if v, _, started, err := g.DoWith(ctx, "k", &one, fn); v != 1 || !started || err != nil {
			t.Fatalf("DoWith = %d, %v, %v", v, started, err)
		}
	}); n > 1 {
		t.Fatalf("%v allocations per uncontended DoWith, want at most 1", n)
	}
}
