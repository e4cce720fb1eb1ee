package memory_test

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/herdcache/herd/store"
	"github.com/herdcache/herd/store/memory"
	"github.com/herdcache/herd/store/storetest"
)

// A weigher that returns 0 must not let the store grow without bound: every
// entry weighs at least 1.
func TestRegressionZeroWeightGrowsWithoutBound(t *testing.T) {
	s := memory.New[string](memory.MaxWeight(1000, func(_ string, v string) uint32 { return uint32(len(v)) }))
	ctx := context.Background()
	for i := range 50_000 {
		_ = s.Set(ctx, fmt.Sprint(i), store.Entry[string]{Value: ""})
	}
	_ = s.Close(ctx)
	if n := s.Len(); n > 1000 {
		t.Fatalf("%d empty values held under MaxWeight(1000)", n)
	}
}

// A deleted key's version is remembered for VersionRetention, then forgotten.
func TestTombstoneKeptForRetention(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := memory.New[int](memory.VersionRetention(time.Minute))
		defer s.Close(context.Background())
		ctx := context.Background()
		_, v0, _, _ := s.GetVersion(ctx, "k")
		if v0 != 0 {
			t.Fatalf("version of a key never written: %d", v0)
		}
		_ = s.Delete(ctx, "k")
		time.Sleep(time.Minute - time.Second)
		if err := s.SetIf(ctx, "k", store.Entry[int]{Value: 1}, v0); !errors.Is(err, store.ErrConflict) {
			t.Fatalf("SetIf with the version read before a Delete, within retention: %v", err)
		}
		time.Sleep(2 * time.Second)
		if _, v, _, _ := s.GetVersion(ctx, "k"); v != 0 {
			t.Fatalf("version %d still remembered past the retention", v)
		}
	})
}

// An entry past its KeepUntil reads as a miss but keeps its version, so a
// load that began before it was written cannot bring back an older value.
func TestExpiredEntryKeepsItsVersion(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := memory.New[int]()
		defer s.Close(context.Background())
		ctx := context.Background()
		_, v0, _, _ := s.GetVersion(ctx, "k")
		_ = s.Set(ctx, "k", store.Entry[int]{Value: 2, KeepUntil: time.Now().Add(time.Second)})
		time.Sleep(2 * time.Second)
		if _, ok, _ := s.Get(ctx, "k"); ok {
			t.Fatal("entry returned past its KeepUntil")
		}
		if err := s.SetIf(ctx, "k", store.Entry[int]{Value: 1}, v0); !errors.Is(err, store.ErrConflict) {
			t.Fatalf("SetIf over an expired newer entry: %v, want ErrConflict", err)
		}
	})
}

// A watch that falls behind gets one All instead of unbounded memory, and a
// panicking callback is followed by All; the watch lives on.
func TestWatchOverflowAndPanicReportAll(t *testing.T) {
	s := memory.New[int](memory.MaxEntries(100_000)) // no evictions to report
	defer s.Close(context.Background())
	ctx := context.Background()
	release := make(chan struct{})
	var (
		mu   sync.Mutex
		got  []store.Change
		seen = make(chan struct{}, 100_000)
	)
	w, err := s.Watch(ctx, func(c store.Change) {
		if c.Key == "block" {
			<-release
		}
		if c.Key == "panic" {
			panic("observer bug")
		}
		mu.Lock()
		got = append(got, c)
		mu.Unlock()
		seen <- struct{}{}
	})
	if err != nil {
		t.Fatal(err)
	}
	waitFor := func(want func(store.Change) bool) {
		t.Helper()
		timeout := time.After(10 * time.Second)
		for {
			select {
			case <-seen:
			case <-timeout:
				t.Fatal("change not delivered within 10s")
			}
			mu.Lock()
			done := len(got) > 0 && want(got[len(got)-1])
			mu.Unlock()
			if done {
				return
			}
		}
	}
	_ = s.Set(ctx, "block", store.Entry[int]{})
	for i := range 20_000 { // more than the 16,384 a watch queues
		_ = s.Set(ctx, fmt.Sprint(i), store.Entry[int]{})
	}
	_ = s.Set(ctx, "end", store.Entry[int]{})
	close(release)
	waitFor(func(c store.Change) bool { return c.Key == "end" })
	mu.Lock()
	alls := 0
	for _, c := range got {
		if c.All {
			alls++
		}
	}
	if n := len(got); n > 16_384+2 || alls != 1 {
		t.Fatalf("%d changes and %d All delivered to a watch that fell behind, want at most the bound and one All", n, alls)
	}
	got = got[:0]
	mu.Unlock()

	_ = s.Set(ctx, "panic", store.Entry[int]{})
	_ = s.Set(ctx, "after", store.Entry[int]{})
	waitFor(func(c store.Change) bool { return c.Key == "after" })
	_ = w.Close()
	mu.Lock()
	defer mu.Unlock()
	if len(got) != 2 || !got[0].All || got[1].Key != "after" {
		t.Fatalf("after a panicking callback got %+v, want All then the next key", got)
	}
}

