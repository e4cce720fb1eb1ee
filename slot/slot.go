// Package slot holds one lazily fetched value that expires and is refreshed
// by one caller while everyone else keeps reading the old one: a config
// snapshot, an access token, a routing table. A [Slot] is fetched on the
// first [Slot.Get] and again whenever the duration the fetch function
// returned has passed.
//
//	var cfg slot.Slot[Config] // the zero value is ready
//	c, err := cfg.Get(ctx, func(ctx context.Context, prev Config) (Config, time.Duration, error) {
//		next, err := configService.Load(ctx)
//		return next, time.Minute, err // fresh for a minute
//	})
//
// # Guarantees
//
// For every Get:
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
//     caller gets the old value at once. With the [Background] option, no caller
//     waits: the refresh runs on its own goroutine and the caller that
//     started it gets the old value at once too.
//   - A failed refresh keeps the old value: the caller that waited for it gets
//     the old value and no error. No fetch is tried again before
//     [RetryDelay] has passed; until then every Get gets the old value.
//     Consecutive failures are logged ([WithLogger]): at warn level for the
//     first two, at error level from the third on. A success resets the count.
//   - With [MaxStale] set, a value that expired longer ago than MaxStale
//     is not served: the caller waits for the refresh (starting one if none
//     runs and none is backed off), and gets an error if it fails or is
//     backed off.
//   - A fetch that panics or calls [runtime.Goexit] never crashes the process:
//     the callers waiting on it get a [*flight.PanicError] or
//     [flight.ErrGoexit] (wrapped), the panic counts as a failed fetch, and the
//     slot stays usable (see [Slot.Get] for who gets what).
//
// Fetches run on their own goroutine, on a context that keeps the values of
// the context of the caller that started them but not its cancellation, so
// that a caller leaving does not fail the fetch for the others. At most one
// fetch runs per slot at any time.
//
// # Costs
//
// A Get of a fresh value takes the slot's mutex for a clock read and a
// comparison, and allocates nothing. A fetch costs a goroutine and a
// context of its own.
//
// # Errors
//
// Get returns an error only when it has no value it may serve: ctx.Err();
// the error of a fetch while the slot holds no value ("slot: fetch: ...");
// a wrapped [*flight.PanicError] or [flight.ErrGoexit] to the callers
// waiting on a fetch that panicked; an error wrapping the refresh's error
// past [MaxStale]; [ErrClosed] after [Slot.Close]. A failed refresh of a
// value it may still serve is no error: it is logged. A nil context panics
// in Get and Close ("slot: nil Context"), and so does a nil fetch function
// in Get, before any lock is taken; [New] panics on an option out of range,
// with a message naming it.
//
// # Lifecycle
//
// The zero Slot is ready to use with every default; [New] makes one with
// options. A slot starts a goroutine only for a fetch, which returns when
// the fetch does. [Slot.Close] is needed only to leave no goroutine behind,
// at shutdown or at the end of a test, when a refresh may run in the
// background: it may be called any number of times; every call waits,
// within its own context, for the same fetch in flight, and returns an
// error wrapping ctx.Err() ("slot: close: ...") when its context ends
// first, after cancelling that fetch's context. Get after Close returns
// [ErrClosed]. Nothing the slot started runs once Close has returned nil.
//
// # Conventions
//
// A Slot follows the conventions of every herd package (see package
// [github.com/herdcache/herd]). In particular, the fetch function and the
// logger are never called with the slot's lock held, so they may call the
// slot. On the slot's own fetch goroutine, a panic in the fetch function
// reaches the callers waiting on it as a [*flight.PanicError], and a panic
// in the logger's handler is recovered and reported to [slog.Default]; in
// both cases the callers waiting are released and the slot stays usable.
// Failed refreshes are logged with the key "err", on the fetch's context,
// which carries the values of the context of the caller that started it.
package slot

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/herdcache/herd/flight"
	"github.com/herdcache/herd/internal/catch"
	"github.com/herdcache/herd/internal/check"
	"github.com/herdcache/herd/internal/wait"
)

// ExpiresImmediately is the lifetime a fetch function returns for a value
// that the next [Slot.Get] must refresh. Any negative duration does the same.
const ExpiresImmediately time.Duration = -1

// DefaultRetryDelay is the time a [Slot] waits after a failed refresh before
// it tries again, unless [RetryDelay] says otherwise.
const DefaultRetryDelay = 5 * time.Second

// ErrClosed is returned by [Slot.Get] after [Slot.Close].
var ErrClosed = errors.New("slot: closed")

// An Option configures a [Slot] made by [New]. [New] panics with a message
// naming the option when its value is out of range.
type Option func(*config)

// config is a Slot's configuration. Its zero value is the defaults.
type config struct {
	retryDelay   time.Duration // 0: DefaultRetryDelay
	maxStale     time.Duration // 0: no limit
	background   bool
	fetchTimeout time.Duration // 0: no bound
	logger       *slog.Logger  // nil: slog.Default()
}

