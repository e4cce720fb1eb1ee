package herd_test

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/herdcache/herd"
	"github.com/herdcache/herd/store/memory"
)

// The tests of this file run over a memory store itself, not a type that
// wraps it: the cache then reads the store's entries in place and runs a
// load on its first caller's goroutine when that caller cannot leave.

func newLocalCache(t *testing.T, opts ...herd.Option) *herd.Cache[string] {
	t.Helper()
	c := herd.New[string](memory.New[string](), append([]herd.Option{herd.WithLogger(discard)}, opts...)...)
	t.Cleanup(func() {
		if err := c.Close(context.Background()); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return c
}

// Every status, age and count, through Get and Fetch, on the in-process path.
func TestLocalStoreLifeOfAKey(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var events [16]atomic.Int32
		obs := herd.ObserverFunc(func(e herd.Event) { events[e.Kind].Add(1) })
		c := newLocalCache(t, herd.TTL(10*time.Minute), herd.RefreshAfter(time.Minute),
			herd.StaleIfError(time.Hour), herd.NegativeTTL(time.Minute), herd.WithObserver(obs))
		src := &source{value: "v"}
		if r := mustGet(t, c, "k", src.load); r.Status != herd.StatusLoaded || r.Value != "v:k" || r.Age() != 0 {
			t.Fatalf("first read: %+v aged %v", r, r.Age())
		}
		time.Sleep(30 * time.Second)
		if r := mustGet(t, c, "k", src.load); r.Status != herd.StatusFresh || r.Age() != 30*time.Second {
			t.Fatalf("fresh read: %+v aged %v", r, r.Age())
		}
		if v, err := c.Get(context.Background(), "k", src.load); v != "v:k" || err != nil {
			t.Fatalf("fresh Get = %q, %v", v, err)
		}
		time.Sleep(time.Minute) // 90s: stale
		src.set("v2", nil)
		if r := mustGet(t, c, "k", src.load); r.Status != herd.StatusStale || r.Value != "v:k" || r.Age() != 90*time.Second {
			t.Fatalf("stale read: %+v aged %v", r, r.Age())
		}
		synctest.Wait() // the refresh lands
		if r := mustGet(t, c, "k", src.load); r.Status != herd.StatusFresh || r.Value != "v2:k" {
			t.Fatalf("after the refresh: %+v", r)
		}
		time.Sleep(11 * time.Minute) // expired, kept for stale-if-error
		src.set("", errors.New("source down"))
		if r := mustGet(t, c, "k", src.load); r.Status != herd.StatusStaleOnError || r.Value != "v2:k" {
			t.Fatalf("expired read with the source down: %+v", r)
		}
		src.set("", herd.ErrNotFound)
		if _, err := c.Get(context.Background(), "gone", src.load); !errors.Is(err, herd.ErrNotFound) {
			t.Fatalf("missing key: %v", err)
		}
		if _, err := c.Get(context.Background(), "gone", src.load); !errors.Is(err, herd.ErrNotFound) {
			t.Fatalf("cached not-found: %v", err)
		}
		st := c.Stats()
		if st.Hits != 3 || st.StaleHits != 1 || st.NegativeHits != 1 || st.StaleOnError != 1 || st.Misses != 3 {
			t.Fatalf("stats %+v", st)
		}
		for kind, n := range map[herd.EventKind]uint64{
			herd.EventHit: st.Hits, herd.EventStaleHit: st.StaleHits, herd.EventNegativeHit: st.NegativeHits, herd.EventMiss: st.Misses,
		} {
			if got := events[kind].Load(); uint64(got) != n {
				t.Errorf("%d %v events, %d counted", got, kind, n)
			}
		}
	})
}