// A callback that calls runtime.Goexit does not end the deliveries: All
// follows, then the next changes.
func TestWatchGoexitReportsAll(t *testing.T) {
	s := memory.New[int]()
	defer s.Close(context.Background())
	ctx := context.Background()
	got := make(chan store.Change, 10)
	w, err := s.Watch(ctx, func(c store.Change) {
		if c.Key == "exit" {
			runtime.Goexit()
		}
		got <- c
	})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	_ = s.Set(ctx, "exit", store.Entry[int]{})
	_ = s.Set(ctx, "after", store.Entry[int]{})
	for _, want := range []string{"All", "after"} {
		select {
		case c := <-got:
			if (want == "All") != c.All || (!c.All && c.Key != want) {
				t.Fatalf("got %+v, want %s", c, want)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("no %s within 10s after a Goexit in the callback", want)
		}
	}
}

// Evictions are changes too.
func TestWatchReportsEviction(t *testing.T) {
	s := memory.New[int](memory.MaxEntries(10))
	defer s.Close(context.Background())
	ctx := context.Background()
	keys := make(chan string, 1000)
	w, _ := s.Watch(ctx, func(c store.Change) { keys <- c.Key })
	defer w.Close()
	for i := range 100 {
		_ = s.Set(ctx, fmt.Sprint(i), store.Entry[int]{})
	}
	s.Len() // run the evictions that are due
	written := make(map[string]int)
	timeout := time.After(10 * time.Second)
	for total := 0; total < 100+90; total++ {
		select {
		case k := <-keys:
			written[k]++
		case <-timeout:
			t.Fatalf("%d changes within 10s, want 100 writes and 90 evictions", total)
		}
	}
}

func TestWatchAfterCloseFails(t *testing.T) {
	s := memory.New[int]()
	_ = s.Close(context.Background())
	if _, err := s.Watch(context.Background(), func(store.Change) {}); !errors.Is(err, memory.ErrClosed) {
		t.Fatalf("Watch after Close: %v, want ErrClosed", err)
	}
}

// nopClose is a view of a memory store shared by the caches of a fleet
// test: a cache's Close does not close it under the others. Its methods,
// capabilities included, are the store's.
type nopClose struct{ *memory.Store[storetest.Value] }

func (nopClose) Close(context.Context) error { return nil }

// The fleet scenarios, with the caches of a subtest sharing one store as
// processes share a server.
func TestFleet(t *testing.T) {
	var mu sync.Mutex
	shared := map[string]*memory.Store[storetest.Value]{}
	storetest.RunFleet(t, storetest.FleetOptions{}, func(t *testing.T) store.Store[storetest.Value] {
		mu.Lock()
		defer mu.Unlock()
		s := shared[t.Name()]
		if s == nil {
			s = memory.New[storetest.Value]()
			shared[t.Name()] = s
			t.Cleanup(func() { _ = s.Close(context.Background()) })
		}
		return nopClose{s}
	})
}

// The two-level suite, with the instances of a subtest over one store as
// processes over one server. An in-process store cannot be cut: the suite
// runs without its loss-and-repair scenario.
func TestTwoLevel(t *testing.T) {
	storetest.RunTwoLevel(t, storetest.TwoLevelOptions{}, sharedPerTest())
}
