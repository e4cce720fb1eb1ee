package changefeed

import (
	"context"
	"fmt"
	"log/slog"
	"runtime"
	"strings"
	"sync"
	"testing"
	"testing/synctest"

	"go.uber.org/goleak"

	"github.com/herdcache/herd/store"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// recorder keeps what a feed delivered.
type recorder struct {
	mu  sync.Mutex
	got []store.Change
}

func (r *recorder) fn(c store.Change) {
	r.mu.Lock()
	r.got = append(r.got, c)
	r.mu.Unlock()
}

func (r *recorder) String() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return show(r.got)
}

// show writes changes compactly: keys by name (with @version when set),
// the others by their flag.
func show(cs []store.Change) string {
	var b strings.Builder
	for i, c := range cs {
		if i > 0 {
			b.WriteByte(' ')
		}
		switch {
		case c.All:
			b.WriteString("All")
		case c.Down:
			b.WriteString("Down")
		case c.Up:
			b.WriteString("Up")
		case c.Gap:
			b.WriteString("Gap")
		case c.Version != 0:
			fmt.Fprintf(&b, "%s@%d", c.Key, c.Version)
		default:
			b.WriteString(c.Key)
		}
	}
	return b.String()
}

// logs is a slog handler that keeps messages and their "err".
type logs struct {
	mu   sync.Mutex
	msgs []string
}

func (h *logs) Enabled(context.Context, slog.Level) bool { return true }
func (h *logs) WithAttrs([]slog.Attr) slog.Handler       { return h }
func (h *logs) WithGroup(string) slog.Handler            { return h }

func (h *logs) Handle(_ context.Context, r slog.Record) error {
	msg := r.Message
	r.Attrs(func(a slog.Attr) bool {
		msg += " " + a.Key + "=" + a.Value.String()
		return true
	})
	h.mu.Lock()
	h.msgs = append(h.msgs, msg)
	h.mu.Unlock()
	return nil
}

func (h *logs) String() string {
	h.mu.Lock()
	defer h.mu.Unlock()
	return strings.Join(h.msgs, "\n")
}

var discard = slog.New(slog.DiscardHandler)

func key(k string) store.Change { return store.Change{Key: k} }

var (
	down = store.Change{Down: true}
	up   = store.Change{Up: true}
	gap  = store.Change{Gap: true}
	all  = store.Change{All: true}
)

// Changes reach fn in order, one call at a time, with their versions; fn
// runs under no lock of the feed, so it may push.
func TestDeliversInOrder(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var (
			r     recorder
			f     *Feed
			calls int
		)
		f = New(func(c store.Change) {
			calls++ // a data race if two calls overlapped
			r.fn(c)
			if c.Key == "a" {
				f.Push(key("from-fn"))
			}
		}, discard, "test")
		defer f.Close()
		f.Push(store.Change{Key: "a", Version: 7})
		f.Push(key("b"))
		f.Push(key(""))
		synctest.Wait()
		if got, want := r.String(), "a@7 b  from-fn"; got != want {
			t.Fatalf("delivered %q, want %q", got, want)
		}
	})
}

// A Down while down and an Up while up say nothing new and are dropped; a
// Gap is delivered either way.
func TestStateChangesWithoutNewsAreDropped(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var r recorder
		f := New(r.fn, discard, "test")
		defer f.Close()
		for _, c := range []store.Change{up, down, key("a"), down, up, up, gap, down, gap, gap} {
			f.Push(c)
		}
		synctest.Wait()
		if got, want := r.String(), "Down a Up Gap Down Gap Gap"; got != want {
			t.Fatalf("delivered %q, want %q", got, want)
		}
	})
}

// blocked returns a feed of queue size n whose fn blocks on the change
// "block" until release is closed.
func blocked(t *testing.T, n int) (f *Feed, r *recorder, release chan struct{}) {
	r = &recorder{}
	release = make(chan struct{})
	f = newSized(func(c store.Change) {
		r.fn(c)
		if c.Key == "block" {
			<-release
		}
	}, discard, "test", n)
	t.Cleanup(f.Close)
	f.Push(key("block"))
	synctest.Wait()
	return f, r, release
}

// A full queue is replaced by one All, delivered before what comes after.
func TestOverflowIsAll(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f, r, release := blocked(t, 4)
		for i := range 5 {
			f.Push(key(fmt.Sprint(i)))
		}
		f.Push(key("last"))
		close(release)
		synctest.Wait()
		if got, want := r.String(), "block All 4 last"; got != want {
			t.Fatalf("delivered %q, want %q", got, want)
		}
	})
}

