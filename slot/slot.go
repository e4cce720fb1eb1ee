// Package slot holds one lazily fetched value that expires and is refreshed
// by one caller while everyone else keeps reading the old one: a config
// snapshot, an access token, a routing table.
//
// A [Slot] is fetched on the first [Slot.Get] and again whenever the duration
// the fetch function returned has passed. The contract, for every Get:
//
//   - No value yet (the first Get, or every fetch so far failed): the caller
//     waits for one fetch, shared by every caller that arrives meanwhile. Each
//     caller waits on its own context, never on a lock held across the fetch,
//     and returns ctx.Err() when it ends. A failed first fetch is returned to
//     every caller waiting on it, wrapped, and nothing is kept: the next Get
//     fetches again at once.
//   - Fresh value: returned, no fetch.
//   - Expired value: one fetch runs at a time. By default the caller that finds
//     the value expired starts the refresh and waits for it, and every other
//     caller gets the old value at once. With [Slot.Background] set, no caller
//     waits: the refresh runs on its own goroutine and the caller that
//     started it gets the old value at once too.
//   - A failed refresh keeps the old value: the caller that waited for it gets
//     the old value and no error. No fetch is tried again before
//     [Slot.RetryDelay] has passed; until then every Get gets the old value.
//     Consecutive failures are logged to [Slot.Logger]: at warn level for the
//     first two, at error level from the third on. A success resets the count.
//   - With [Slot.MaxStale] set, a value that expired longer ago than MaxStale
//     is not served: the caller waits for the refresh (starting one if none
//     runs and none is backed off), and gets an error if it fails.
//   - A fetch that panics or calls [runtime.Goexit] never crashes the process:
//     the callers waiting on it get a [*flight.PanicError] or
//     [flight.ErrGoexit] (wrapped), the panic counts as a failed fetch, and the
//     slot stays usable (see [Slot.Get] for who gets what).
//
// Fetches run on their own goroutine, on a context that keeps the values of
// the context of the caller that started them but not its cancellation, so
// that a caller leaving does not fail the fetch for the others. At most one
// fetch runs per slot at any time. [Slot.Close] waits for it, or cancels it
// when its own context ends, so that nothing is left running at shutdown.
package slot

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"runtime/debug"
	"sync"
	"time"

	"github.com/herdcache/herd/flight"
)

// ExpiresImmediately is the lifetime a fetch function returns for a value
// that the next [Slot.Get] must refresh. Any negative duration does the same.
const ExpiresImmediately time.Duration = -1

// DefaultRetryDelay is the time a [Slot] waits after a failed refresh before
// it tries again, when [Slot.RetryDelay] is zero.
const DefaultRetryDelay = 5 * time.Second

// ErrClosed is returned by [Slot.Get] after [Slot.Close].
var ErrClosed = errors.New("slot: closed")

// FetchFunc fetches a new value. prev is the value the slot holds, or the zero
// value of T when it holds none. The duration is how long the new value stays
// fresh: 0 means it never expires, [ExpiresImmediately] (or any negative
// duration) means the next Get refreshes it.
//
// ctx carries the values of the context of the caller that started the fetch
// but not its cancellation; it ends when [Slot.FetchTimeout] passes or when
// [Slot.Close] gives up waiting.
type FetchFunc[T any] func(ctx context.Context, prev T) (T, time.Duration, error)

// A Slot holds one value of type T, fetched lazily and refreshed when it
// expires. See the package documentation for the contract.
//
// The zero value is ready to use. The exported fields configure the slot;
// set them before the first Get and do not change them afterwards. A Slot
// must not be copied after first use.
type Slot[T any] struct {
	// RetryDelay is how long after a failed refresh the next refresh may
	// start. Until then every Get gets the old value, and no fetch runs.
	// Zero (the default) means [DefaultRetryDelay], 5 seconds.
	RetryDelay time.Duration

	// MaxStale is how long after it expired a value may still be served while
	// a refresh runs or is backed off after a failure. A caller that finds the
	// value older than that waits for a refresh instead, and gets an error if
	// the refresh fails or is backed off. Zero (the default) means no limit:
	// an expired value is served for as long as refreshes fail.
	MaxStale time.Duration

	// Background makes a refresh run without any caller waiting for it: the
	// caller that finds the value expired starts the refresh on its own
	// goroutine and gets the old value at once, like everyone else. A refresh
	// failure then reaches no caller; it is only logged. The default (false)
	// makes that caller wait for the refresh it started, so that it gets the
	// new value, or the error of a panicking fetch. The first fetch,
	// and a refresh of a value older than MaxStale, are waited for in both
	// modes.
	Background bool

	// FetchTimeout bounds each fetch: its context ends after that long.
	// Zero (the default) means no bound: a fetch that never returns holds
	// the slot's one fetch until it does, and only Close can cancel it.
	FetchTimeout time.Duration

	// Logger receives the failed refreshes. Nil (the default) means
	// [slog.Default].
	Logger *slog.Logger

	mu       sync.Mutex
	has      bool      // val holds a fetched value
	val      T         // the value served
	expires  time.Time // when val expires; zero: never
	retryAt  time.Time // no refresh starts before this, after a failure
	failures int       // consecutive failed refreshes
	lastErr  error     // the error of the last failed refresh, while failures > 0
	call     *call[T]  // the fetch in flight, or nil
	closed   bool
}

