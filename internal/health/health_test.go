package health_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"syscall"
	"testing"
	"testing/synctest"
	"time"

	"github.com/herdcache/herd/internal/health"
	"github.com/herdcache/herd/store"
)

var errDown = fmt.Errorf("backend: %w", store.ErrUnavailable)

func TestNilStateIsAlwaysUp(t *testing.T) {
	var s *health.State
	if p := s.Enter(); p != health.Call {
		t.Fatalf("Enter = %v", p)
	}
	if ch := s.Exit(context.Background(), health.Call, errDown); ch != health.Same || s.Down() {
		t.Fatalf("Exit = %v, down %v", ch, s.Down())
	}
}

// Down: calls are skipped, but for one probe per window; the window doubles
// with each failed probe up to the maximum; a call that succeeds brings the
// store back.
func TestProbesDoubleToTheMaximum(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ctx := context.Background()
		s := health.New(100*time.Millisecond, 350*time.Millisecond)
		if ch := s.Exit(ctx, s.Enter(), errDown); ch != health.WentDown {
			t.Fatalf("first failure: %v, want WentDown", ch)
		}
		if p := s.Enter(); p != health.Skip {
			t.Fatalf("right after: %v, want Skip", p)
		}
		var waits []time.Duration
		last := time.Now()
		for len(waits) < 4 {
			p := s.Enter()
			if p == health.Skip {
				time.Sleep(10 * time.Millisecond)
				continue
			}
			if p != health.Probe {
				t.Fatalf("Enter = %v while down", p)
			}
			if again := s.Enter(); again != health.Skip {
				t.Fatalf("a second call during the probe: %v, want Skip", again)
			}
			waits = append(waits, time.Since(last).Round(10*time.Millisecond))
			last = time.Now()
			if ch := s.Exit(ctx, p, errDown); ch != health.Same {
				t.Fatalf("a failed probe: %v, want Same", ch)
			}
		}
		want := []time.Duration{100 * time.Millisecond, 200 * time.Millisecond, 350 * time.Millisecond, 350 * time.Millisecond}
		for i := range want {
			if waits[i] != want[i] {
				t.Fatalf("waits between probes %v, want %v", waits, want)
			}
		}
		time.Sleep(time.Second)
		p := s.Enter()
		if ch := s.Exit(ctx, p, nil); p != health.Probe || ch != health.CameBack || s.Down() {
			t.Fatalf("a probe that succeeds: %v, %v, down %v", p, ch, s.Down())
		}
		if p := s.Enter(); p != health.Call {
			t.Fatalf("after: %v, want Call", p)
		}
	})
}

// An answer that is not about the connection (a conflict, a lock held
// elsewhere) counts as the store being up.
func TestAnAnswerIsUp(t *testing.T) {
	ctx := context.Background()
	s := health.New(time.Second, time.Second)
	s.Exit(ctx, s.Enter(), errDown)
	// A call that was under way when the store went down answers.
	if ch := s.Exit(ctx, health.Call, store.ErrConflict); ch != health.CameBack {
		t.Fatalf("Exit with a conflict = %v, want CameBack", ch)
	}
}

func TestUnavailable(t *testing.T) {
	live := context.Background()
	ended, cancel := context.WithCancel(live)
	cancel()
	for _, tc := range []struct {
		ctx  context.Context
		err  error
		want bool
	}{
		{live, nil, false},
		{live, errDown, true},
		{ended, errDown, true},
		{live, context.DeadlineExceeded, true},
		{ended, context.DeadlineExceeded, false}, // the caller left: nothing is known of the store
		{live, &net.OpError{Op: "dial", Err: syscall.ECONNREFUSED}, true},
		{live, fmt.Errorf("read: %w", syscall.ECONNRESET), true},
		{live, io.EOF, true},
		{live, net.ErrClosed, true},
		{live, store.ErrConflict, false},
		{live, store.ErrLocked, false},
		{live, errors.New("corrupt bytes"), false},
	} {
		if got := health.Unavailable(tc.ctx, tc.err); got != tc.want {
			t.Errorf("Unavailable(ctx ended %v, %v) = %v, want %v", tc.ctx.Err() != nil, tc.err, got, tc.want)
		}
	}
}

// EnterQuiet never makes a call the probe: while the store is down it is
// skipped even when a probe is due, and the probe stays due for Enter.
func TestEnterQuietNeverProbes(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ctx := context.Background()
		s := health.New(100*time.Millisecond, time.Second)
		if p := s.EnterQuiet(); p != health.Call {
			t.Fatalf("EnterQuiet while up = %v, want Call", p)
		}
		s.Exit(ctx, s.Enter(), errDown)
		time.Sleep(time.Second) // a probe is due
		if p := s.EnterQuiet(); p != health.Skip {
			t.Fatalf("EnterQuiet with a probe due = %v, want Skip", p)
		}
		if p := s.Enter(); p != health.Probe {
			t.Fatalf("Enter after a quiet skip = %v, want the probe", p)
		}
	})
}

// A call that runs out of its caller's deadline says nothing of the store,
// neither up nor down; three in a row without an answer between them mark
// it down, as a store that answers none of its callers in time. An answer
// starts the count again.
func TestCallersDeadlinesInARow(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := health.New(time.Second, time.Second)
		expired := func() context.Context {
			ctx, cancel := context.WithTimeout(context.Background(), time.Millisecond)
			t.Cleanup(cancel)
			time.Sleep(2 * time.Millisecond)
			return ctx
		}
		for i := range 2 {
			if ch := s.Exit(expired(), s.Enter(), context.DeadlineExceeded); ch != health.Same || s.Down() {
				t.Fatalf("call %d out of its caller's deadline: %v, down %v; want no verdict", i, ch, s.Down())
			}
		}
		s.Exit(context.Background(), s.Enter(), nil) // an answer
		for i := range 2 {
			s.Exit(expired(), s.Enter(), context.DeadlineExceeded)
			if s.Down() {
				t.Fatalf("down after %d calls out of deadline since an answer", i+1)
			}
		}
		if ch := s.Exit(expired(), s.Enter(), context.DeadlineExceeded); ch != health.WentDown {
			t.Fatalf("third call in a row out of its caller's deadline: %v, want WentDown", ch)
		}
		canceled, cancel := context.WithCancel(context.Background())
		cancel()
		time.Sleep(2 * time.Second)
		p := s.Enter()
		if ch := s.Exit(canceled, p, context.Canceled); ch != health.Same || !s.Down() {
			t.Fatalf("a probe whose caller left: %v, down %v; want no verdict", ch, s.Down())
		}
	})
}
