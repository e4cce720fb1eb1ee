package callgroup_test

import (
	"context"
	"errors"
	"testing"
	"testing/synctest"
)

// A claimed call is joined by Do and Join, and its claimant's Publish and
// Finish decide what every caller gets.
func TestClaimIsJoinedByDo(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var g group
		cl := g.Claim("k")
		if cl == nil {
			t.Fatal("Claim of a free key = nil")
		}
		if g.Claim("k") != nil {
			t.Fatal("second Claim of a key in flight succeeded")
		}
		ctx := context.Background()
		called := false
		got := make(chan result, 2)
		go func() {
			v, shared, err := doShared(ctx, &g, "k", func(context.Context) (int, error) { called = true; return 0, nil })
			got <- result{v, shared, err}
		}()
		w := g.Join("k")
		if w == nil {
			t.Fatal("Join of a claimed key = nil")
		}
		go func() {
			v, shared, err := w.Wait(ctx)
			got <- result{v, shared, err}
		}()
		synctest.Wait()
		cl.Publish(7, nil)
		for range 2 {
			if r := <-got; r.v != 7 || r.err != nil || !r.shared {
				t.Fatalf("joined caller got %+v, want 7, shared", r)
			}
		}
		// Published but not finished: a new caller gets the value, no call.
		if v, err := do(ctx, &g, "k", func(context.Context) (int, error) { called = true; return 0, nil }); v != 7 || err != nil {
			t.Fatalf("Do after Publish = %d, %v", v, err)
		}
		cl.Finish(0, errors.New("ignored after Publish"))
		cl.Finish(0, nil) // a second Finish does nothing
		if v, shared, err := cl.Wait(ctx); v != 7 || err != nil || !shared {
			t.Fatalf("claimant's Wait = %d, %v, %v", v, shared, err)
		}
		if called {
			t.Fatal("the function of a caller that joined a claimed call ran")
		}
		if v, err := do(ctx, &g, "k", func(context.Context) (int, error) { return 8, nil }); v != 8 || err != nil {
			t.Fatalf("Do after Finish = %d, %v; want a new call", v, err)
		}
	})
}

// Finish without Publish gives every waiter its error, and frees the key.
func TestClaimFinishWithError(t *testing.T) {
	var g group
	cl := g.Claim("k")
	w := g.Join("k")
	boom := errors.New("boom")
	cl.Finish(0, boom)
	if _, shared, err := w.Wait(context.Background()); !errors.Is(err, boom) || !shared {
		t.Fatalf("waiter got %v, %v; want boom, shared", shared, err)
	}
	if _, shared, err := cl.Wait(context.Background()); !errors.Is(err, boom) || !shared {
		t.Fatalf("claimant got %v, %v; want boom", shared, err)
	}
	if g.Join("k") != nil {
		t.Fatal("Join after Finish joined a finished call")
	}
	if g.Claim("k") == nil {
		t.Fatal("Claim after Finish = nil")
	}
}

// A waiter of a claimed call leaves on its own context; the call goes on,
// also under CancelWhenAbandoned: its claimant runs it to the end.
func TestClaimWaiterLeaves(t *testing.T) {
	for _, cancelWhenAbandoned := range []bool{false, true} {
		g := group{CancelWhenAbandoned: cancelWhenAbandoned}
		cl := g.Claim("k")
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		if _, _, err := cl.Wait(ctx); !errors.Is(err, context.Canceled) {
			t.Fatalf("Wait on a cancelled context = %v", err)
		}
		w := g.Join("k")
		if w == nil {
			t.Fatalf("CancelWhenAbandoned=%v: Join after every waiter left found no call", cancelWhenAbandoned)
		}
		cl.Publish(1, nil)
		if v, _, err := w.Wait(context.Background()); v != 1 || err != nil {
			t.Fatalf("Wait = %d, %v", v, err)
		}
		cl.Finish(0, nil)
	}
}

// Join never starts a call.
func TestJoinWithoutCall(t *testing.T) {
	var g group
	if w := g.Join("k"); w != nil {
		t.Fatal("Join of a key not in flight joined something")
	}
	if g.Claim("k") == nil {
		t.Fatal("Join recorded a call")
	}
}