// The loss signal is never dropped: an overflow that swallows a Down, an Up
// or a Gap the function has not seen puts the state it led to after the
// All, so that every Down seen is followed by an Up or a Gap.
func TestOverflowKeepsTheState(t *testing.T) {
	for _, tc := range []struct {
		name   string
		before []store.Change // delivered before the function blocks
		queued []store.Change // then pushed while it blocks
		want   string
	}{
		{"down swallowed", nil, []store.Change{key("a"), down, key("b"), key("c"), key("d")}, "block All Down d"},
		{"down then gap swallowed", nil, []store.Change{down, key("a"), gap, key("b"), key("c")}, "block All c"},
		{"gap after a seen down swallowed", []store.Change{down}, []store.Change{key("a"), gap, key("b"), key("c"), key("d")}, "Down block All Up d"},
		{"up after a seen down swallowed", []store.Change{down}, []store.Change{key("a"), key("b"), up, key("c"), key("d")}, "Down block All Up d"},
		{"still down", []store.Change{down}, []store.Change{key("a"), key("b"), key("c"), key("d"), key("e")}, "Down block All e"},
		{"overflowed by a gap", []store.Change{down}, []store.Change{key("a"), key("b"), key("c"), key("d"), gap}, "Down block All Gap"},
		{"overflowed by a down", nil, []store.Change{key("a"), key("b"), key("c"), key("d"), down, key("e")}, "block All Down e"},
		{"All while down", []store.Change{down}, []store.Change{key("a"), all}, "Down block All"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				var r recorder
				release := make(chan struct{})
				f := newSized(func(c store.Change) {
					r.fn(c)
					if c.Key == "block" {
						<-release
					}
				}, discard, "test", 4)
				defer f.Close()
				for _, c := range tc.before {
					f.Push(c)
				}
				f.Push(key("block"))
				synctest.Wait()
				for _, c := range tc.queued {
					f.Push(c)
				}
				close(release)
				synctest.Wait()
				if got := r.String(); got != tc.want {
					t.Fatalf("delivered %q, want %q", got, tc.want)
				}
			})
		})
	}
}

// All replaces what is queued, whatever the queue's size.
func TestAllReplacesTheQueue(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f, r, release := blocked(t, QueueSize)
		f.Push(key("a"))
		f.Push(all)
		f.Push(key("b"))
		f.Push(all)
		f.Push(key("c"))
		close(release)
		synctest.Wait()
		if got, want := r.String(), "block All c"; got != want {
			t.Fatalf("delivered %q, want %q", got, want)
		}
	})
}

// A panic in fn is recovered and logged with "err", fn gets All before the
// next change, and deliveries go on; a panic on All itself is not followed
// by another All.
func TestPanicIsAll(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var (
			r recorder
			h logs
		)
		f := New(func(c store.Change) {
			r.fn(c)
			if c.Key == "boom" || c.All {
				panic("boom")
			}
		}, slog.New(&h), "test")
		defer f.Close()
		f.Push(key("boom"))
		f.Push(key("after"))
		synctest.Wait()
		if got, want := r.String(), "boom All after"; got != want {
			t.Fatalf("delivered %q, want %q", got, want)
		}
		if got := h.String(); strings.Count(got, "test: watch function panicked") != 2 || !strings.Contains(got, "err=") {
			t.Fatalf("logs:\n%s\nwant two panics logged with err", got)
		}
	})
}

// A runtime.Goexit in fn does not end delivery: it is logged, fn gets All
// before the next change, and a new goroutine delivers.
func TestGoexitIsAllAndDeliveryGoesOn(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var (
			r recorder
			h logs
		)
		f := New(func(c store.Change) {
			r.fn(c)
			if c.Key == "exit" {
				runtime.Goexit()
			}
		}, slog.New(&h), "test")
		defer f.Close()
		f.Push(key("exit"))
		f.Push(key("after"))
		synctest.Wait()
		f.Push(key("exit"))
		synctest.Wait()
		f.Push(key("later"))
		synctest.Wait()
		if got, want := r.String(), "exit All after exit All later"; got != want {
			t.Fatalf("delivered %q, want %q", got, want)
		}
		if got := h.String(); strings.Count(got, "test: watch function called runtime.Goexit") != 2 {
			t.Fatalf("logs:\n%s\nwant two Goexits logged", got)
		}
	})
}

// Close waits for fn to return, fn is not called after it, every Close
// returns, concurrent ones included, and no goroutine is left (goleak).
func TestCloseWaitsForFn(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f, r, release := blocked(t, QueueSize)
		f.Push(key("queued"))
		closed := make(chan struct{})
		var wg sync.WaitGroup
		for range 3 {
			wg.Go(f.Close)
		}
		go func() {
			wg.Wait()
			close(closed)
		}()
		synctest.Wait()
		select {
		case <-closed:
			t.Fatal("Close returned while fn was running")
		default:
		}
		close(release)
		<-closed
		f.Push(key("after"))
		f.Close()
		synctest.Wait()
		if got, want := r.String(), "block"; got != want {
			t.Fatalf("delivered %q, want %q", got, want)
		}
	})
}

// The queue's memory is given back after a burst.
func TestQueueShrinksAfterABurst(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f, _, release := blocked(t, QueueSize)
		for i := range 4000 {
			f.Push(key(fmt.Sprint(i)))
		}
		close(release)
		synctest.Wait()
		f.mu.Lock()
		defer f.mu.Unlock()
		if cap(f.queue) > 1024 {
			t.Fatalf("queue keeps a capacity of %d after the burst", cap(f.queue))
		}
	})
}