// A hit and a stale hit allocate nothing.
func TestLocalStoreHitsDoNotAllocate(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c := newLocalCache(t, herd.TTL(time.Hour), herd.RefreshAfter(time.Minute))
		ctx := context.Background()
		src := &source{value: "v"}
		load := src.load // a method value allocates where it is made
		mustGet(t, c, "fresh", load)
		mustGet(t, c, "stale", load)
		time.Sleep(30 * time.Second)
		mustGet(t, c, "fresh", src.load)
		if n := testing.AllocsPerRun(100, func() { _, _ = c.Get(ctx, "fresh", load) }); n != 0 {
			t.Errorf("%v allocations per hit", n)
		}
		if n := testing.AllocsPerRun(100, func() { _, _ = c.Fetch(ctx, "fresh", load) }); n != 0 {
			t.Errorf("%v allocations per Fetch of a fresh value", n)
		}
		time.Sleep(time.Minute)
		release := src.block() // the refresh hangs: every read is stale
		mustGet(t, c, "stale", src.load)
		if n := testing.AllocsPerRun(100, func() { _, _ = c.Get(ctx, "stale", load) }); n != 0 {
			t.Errorf("%v allocations per stale hit with its refresh running", n)
		}
		release()
	})
}

// A loader that panics on its caller's goroutine reaches that caller and
// every waiter as a *flight.PanicError; a Goexit ends that caller's
// goroutine, and the waiters get flight.ErrGoexit.
func TestLocalStoreLoaderPanicAndGoexit(t *testing.T) {
	for name, bad := range map[string]func(){"panic": func() { panic("boom") }, "goexit": runtime.Goexit} {
		t.Run(name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				c := newLocalCache(t, herd.TTL(time.Hour))
				gate := make(chan struct{})
				load := func(context.Context, string) (string, error) {
					<-gate
					bad()
					return "unreachable", nil
				}
				errs := make(chan error, 10)
				for range 10 {
					go func() {
						_, err := c.Get(context.Background(), "k", load)
						errs <- err
					}()
				}
				synctest.Wait()
				close(gate)
				synctest.Wait()
				want := 10
				if name == "goexit" {
					want = 9 // the goroutine that ran the loader is gone
				}
				if len(errs) != want {
					t.Fatalf("%d callers returned, want %d", len(errs), want)
				}
				for range want {
					if err := <-errs; err == nil {
						t.Fatal("a caller got no error")
					}
				}
				if v, err := c.Get(context.Background(), "k", func(context.Context, string) (string, error) { return "ok", nil }); v != "ok" || err != nil {
					t.Fatalf("next Get = %q, %v", v, err)
				}
			})
		})
	}
}

// Stale reads while refreshes run, queue or are dropped: each read of a key
// whose refresh is queued or running does nothing more, each read of
// another key while the queue is full counts a dropped refresh, and once a
// refresh fails the key is refreshed again after its backoff.
func TestLocalStoreStaleReadsWhileRefreshing(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c := newLocalCache(t, herd.TTL(24*time.Hour), herd.RefreshAfter(time.Minute),
			herd.Workers(1), herd.QueueSize(2), herd.RefreshBackoff(time.Second, time.Second))
		src := &source{value: "v1"}
		keys := []string{"a", "b", "c", "d", "e", "f", "g", "h"}
		for _, k := range keys {
			mustGet(t, c, k, src.load)
		}
		time.Sleep(2 * time.Minute)
		src.set("", errors.New("down"))
		release := src.block()
		mustGet(t, c, "a", src.load)
		synctest.Wait() // a's refresh runs, and blocks
		for _, k := range keys[1:] {
			mustGet(t, c, k, src.load) // b and c are queued, the rest dropped
		}
		for range 100 {
			for _, k := range keys {
				if r := mustGet(t, c, k, src.load); r.Status != herd.StatusStale || r.Value != "v1:"+k {
					t.Fatalf("read of %s: %+v, want stale v1", k, r)
				}
			}
		}
		if st := c.Stats(); st.StaleHits != 808 || st.RefreshesQueued != 3 || st.RefreshesDropped != 505 {
			t.Fatalf("stats %+v, want 808 stale hits, 3 refreshes queued, 505 dropped", st)
		}
		release()
		synctest.Wait() // a, b and c fail
		if st := c.Stats(); st.RefreshesFailed != 3 {
			t.Fatalf("%d refreshes failed, want 3", st.RefreshesFailed)
		}
		time.Sleep(2 * time.Second) // past the backoff
		src.set("v2", nil)
		for _, k := range []string{"a", "b", "c"} {
			mustGet(t, c, k, src.load)
			synctest.Wait()
			if r := mustGet(t, c, k, src.load); r.Status != herd.StatusFresh || r.Value != "v2:"+k {
				t.Fatalf("%s after its failed refresh and backoff: %+v, want refreshed", k, r)
			}
		}
	})
}