// call is one fetch in flight. Its result fields are written before done is
// closed and read only after.
type call[T any] struct {
	done   chan struct{}
	cancel context.CancelFunc
	prev   T    // the value passed to the fetch function
	first  bool // the slot held no value when the fetch started

	val      T
	err      error // as the fetch returned it, or a *flight.PanicError or flight.ErrGoexit
	panicked bool  // err is a *flight.PanicError or flight.ErrGoexit
}

// waitKind says what a caller waiting on a call gets when the call fails.
type waitKind int

const (
	waitFirst    waitKind = iota // no value to fall back on: the error
	waitRefresh                  // the old value, except after a panic
	waitTooStale                 // the value is older than MaxStale: the error
)

const errTooStaleFmt = "slot: value is older than MaxStale and the refresh failed: %w"

// Get returns the slot's value, fetching it with fetch when the slot holds
// none or the value has expired. Which caller's fetch function runs is not
// specified: pass the same one on every call.
//
// Get returns a non-nil error only when it has no value it may serve:
//
//   - ctx.Err(), when ctx ends while the caller waits. If ctx has already
//     ended, Get starts no fetch: it returns a value it may serve without
//     waiting, or ctx.Err().
//   - The error of the first fetch, wrapped ("slot: fetch: ..."), to every
//     caller waiting on it, and likewise of every fetch until one succeeds.
//   - A [*flight.PanicError] or [flight.ErrGoexit], wrapped, to the callers
//     waiting on a fetch that panicked: the caller that ran a refresh in the
//     default mode gets it rather than the old value, so that a panic is
//     never silent. Callers that did not wait get the old value.
//   - An error wrapping the refresh's error, when the value is older than
//     [Slot.MaxStale] and the refresh failed or is backed off.
//   - [ErrClosed] after [Slot.Close].
func (s *Slot[T]) Get(ctx context.Context, fetch FetchFunc[T]) (T, error) {
	var zero T
	now := time.Now()
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return zero, ErrClosed
	}

	if !s.has {
		c := s.call
		if c == nil {
			if err := ctx.Err(); err != nil {
				s.mu.Unlock()
				return zero, err
			}
			c = s.startLocked(ctx, fetch)
		}
		s.mu.Unlock()
		return wait(ctx, c, waitFirst)
	}

	if s.expires.IsZero() || now.Before(s.expires) {
		v := s.val
		s.mu.Unlock()
		return v, nil
	}

	// Expired.
	tooStale := s.MaxStale > 0 && now.Sub(s.expires) > s.MaxStale
	switch {
	case s.call != nil:
		if !tooStale {
			v := s.val
			s.mu.Unlock()
			return v, nil
		}
		c := s.call
		s.mu.Unlock()
		return wait(ctx, c, waitTooStale)
	case now.Before(s.retryAt):
		v, err := s.val, s.lastErr
		s.mu.Unlock()
		if tooStale {
			return zero, fmt.Errorf(errTooStaleFmt, err)
		}
		return v, nil
	case ctx.Err() != nil:
		v, err := s.val, ctx.Err()
		s.mu.Unlock()
		if tooStale {
			return zero, err
		}
		return v, nil
	}

	// This caller refreshes.
	c := s.startLocked(ctx, fetch)
	if s.Background && !tooStale {
		v := s.val
		s.mu.Unlock()
		return v, nil
	}
	s.mu.Unlock()
	if tooStale {
		return wait(ctx, c, waitTooStale)
	}
	return wait(ctx, c, waitRefresh)
}

// Close stops the slot. Every later [Slot.Get] returns [ErrClosed]; callers
// already waiting on a fetch get its result. Close waits for the fetch in
// flight, if any, to return. If ctx ends first, Close cancels the fetch's
// context and returns ctx.Err() without waiting further; a fetch function that
// honours its context then returns soon after.
//
// Close is needed only to leave no goroutine behind, at shutdown or at the end
// of a test, when a refresh may run in the background. Calling it more than
// once is fine.
func (s *Slot[T]) Close(ctx context.Context) error {
	s.mu.Lock()
	s.closed = true
	c := s.call
	s.mu.Unlock()
	if c == nil {
		return nil
	}
	select {
	case <-c.done:
		return nil
	case <-ctx.Done():
		c.cancel()
		return ctx.Err()
	}
}