// RetryDelay sets how long after a failed refresh the next refresh may
// start. Until then every Get gets the old value, and no fetch runs. d must
// be positive. Default: [DefaultRetryDelay], 5 seconds.
func RetryDelay(d time.Duration) Option {
	return func(c *config) { c.retryDelay = check.Positive("slot", "RetryDelay", d) }
}

// MaxStale sets how long after it expired a value may still be served while
// a refresh runs or is backed off after a failure. A caller that finds the
// value older than that waits for a refresh instead, and gets an error if
// the refresh fails or is backed off. d must be positive. Default: no limit,
// an expired value is served for as long as refreshes fail.
func MaxStale(d time.Duration) Option {
	return func(c *config) { c.maxStale = check.Positive("slot", "MaxStale", d) }
}

// Background makes a refresh run without any caller waiting for it: the
// caller that finds the value expired starts the refresh on its own
// goroutine and gets the old value at once, like everyone else. A refresh
// failure then reaches no caller; it is only logged. The default makes that
// caller wait for the refresh it started, so that it gets the new value, or
// the error of a panicking fetch. The first fetch, and a refresh of a value
// older than [MaxStale], are waited for in both modes.
func Background() Option {
	return func(c *config) { c.background = true }
}

// FetchTimeout bounds each fetch: its context ends d after the fetch
// started. d must be positive. Default: no bound, a fetch that never returns
// holds the slot's one fetch until it does, and only Close can cancel it.
func FetchTimeout(d time.Duration) Option {
	return func(c *config) { c.fetchTimeout = check.Positive("slot", "FetchTimeout", d) }
}

// WithLogger sets the logger of the failed refreshes. Default:
// [slog.Default] as it is when a refresh fails; a nil logger keeps the
// default.
func WithLogger(l *slog.Logger) Option {
	return func(c *config) { c.logger = l }
}

// New returns a slot configured by opts. It panics with a message naming the
// option when a value is out of range. New with no options returns a slot
// that behaves as the zero Slot.
func New[T any](opts ...Option) *Slot[T] {
	s := new(Slot[T])
	for _, opt := range opts {
		opt(&s.cfg)
	}
	return s
}

// FetchFunc fetches a new value. prev is the value the slot holds, or the zero
// value of T when it holds none. The duration is how long the new value stays
// fresh: 0 means it never expires, [ExpiresImmediately] (or any negative
// duration) means the next Get refreshes it.
//
// ctx carries the values of the context of the caller that started the fetch
// but not its cancellation; it ends when [FetchTimeout] passes or when
// [Slot.Close] gives up waiting.
type FetchFunc[T any] func(ctx context.Context, prev T) (T, time.Duration, error)