// A loader that calls runtime.Goexit in a background refresh fails that
// refresh only: the key and the other keys are refreshed again.
func TestLocalStoreGoexitInARefresh(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c := newLocalCache(t, herd.TTL(24*time.Hour), herd.RefreshAfter(time.Minute),
			herd.Workers(1), herd.RefreshBackoff(time.Second, time.Second))
		var goexit atomic.Bool
		var calls atomic.Int32
		load := func(context.Context, string) (string, error) {
			calls.Add(1)
			if goexit.Load() {
				runtime.Goexit()
			}
			return "v", nil
		}
		mustGet(t, c, "k", load)
		time.Sleep(2 * time.Minute)
		goexit.Store(true)
		mustGet(t, c, "k", load) // stale: queues the refresh, which calls Goexit
		synctest.Wait()
		if st := c.Stats(); calls.Load() != 2 || st.RefreshesFailed != 1 {
			t.Fatalf("%d loader calls, stats %+v; want 2 calls, 1 refresh failed", calls.Load(), st)
		}
		goexit.Store(false)
		time.Sleep(5 * time.Second) // past the backoff
		mustGet(t, c, "k", load)
		synctest.Wait()
		if r := mustGet(t, c, "k", load); r.Status != herd.StatusFresh {
			t.Fatalf("after the backoff: %+v, stats %+v; want refreshed", r, c.Stats())
		}
		mustGet(t, c, "other", load)
		time.Sleep(2 * time.Minute)
		mustGet(t, c, "other", load)
		synctest.Wait()
		if r := mustGet(t, c, "other", load); r.Status != herd.StatusFresh {
			t.Fatalf("another key: %+v, stats %+v; want refreshed", r, c.Stats())
		}
	})
}

// A refresh keeps its key until its value is in the store: a stale read
// while the refresh writes its value does not queue a second refresh.
func TestLocalStoreRefreshHoldsItsKeyUntilStored(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		gate := make(chan struct{})
		var blocking atomic.Bool
		weigh := func(_ string, v string) uint32 {
			if v == "v2" && blocking.CompareAndSwap(true, false) {
				<-gate // the store write of the refresh's value hangs
			}
			return 1
		}
		c := herd.New[string](memory.New[string](memory.MaxWeight(1000, weigh)),
			herd.WithLogger(discard), herd.TTL(time.Hour), herd.RefreshAfter(time.Minute), herd.Workers(1))
		defer func() { _ = c.Close(context.Background()) }()
		var calls atomic.Int32
		load := func(context.Context, string) (string, error) { return fmt.Sprintf("v%d", calls.Add(1)), nil }
		mustGet(t, c, "k", load)
		time.Sleep(2 * time.Minute)
		blocking.Store(true)
		mustGet(t, c, "k", load) // stale: queues the refresh
		synctest.Wait()          // the refresh loaded v2 and is writing it
		mustGet(t, c, "k", load)
		synctest.Wait()
		st := c.Stats()
		close(gate)
		synctest.Wait()
		if st.RefreshesQueued != 1 || calls.Load() != 2 {
			t.Fatalf("%d refreshes queued, %d loads while the refresh wrote its value; want 1 and 2", st.RefreshesQueued, calls.Load())
		}
		if r := mustGet(t, c, "k", load); r.Status != herd.StatusFresh || r.Value != "v2" {
			t.Fatalf("after the refresh: %+v", r)
		}
	})
}
