package autorefresh_test

import (
	"context"
	"errors"
	"log/slog"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/herdcache/herd/autorefresh"
	"github.com/herdcache/herd/internal/herdtest"
)

// An Observer that panicked on the loop's or a worker's goroutine had
// nothing above it to recover the panic: the process died.
func TestRegressionAutorefreshObserverPanicOnOwnGoroutines(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var logs lockedBuffer
		r := newRecorder(t, updateAll("synced"))
		c := start(t, r, options{
			ResyncPeriod: period,
			Logger:       slog.New(slog.NewTextHandler(&logs, nil)),
			Observer: autorefresh.ObserverFunc(func(e autorefresh.Event) {
				panic("observer down: " + e.Kind.String())
			}),
		})
		t0 := time.Now()
		mustCreate(t, c, "a", job{})
		at(t0, period)
		at(t0, 2*period)
		if got := r.count("a"); got != 2 {
			t.Fatalf("a synced %d times in two cycles, want 2: the loop or a worker died", got)
		}
		if v := mustGet(t, c, "a"); v.State != "synced" {
			t.Fatalf("a = %+v, want the sync's result applied", v)
		}
		// Two cycle events and two sync events panicked.
		if s := c.Stats(); s.CallbackPanics != 4 || s.SyncPanics != 0 {
			t.Fatalf("Stats = %+v, want 4 callback panics and no sync panic", s)
		}
		if !strings.Contains(logs.String(), "observer down: cycle") || !strings.Contains(logs.String(), "level=ERROR") {
			t.Fatalf("the observer's panic was not logged:\n%s", logs.String())
		}
	})
}

// A failed sync is logged on the worker's goroutine: a logger whose handler
// panicked killed the process.
func TestRegressionAutorefreshLoggerPanicOnWorker(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := newRecorder(t, func(context.Context, []item) ([]result, error) {
			return nil, errors.New("source down")
		})
		var ev events
		c := start(t, r, options{ResyncPeriod: period, Logger: slog.New(herdtest.Panicking("handler down")), Observer: &ev})
		t0 := time.Now()
		mustCreate(t, c, "a", job{})
		at(t0, period)
		at(t0, 2*period)
		if got := r.count("a"); got != 2 {
			t.Fatalf("a synced %d times in two cycles, want 2: a worker died", got)
		}
		s := c.Stats()
		if s.SyncErrors != 2 || s.CallbackPanics == 0 {
			t.Fatalf("Stats = %+v, want 2 sync errors and the logger's panics counted", s)
		}
		if got := len(ev.of(autorefresh.EventSyncError)); got != 2 {
			t.Fatalf("%d EventSyncError, want 2: the observer still hears of each", got)
		}
	})
}

// GetOrCreate hashed its id with the mutex held and unlocked by hand: an id
// that cannot be a map key (an interface K holding a slice) panicked there
// and left every later call of the cache, and Close, hanging.
func TestRegressionAutorefreshPanicUnderMutex(t *testing.T) {
	c := autorefresh.New(func(context.Context, []autorefresh.Item[any, int]) ([]autorefresh.Result[any, int], error) {
		return nil, nil
	}, autorefresh.WithLogger(slog.New(slog.DiscardHandler)))
	func() {
		defer func() {
			if r := recover(); r == nil {
				t.Fatal("GetOrCreate of an unhashable id did not panic")
			}
		}()
		_, _, _ = c.GetOrCreate([]int{1}, 1)
	}()
	herdtest.Returns(t, "GetOrCreate and Close after the panic", func() error {
		if _, _, err := c.GetOrCreate("a", 1); err != nil {
			return err
		}
		return c.Close(context.Background())
	})
}

// Results were matched to their batch by id under the mutex, in a deferred
// function of the worker: a result whose id cannot be a map key killed the
// process. It is now the sync call's own panic.
func TestRegressionAutorefreshUnhashableResultID(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		calls := 0
		c := autorefresh.New(func(_ context.Context, batch []autorefresh.Item[any, int]) ([]autorefresh.Result[any, int], error) {
			calls++
			if calls == 1 {
				return []autorefresh.Result[any, int]{{ID: []int{1}, Action: autorefresh.Delete}}, nil
			}
			return []autorefresh.Result[any, int]{{ID: batch[0].ID, Action: autorefresh.Update, Value: 2}}, nil
		}, autorefresh.ResyncPeriod(period), autorefresh.WithLogger(slog.New(slog.DiscardHandler)))
		if err := c.Start(t.Context()); err != nil {
			t.Fatal(err)
		}
		defer func() {
			if err := c.Close(t.Context()); err != nil {
				t.Errorf("Close: %v", err)
			}
		}()
		t0 := time.Now()
		if _, _, err := c.GetOrCreate("a", 1); err != nil {
			t.Fatal(err)
		}
		at(t0, period)
		if s := c.Stats(); s.SyncPanics != 1 {
			t.Fatalf("Stats = %+v, want the bad result counted as the call's panic", s)
		}
		at(t0, 2*period)
		if v, err := c.Get("a"); v != 2 || err != nil {
			t.Fatalf("Get(a) = %d, %v; want the next cycle's result", v, err)
		}
	})
}

func TestRegressionAutorefreshNilContextPanics(t *testing.T) {
	c := create(t, newRecorder(t, nil), options{})
	for name, call := range map[string]func(){
		"Start": func() { _ = c.Start(nil) }, //nolint:staticcheck // SA1012: the point of the test
		"Close": func() { _ = c.Close(nil) }, //nolint:staticcheck // SA1012: the point of the test
	} {
		t.Run(name, func(t *testing.T) {
			defer func() {
				if r := recover(); r != "autorefresh: nil Context" {
					t.Fatalf("%s(nil) panicked with %v", name, r)
				}
			}()
			call()
		})
	}
}