// A Slot holds one value of type T, fetched lazily and refreshed when it
// expires. See the package documentation for the contract.
//
// The zero value is ready to use, with every default; [New] makes a slot
// with options. A Slot must not be copied after first use.
type Slot[T any] struct {
	cfg config // set by New, read-only afterwards

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
//     [MaxStale] and the refresh failed or is backed off.
//   - [ErrClosed] after [Slot.Close].
//
// A nil ctx or fetch panics before any lock is taken, with a value cached
// too. A panic in fetch on the caller's
// goroutine cannot happen: fetch always runs on a goroutine of the slot.
func (s *Slot[T]) Get(ctx context.Context, fetch FetchFunc[T]) (T, error) {
	check.Context(ctx, "slot")
	check.That(fetch != nil, "slot", "Get needs a fetch function, got nil")
	// Read before the lock: nothing that may run the caller's code (a
	// context of its own making) runs under it.
	ctxErr := ctx.Err()
	v, c, kind, err := s.look(ctx, ctxErr, fetch)
	if c == nil {
		return v, err
	}
	return await(ctx, c, kind)
}

// look decides, under the lock, what Get does: return v and err at once (c
// is nil), or wait for c as a caller of the given kind. It starts the fetch
// when this caller is the one to start it.
func (s *Slot[T]) look(ctx context.Context, ctxErr error, fetch FetchFunc[T]) (v T, c *call[T], kind waitKind, err error) {
	var zero T
	now := time.Now()
	s.mu.Lock()
	defer s.mu.Unlock()
	switch {
	case s.closed:
		return zero, nil, 0, ErrClosed
	case !s.has && s.call != nil:
		return zero, s.call, waitFirst, nil
	case !s.has && ctxErr != nil:
		return zero, nil, 0, ctxErr
	case !s.has:
		return zero, s.startLocked(ctx, fetch), waitFirst, nil
	case s.expires.IsZero() || now.Before(s.expires):
		return s.val, nil, 0, nil
	}

	// Expired.
	tooStale := s.cfg.maxStale > 0 && now.Sub(s.expires) > s.cfg.maxStale
	switch {
	case s.call != nil && tooStale:
		return zero, s.call, waitTooStale, nil
	case s.call != nil:
		return s.val, nil, 0, nil
	case now.Before(s.retryAt) && tooStale:
		return zero, nil, 0, fmt.Errorf(errTooStaleFmt, s.lastErr)
	case now.Before(s.retryAt):
		return s.val, nil, 0, nil
	case ctxErr != nil && tooStale:
		return zero, nil, 0, ctxErr
	case ctxErr != nil:
		return s.val, nil, 0, nil
	}

	// This caller refreshes.
	c = s.startLocked(ctx, fetch)
	switch {
	case tooStale:
		return zero, c, waitTooStale, nil
	case s.cfg.background:
		return s.val, nil, 0, nil
	default:
		return zero, c, waitRefresh, nil
	}
}

// Close stops the slot. Every later [Slot.Get] returns [ErrClosed]; callers
// already waiting on a fetch get its result. Close waits for the fetch in
// flight, if any, to return. If ctx ends first, Close cancels the fetch's
// context and returns an error wrapping ctx.Err() ("slot: close: ...")
// without waiting further; a fetch function that honours its context then
// returns soon after.
//
// Close is needed only to leave no goroutine behind, at shutdown or at the end
// of a test, when a refresh may run in the background. Calling it more than
// once is fine: every call waits, within its own ctx, for the same fetch. A
// nil ctx panics before any lock is taken.
func (s *Slot[T]) Close(ctx context.Context) error {
	check.Context(ctx, "slot")
	s.mu.Lock()
	s.closed = true
	c := s.call
	s.mu.Unlock()
	if c == nil || wait.For(ctx, c.done) {
		return nil
	}
	c.cancel()
	return fmt.Errorf("slot: close: %w", ctx.Err())
}

// startLocked starts a fetch on its own goroutine and records it as the one in
// flight. s.mu must be held.
func (s *Slot[T]) startLocked(ctx context.Context, fetch FetchFunc[T]) *call[T] {
	fctx := context.WithoutCancel(ctx)
	var cancel context.CancelFunc
	if s.cfg.fetchTimeout > 0 {
		fctx, cancel = context.WithTimeout(fctx, s.cfg.fetchTimeout)
	} else {
		fctx, cancel = context.WithCancel(fctx)
	}
	c := &call[T]{done: make(chan struct{}), cancel: cancel, prev: s.val, first: !s.has}
	s.call = c
	go s.run(fctx, c, fetch)
	return c
}

// run calls fetch on the call's own goroutine, where nothing needs to
// propagate to a caller's: a panic and a runtime.Goexit both become the
// call's error.
func (s *Slot[T]) run(ctx context.Context, c *call[T], fetch FetchFunc[T]) {
	var (
		v   T
		ttl time.Duration
		err error
	)
	end := func() {
		c.cancel()
		s.finish(ctx, c, v, ttl, err)
	}
	p := catch.Call(func() { v, ttl, err = fetch(ctx, c.prev) }, func() {
		c.panicked = true
		err = flight.ErrGoexit
		end()
	})
	if p != nil {
		c.panicked = true
		err = &flight.PanicError{Value: p.Value, Stack: p.Stack}
	}
	end()
}

// finish records the result of c in the slot and releases its waiters.
func (s *Slot[T]) finish(ctx context.Context, c *call[T], v T, ttl time.Duration, err error) {
	failures, delay := s.record(c, v, ttl, err)
	// Logged before the waiters are released, so that a caller that got the
	// old value back after a failure finds the failure in the log.
	if failures > 0 {
		s.logFailure(ctx, failures, delay, err)
	}
	close(c.done)
}

// record stores the result of c in the slot. After a failed refresh it
// returns the number of consecutive failures and the delay before the next.
func (s *Slot[T]) record(c *call[T], v T, ttl time.Duration, err error) (failures int, delay time.Duration) {
	now := time.Now()
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.call == c {
		s.call = nil
	}
	c.err = err
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
		delay = s.cfg.retryDelay
		if delay == 0 {
			delay = DefaultRetryDelay
		}
		s.retryAt = now.Add(delay)
		s.lastErr = err
		return s.failures, delay
	}
	return 0, 0
}

// logFailure logs a failed refresh. A panic in the logger's handler is
// recovered and reported to [slog.Default]: it runs on the fetch's goroutine,
// where nothing could recover it, and the callers waiting on the fetch must
// still be released.
func (s *Slot[T]) logFailure(ctx context.Context, failures int, delay time.Duration, err error) {
	logger := s.cfg.logger
	if logger == nil {
		logger = slog.Default()
	}
	defer func() {
		if r := recover(); r != nil {
			p := catch.New(r)
			reportLoggerPanic(ctx, &flight.PanicError{Value: p.Value, Stack: p.Stack})
		}
	}()
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

// reportLoggerPanic tells [slog.Default] that a slot's logger panicked. If
// that panics too, there is nowhere left to say it, and it is dropped.
func reportLoggerPanic(ctx context.Context, pe *flight.PanicError) {
	defer func() { _ = recover() }()
	slog.ErrorContext(ctx, "slot: the logger panicked while logging a failed refresh",
		slog.Any("err", pe), slog.String("stack", string(pe.Stack)))
}

// await waits for c on the caller's own context and returns what a caller of
// the given kind gets.
func await[T any](ctx context.Context, c *call[T], kind waitKind) (T, error) {
	var zero T
	if !wait.For(ctx, c.done) {
		return zero, ctx.Err()
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