// startLocked starts a fetch on its own goroutine and records it as the one in
// flight. s.mu must be held.
func (s *Slot[T]) startLocked(ctx context.Context, fetch FetchFunc[T]) *call[T] {
	fctx := context.WithoutCancel(ctx)
	var cancel context.CancelFunc
	if s.FetchTimeout > 0 {
		fctx, cancel = context.WithTimeout(fctx, s.FetchTimeout)
	} else {
		fctx, cancel = context.WithCancel(fctx)
	}
	c := &call[T]{done: make(chan struct{}), cancel: cancel, prev: s.val, first: !s.has}
	s.call = c
	go s.run(fctx, c, fetch)
	return c
}

// run calls fetch on the call's own goroutine. Because nothing needs to
// propagate to a caller's goroutine, one deferred function tells a panic
// (recover returns its value) from a runtime.Goexit (recover returns nil) and
// turns both into an error.
func (s *Slot[T]) run(ctx context.Context, c *call[T], fetch FetchFunc[T]) {
	var (
		v        T
		ttl      time.Duration
		err      error
		returned bool
	)
	defer func() {
		if !returned {
			if r := recover(); r != nil {
				err = &flight.PanicError{Value: r, Stack: debug.Stack()}
			} else {
				err = flight.ErrGoexit
			}
			c.panicked = true
		}
		c.cancel()
		s.finish(ctx, c, v, ttl, err)
	}()
	v, ttl, err = fetch(ctx, c.prev)
	returned = true
}

// finish records the result of c in the slot and releases its waiters.
func (s *Slot[T]) finish(ctx context.Context, c *call[T], v T, ttl time.Duration, err error) {
	now := time.Now()
	var failures int
	var delay time.Duration

	s.mu.Lock()
	if s.call == c {
		s.call = nil
	}
	switch {
	case err == nil:
		s.has, s.val, s.expires = true, v, expiry(now, ttl)
		s.failures, s.retryAt, s.lastErr = 0, time.Time{}, nil
		c.val = v
	case c.first:
		// Nothing to keep and nothing to back off from: the error goes to
		// the callers waiting on the first fetch, and the next Get fetches.
	default:
		s.failures++
		failures = s.failures
		delay = s.RetryDelay
		if delay <= 0 {
			delay = DefaultRetryDelay
		}
		s.retryAt = now.Add(delay)
		s.lastErr = err
	}
	c.err = err
	s.mu.Unlock()

	// Logged before the waiters are released, so that a caller that got the
	// old value back after a failure finds the failure in the log.
	if failures > 0 {
		s.logFailure(ctx, failures, delay, err)
	}
	close(c.done)
}

func (s *Slot[T]) logFailure(ctx context.Context, failures int, delay time.Duration, err error) {
	logger := s.Logger
	if logger == nil {
		logger = slog.Default()
	}
	level := slog.LevelWarn
	if failures >= 3 {
		level = slog.LevelError
	}
	attrs := []any{slog.Int("failures", failures), slog.Duration("retry_in", delay), slog.Any("err", err)}
	if pe := (*flight.PanicError)(nil); errors.As(err, &pe) {
		attrs = append(attrs, slog.String("stack", string(pe.Stack)))
	}
	logger.Log(ctx, level, "slot: refresh failed, serving the old value", attrs...)
}

// wait waits for c on the caller's own context and returns what a caller of
// the given kind gets.
func wait[T any](ctx context.Context, c *call[T], kind waitKind) (T, error) {
	var zero T
	select {
	case <-c.done:
	case <-ctx.Done():
		// The result may have arrived at the same moment; prefer it.
		select {
		case <-c.done:
		default:
			return zero, ctx.Err()
		}
	}
	switch {
	case c.err == nil:
		return c.val, nil
	case kind == waitRefresh && !c.panicked:
		return c.prev, nil
	case kind == waitTooStale:
		return zero, fmt.Errorf(errTooStaleFmt, c.err)
	default:
		return zero, fmt.Errorf("slot: fetch: %w", c.err)
	}
}

// expiry returns when a value fetched at now with lifetime ttl expires.
func expiry(now time.Time, ttl time.Duration) time.Time {
	switch {
	case ttl == 0:
		return time.Time{}
	case ttl < 0:
		return now
	default:
		return now.Add(ttl)
	}
}
