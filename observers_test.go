package herd_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"sync/atomic"
	"testing"
	"testing/synctest"

	"github.com/herdcache/herd"
	"github.com/herdcache/herd/store/memory"
)

// recorder is an observer that appends what it sees to a shared log, under
// its name.
type recorder struct {
	name string
	log  *[]string
}

func (r recorder) Observe(e herd.Event) { *r.log = append(*r.log, r.name+":"+e.Kind.String()) }

func TestObserversCallEachInOrder(t *testing.T) {
	var log []string
	a, b, c := recorder{"a", &log}, recorder{"b", &log}, recorder{"c", &log}
	o := herd.Observers(a, nil, herd.Observers(b, c))
	o.Observe(herd.Event{Kind: herd.EventMiss})
	o.Observe(herd.Event{Kind: herd.EventLoad})
	want := []string{"a:miss", "b:miss", "c:miss", "a:load", "b:load", "c:load"}
	if !slices.Equal(log, want) {
		t.Fatalf("observers saw %v, want %v", log, want)
	}
}

func TestObserversOfNoneOrOne(t *testing.T) {
	if o := herd.Observers(); o != nil {
		t.Fatalf("Observers() = %v, want nil", o)
	}
	if o := herd.Observers(nil, herd.Observers(nil)); o != nil {
		t.Fatalf("Observers(nil, Observers(nil)) = %v, want nil", o)
	}
	var log []string
	one := recorder{"one", &log}
	if o := herd.Observers(nil, one); o != herd.Observer(one) {
		t.Fatalf("Observers(nil, one) = %v, want one itself", o)
	}
}

// Every observer of a cache built with Observers sees every event, and Stats
// agree with them.
func TestObserversOnACache(t *testing.T) {
	counts := [2]map[herd.EventKind]int{{}, {}}
	var obs []herd.Observer
	for i := range counts {
		obs = append(obs, herd.ObserverFunc(func(e herd.Event) { counts[i][e.Kind]++ }))
	}
	synctest.Test(t, func(t *testing.T) {
		c, _ := newCache(t, herd.WithObserver(herd.Observers(obs...)))
		ctx := context.Background()
		boom := errors.New("boom")
		fail := func(context.Context, string) (string, error) { return "", boom }
		for range 3 {
			if _, err := c.Get(ctx, "k", constLoader("v")); err != nil {
				t.Fatal(err)
			}
			synctest.Wait() // the load's store write lands
		}
		if _, err := c.Get(ctx, "bad", fail); !errors.Is(err, boom) {
			t.Fatalf("Get of a failing key = %v, want %v", err, boom)
		}
		synctest.Wait() // the load's events follow its result
		s := c.Stats()
		if s.Misses != 2 || s.Hits != 2 || s.Loads != 2 || s.LoadErrors != 1 {
			t.Fatalf("Stats = %+v, want 2 misses, 2 hits, 2 loads, 1 load error", s)
		}
		want := map[herd.EventKind]int{herd.EventMiss: 2, herd.EventHit: 2, herd.EventLoad: 2}
		for i := range counts {
			for k, n := range want {
				if counts[i][k] != n {
					t.Errorf("observer %d saw %d %v events, want %d", i, counts[i][k], k, n)
				}
			}
		}
	})
}

func constLoader(v string) herd.Loader[string] {
	return func(context.Context, string) (string, error) { return v, nil }
}

// loadObserver stands for the metrics observers of herdprom and herdotel:
// it returns at once on a hit and records loads only.
type loadObserver struct{ loads, nanos atomic.Int64 }

func (o *loadObserver) Observe(e herd.Event) {
	if e.Kind != herd.EventLoad {
		return
	}
	o.loads.Add(1)
	o.nanos.Add(int64(e.Duration))
}

// A hit on the memory store allocates nothing, with or without observers.
// (A hit on a remote store allocates the timer that bounds its read, next to
// the round trip's own.)
func TestHitWithObserversDoesNotAllocate(t *testing.T) {
	for _, tc := range []struct {
		name string
		opts []herd.Option
	}{
		{"no observer", nil},
		{"one observer", []herd.Option{herd.WithObserver(&loadObserver{})}},
		{"three observers", []herd.Option{herd.WithObserver(herd.Observers(&loadObserver{}, &loadObserver{}, &loadObserver{}))}},
	} {
		synctest.Test(t, func(t *testing.T) {
			c := herd.New[string](memory.New[string](), tc.opts...)
			defer c.Close(context.Background())
			ctx := context.Background()
			if _, err := c.Get(ctx, "k", constLoader("v")); err != nil {
				t.Fatal(err)
			}
			synctest.Wait() // the load's store write lands
			load := func(context.Context, string) (string, error) { panic("a hit must not load") }
			allocs := testing.AllocsPerRun(1000, func() {
				if _, err := c.Get(ctx, "k", load); err != nil {
					t.Fatal(err)
				}
			})
			if allocs != 0 {
				t.Fatalf("%s: a hit allocated %v times", tc.name, allocs)
			}
		})
	}
}

// BenchmarkHitObserver measures a hit with no observer, with one, and with
// three combined by Observers.
func BenchmarkHitObserver(b *testing.B) {
	const n = 1 << 10
	keys := make([]string, n)
	for i := range keys {
		keys[i] = "user:" + strconv.Itoa(i)
	}
	ctx := context.Background()
	for _, bc := range []struct {
		name string
		obs  herd.Observer
	}{
		{"observers=0", nil},
		{"observers=1", &loadObserver{}},
		{"observers=3", herd.Observers(&loadObserver{}, &loadObserver{}, &loadObserver{})},
	} {
		b.Run(bc.name, func(b *testing.B) {
			c := herd.New[string](memory.New[string](memory.MaxEntries(2*n)), herd.WithObserver(bc.obs))
			b.Cleanup(func() { _ = c.Close(ctx) })
			for _, k := range keys {
				if _, err := c.Get(ctx, k, constLoader("v")); err != nil {
					b.Fatal(err)
				}
			}
			load := constLoader("v")
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				if _, err := c.Get(ctx, keys[i&(n-1)], load); err != nil {
					b.Fatal(err)
				}
				i++
			}
		})
	}
}

func ExampleObservers() {
	ctx := context.Background()
	var loads, misses int
	countLoads := herd.ObserverFunc(func(e herd.Event) {
		if e.Kind == herd.EventLoad {
			loads++
		}
	})
	countMisses := herd.ObserverFunc(func(e herd.Event) {
		if e.Kind == herd.EventMiss {
			misses++
		}
	})
	// In a service: herdprom's collector, herdotel's metrics and tracer, and
	// your own observer.
	users := herd.New(memory.New[string](), herd.WithObserver(herd.Observers(countLoads, countMisses)))
	defer users.Close(ctx)

	_, _ = users.Get(ctx, "user:1", constLoader("Ada"))
	fmt.Println("loads:", loads, "misses:", misses)
	// Output:
	// loads: 1 misses: 1
}

func TestEventLoadResult(t *testing.T) {
	for _, tc := range []struct {
		err  error
		want herd.LoadResult
		name string
	}{
		{nil, herd.LoadOK, "ok"},
		{fmt.Errorf("db: %w", herd.ErrNotFound), herd.LoadNotFound, "not_found"},
		{errors.New("db down"), herd.LoadFailed, "error"},
	} {
		got := herd.Event{Kind: herd.EventLoad, Err: tc.err}.LoadResult()
		if got != tc.want || got.String() != tc.name {
			t.Errorf("LoadResult of %v = %v (%q), want %v (%q)", tc.err, got, got.String(), tc.want, tc.name)
		}
	}
}
