package slot_test

import (
	"context"
	"errors"
	"log/slog"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/herdcache/herd/internal/herdtest"
	"github.com/herdcache/herd/slot"
)

// A Get with a nil context on an expired value used to read ctx.Err() with
// the slot's mutex held: the panic left it locked, and every later Get and
// Close hung. The check now comes first, with a clear message; the slot's
// locked sections unlock by defer.
func TestRegressionSlotPanicUnderMutex(t *testing.T) {
	s := slot.New[int](slot.WithLogger(quiet))
	fetch := func(context.Context, int) (int, time.Duration, error) { return 1, slot.ExpiresImmediately, nil }
	mustGet(t, s, fetch, 1)
	func() {
		defer func() {
			if r := recover(); r != "slot: nil Context" {
				t.Fatalf("Get(nil) panicked with %v, want slot: nil Context", r)
			}
		}()
		//nolint:staticcheck // SA1012: a nil context is the point of the test
		_, _ = s.Get(nil, fetch)
	}()
	herdtest.Returns(t, "Get and Close after the panic", func() error {
		if _, err := s.Get(context.Background(), fetch); err != nil {
			return err
		}
		return s.Close(context.Background())
	})
}

func TestRegressionSlotNewRejectsOptionsOutOfRange(t *testing.T) {
	for _, tc := range []struct {
		opt  func() slot.Option
		want string
	}{
		{func() slot.Option { return slot.RetryDelay(0) }, "slot: RetryDelay must be positive, got 0s"},
		{func() slot.Option { return slot.RetryDelay(-time.Second) }, "slot: RetryDelay must be positive, got -1s"},
		{func() slot.Option { return slot.MaxStale(0) }, "slot: MaxStale must be positive, got 0s"},
		{func() slot.Option { return slot.FetchTimeout(-1) }, "slot: FetchTimeout must be positive, got -1ns"},
	} {
		t.Run(tc.want, func(t *testing.T) {
			defer func() {
				if r := recover(); r != tc.want {
					t.Fatalf("New panicked with %v, want %q", r, tc.want)
				}
			}()
			slot.New[int](tc.opt())
		})
	}
}

// A failed refresh is logged on the fetch's own goroutine, where nothing
// recovered a panic of the logger's handler: it crashed the process, and the
// callers waiting on the refresh were never released.
func TestRegressionSlotLoggerPanicOnFetchGoroutine(t *testing.T) {
	rec := &recorder{}
	old := slog.Default()
	slog.SetDefault(slog.New(rec))
	t.Cleanup(func() { slog.SetDefault(old) })
	for _, background := range []bool{false, true} {
		synctest.Test(t, func(t *testing.T) {
			s := slot.New[int](withMode(background, slot.WithLogger(slog.New(herdtest.Panicking("handler down"))), slot.RetryDelay(time.Minute))...)
			f := &fetcher{t: t, steps: []step{{v: 1, ttl: slot.ExpiresImmediately}, {err: errBoom}, {v: 2}}}
			mustGet(t, s, f.fetch, 1)
			mustGet(t, s, f.fetch, 1) // the refresh fails and its log panics
			synctest.Wait()
			time.Sleep(time.Minute) // the retry delay: the slot refreshes again
			if background {
				mustGet(t, s, f.fetch, 1)
				synctest.Wait()
			}
			mustGet(t, s, f.fetch, 2)
			if err := s.Close(t.Context()); err != nil {
				t.Fatalf("Close: %v", err)
			}
		})
	}
	if got := len(rec.levels()); got != 2 {
		t.Fatalf("slog.Default got %d reports of the logger's panic, want 2", got)
	}
	if err, _ := rec.Attr(0, "err").Any().(error); err == nil || !strings.Contains(err.Error(), "handler down") {
		t.Fatalf("the report's err = %v, want the handler's panic", err)
	}
}

// Close used to return ctx.Err() bare, unlike every other package.
func TestRegressionSlotCloseContract(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := slot.New[int](slot.Background(), slot.WithLogger(quiet))
		release := make(chan struct{})
		f := &fetcher{t: t, steps: []step{{v: 1, ttl: slot.ExpiresImmediately}, {v: 2, release: release}}}
		mustGet(t, s, f.fetch, 1)
		mustGet(t, s, f.fetch, 1) // starts the background refresh

		short, cancel := context.WithTimeout(t.Context(), time.Second)
		defer cancel()
		err := s.Close(short)
		if !errors.Is(err, context.DeadlineExceeded) || !strings.HasPrefix(err.Error(), "slot: close: ") {
			t.Fatalf("Close past its context = %v, want slot: close: wrapping DeadlineExceeded", err)
		}
		// A later Close waits for the same fetch (Close cancelled its
		// context, but this fetch ignores it until released).
		closed := make(chan error, 2)
		for range 2 {
			go func() { closed <- s.Close(t.Context()) }()
		}
		synctest.Wait()
		select {
		case err := <-closed:
			t.Fatalf("a second Close returned %v while the fetch ran", err)
		default:
		}
		close(release)
		for range 2 {
			if err := <-closed; err != nil {
				t.Fatalf("Close = %v", err)
			}
		}
		if _, err := s.Get(t.Context(), f.fetch); !errors.Is(err, slot.ErrClosed) {
			t.Fatalf("Get after Close = %v, want ErrClosed", err)
		}
	})
}
