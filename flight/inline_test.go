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

// A Goexit in a call run on its first caller's goroutine ends that
// goroutine, as it would without a Group; the other waiters get ErrGoexit.
func TestDoGoexitOnACallerThatCannotLeave(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var g flight.Group[string, int]
		release := make(chan struct{})
		fn := func(context.Context) (int, error) {
			<-release
			runtime.Goexit()
			return 0, nil
		}
		returned := make(chan struct{})
		exited := make(chan struct{})
		go func() {
			defer close(exited)
			_, _ = g.Do(context.Background(), "k", fn)
			close(returned)
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
		case <-returned:
			t.Fatal("Do returned on the goroutine that ran a Goexit")
		default:
		}
	})
}
