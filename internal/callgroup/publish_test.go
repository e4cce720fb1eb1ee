package callgroup_test

import (
	"context"
	"errors"
	"runtime"
	"sync/atomic"
	"testing"
	"testing/synctest"

	"github.com/herdcache/herd/internal/callgroup"
)

func TestPublishGivesTheResultEarly(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var g group
		var calls atomic.Int32
		finish := make(chan struct{})
		fn := func(ctx context.Context) (int, error) {
			calls.Add(1)
			if p := callgroup.Publish(ctx, 42, nil); p == nil || *p != 42 {
				t.Error("Publish did not find the call")
			}
			if callgroup.Publish(ctx, 43, nil) != nil {
				t.Error("a second Publish succeeded")
			}
			<-finish // slow work after the result, e.g. a store write
			return 0, errors.New("ignored after Publish")
		}
		out := startCallers(t.Context(), &g, 3, "k", fn)
		for range 3 {
			if r := <-out; r.v != 42 || r.err != nil {
				t.Fatalf("caller got %+v before fn returned, want the published 42", r)
			}
		}
		// fn is still running: a new caller gets the published result at
		// once, without a new call.
		if v, err := do(t.Context(), &g, "k", fn); v != 42 || err != nil {
			t.Fatalf("caller arriving after Publish got %d, %v", v, err)
		}
		if n := calls.Load(); n != 1 {
			t.Fatalf("%d calls, want 1", n)
		}
		close(finish)
		synctest.Wait()
		// fn returned: the key is free again.
		v, err := do(t.Context(), &g, "k", func(context.Context) (int, error) { return 7, nil })
		if v != 7 || err != nil {
			t.Fatalf("Do after the published call ended = %d, %v", v, err)
		}
		if callgroup.Publish(t.Context(), 1, nil) != nil {
			t.Fatal("Publish outside a call succeeded")
		}
	})
}

func TestPanicAfterPublishKeepsTheResult(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var g group
		v, err := do(t.Context(), &g, "k", func(ctx context.Context) (int, error) {
			callgroup.Publish(ctx, 5, nil)
			panic("after publish")
		})
		if v != 5 || err != nil {
			t.Fatalf("got %d, %v; want the published 5", v, err)
		}
		synctest.Wait()
		v, err = do(t.Context(), &g, "k", func(context.Context) (int, error) { return 6, nil })
		if v != 6 || err != nil {
			t.Fatalf("the key was not freed after a panic following Publish: %d, %v", v, err)
		}
	})
}

func TestDoGoexitOnACallerThatCannotLeave(t *testing.T) {
	for _, own := range []bool{false, true} {
		t.Run(map[bool]string{false: "caller's goroutine", true: "OwnGoroutine"}[own], func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				g := group{OwnGoroutine: own}
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
					_, err := do(context.Background(), &g, "k", fn)
					first <- err
				}()
				synctest.Wait()
				other := startCallers(t.Context(), &g, 1, "k", fn)
				synctest.Wait()
				close(release)
				if r := <-other; !errors.Is(r.err, errGoexit) {
					t.Fatalf("the other waiter got %v, want ErrGoexit", r.err)
				}
				<-exited
				select {
				case err := <-first:
					if !own || !errors.Is(err, errGoexit) {
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

// Callers that join a call run by its first caller, before and after it
// publishes, get its result.
func TestJoiningACallRunOnItsFirstCaller(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var g group
		published, finish := make(chan struct{}), make(chan struct{})
		started := make(chan struct{})
		first := make(chan int, 1)
		go func() {
			v, _ := do(context.Background(), &g, "k", func(ctx context.Context) (int, error) {
				close(started)
				<-published
				callgroup.Publish(ctx, 7, nil)
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
		var g group
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
	var g group
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

// Release gives a failure to the callers waiting and frees the key at once:
// a caller arriving afterwards starts a new call rather than share it.
func TestReleaseFreesTheKey(t *testing.T) {
	for _, own := range []bool{false, true} {
		synctest.Test(t, func(t *testing.T) {
			g := group{OwnGoroutine: own}
			errDown := errors.New("down")
			finish := make(chan struct{})
			fn := func(ctx context.Context) (int, error) {
				if !callgroup.Release(ctx, 0, errDown) {
					t.Error("Release did not find the call")
				}
				<-finish // what follows the failure
				return 0, nil
			}
			waiter := startCallers(t.Context(), &g, 1, "k", fn)
			if r := <-waiter; !errors.Is(r.err, errDown) {
				t.Fatalf("the waiter got %v, want the released failure", r.err)
			}
			if v, err := do(t.Context(), &g, "k", func(context.Context) (int, error) { return 7, nil }); v != 7 || err != nil {
				t.Fatalf("Do after Release = %d, %v; want a new call's 7", v, err)
			}
			close(finish)
			synctest.Wait()
			if v, err := do(t.Context(), &g, "k", func(context.Context) (int, error) { return 8, nil }); v != 8 || err != nil {
				t.Fatalf("Do after the released call ended = %d, %v", v, err)
			}
		})
	}
}

func TestClaimReleaseFreesTheKey(t *testing.T) {
	var g group
	cl := g.Claim("k")
	w := g.Join("k")
	cl.Release(0, errors.New("down"))
	if _, _, err := w.Wait(context.Background()); err == nil {
		t.Fatal("the joined waiter got no error")
	}
	next := g.Claim("k")
	if next == nil {
		t.Fatal("Claim after Release found the key still in flight")
	}
	cl.Finish(0, nil) // frees nothing: the key is next's
	if g.Join("k") == nil {
		t.Fatal("Finish of the released claim freed its successor's key")
	}
	next.Finish(1, nil)
}
