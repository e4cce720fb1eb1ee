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
