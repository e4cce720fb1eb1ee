// Package health is what a herd cache (and a two-level store) knows of a
// remote store's health, shared by every call it makes to the store, so
// that an outage costs the first caller at most one call's timeout and the
// others nothing.
//
// A call that fails for the connection (the store says it is unavailable,
// the call timed out, the connection was refused or reset) marks the store
// down. While it is down, calls skip the store at once, but for one call
// per window, the probe, which goes through: the window starts at the
// minimum and doubles with each failed probe up to the maximum. The first
// call to succeed (the probe, or a call that was under way when the store
// went down) marks it up again. Other errors (a conflict, a lock held
// elsewhere, bytes that do not decode) are answers: the store is up.
//
// A nil *State is a store that is never down: its methods cost nothing.
package health

import (
	"context"
	"errors"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/herdcache/herd/store"
)

// softCalls is how many calls in a row that ran out of their callers'
// deadlines mark the store down.
const softCalls = 3

// A Pass says what a call may do.
type Pass uint8

// The passes of Enter.
const (
	Call  Pass = iota // the store is up: call it
	Probe             // the store is down, and this call is its probe: call it
	Skip              // the store is down: do not call it
)

// A State is the health of one store. Build it with New; its methods are
// safe for concurrent use.
type State struct {
	down     atomic.Bool
	soft     atomic.Int32 // calls in a row that ran out of their caller's deadline
	min, max time.Duration

	mu      sync.Mutex
	window  time.Duration // the current wait between probes
	next    time.Time     // when the next probe may go
	probing bool          // a probe is under way
}

// New returns the state of a store that is up, with probes every min at
// first, doubling to max.
func New(minimum, maximum time.Duration) *State {
	return &State{min: minimum, max: maximum}
}

// Enter says whether a call may go to the store now. A call that goes
// (Call or Probe) must be followed by Exit with its pass.
func (s *State) Enter() Pass { return s.enter(true) }

// EnterQuiet is Enter for a call that must not be the store's probe: while
// the store is down, it is skipped. A caller that has already waited on the
// store for this request uses it, so that a request never pays for two
// calls to a store that does not answer.
func (s *State) EnterQuiet() Pass { return s.enter(false) }

func (s *State) enter(probe bool) Pass {
	if s == nil || !s.down.Load() {
		return Call
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.down.Load() {
		return Call
	}
	if !probe || s.probing || time.Now().Before(s.next) {
		return Skip
	}
	s.probing = true
	return Probe
}

// A Change is what Exit did to the state.
type Change uint8

// The changes of Exit.
const (
	Same     Change = iota // the store was up and is, or was down and is
	WentDown               // the call found the store unavailable
	CameBack               // the call found the store answering again
)

// Exit records the outcome of a call that Enter let through: err, from a
// call on ctx (a call whose own context ended says nothing of the store).
func (s *State) Exit(ctx context.Context, p Pass, err error) Change {
	if s == nil || p == Skip {
		return Same
	}
	failed := Unavailable(ctx, err)
	if !failed && err != nil && ctx != nil && ctx.Err() != nil {
		// The caller's context ended first: no answer, and no verdict,
		// unless its deadline passed on softCalls calls in a row without
		// an answer between them: a store that answers none of its callers
		// in the time they give it is as good as down.
		if !errors.Is(ctx.Err(), context.DeadlineExceeded) || s.soft.Add(1) < softCalls {
			if p == Probe {
				s.mu.Lock()
				s.probing = false
				s.mu.Unlock()
			}
			return Same
		}
		s.soft.Store(0)
		failed = true
	} else if s.soft.Load() != 0 {
		s.soft.Store(0)
	}
	if !failed && !s.down.Load() && p == Call {
		return Same // the usual case: no lock
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if p == Probe {
		s.probing = false
	}
	switch {
	case !failed && s.down.Load():
		s.down.Store(false)
		return CameBack
	case !failed:
		return Same
	case !s.down.Load():
		s.down.Store(true)
		s.window = s.min
		s.next = time.Now().Add(s.window)
		return WentDown
	case p == Probe:
		s.window = min(2*s.window, s.max)
		s.next = time.Now().Add(s.window)
	}
	return Same
}

// Down reports whether the store is marked down.
func (s *State) Down() bool { return s != nil && s.down.Load() }

// Unavailable reports whether err, from a store call on ctx, says that the
// store could not be reached: it wraps store.ErrUnavailable, or the call
// timed out although ctx had not ended, or the connection was refused,
// reset, closed or cut short. An error of a call whose ctx ended (the
// caller left) says nothing of the store.
func Unavailable(ctx context.Context, err error) bool {
	if err == nil {
		return false
	}
	if errors.Is(err, store.ErrUnavailable) {
		return true
	}
	if ctx != nil && ctx.Err() != nil {
		return false
	}
	var ne net.Error
	switch {
	case errors.Is(err, context.DeadlineExceeded), errors.As(err, &ne),
		errors.Is(err, syscall.ECONNREFUSED), errors.Is(err, syscall.ECONNRESET), errors.Is(err, syscall.EPIPE),
		errors.Is(err, net.ErrClosed), errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return true
	}
	return false
}
