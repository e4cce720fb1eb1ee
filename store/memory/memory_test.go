package memory_test

import (
	"context"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"go.uber.org/goleak"

	"github.com/herdcache/herd/store"
	"github.com/herdcache/herd/store/memory"
	"github.com/herdcache/herd/store/storetest"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

func newStore(t *testing.T, opts ...memory.Option) *memory.Store[storetest.Value] {
	s := memory.New[storetest.Value](opts...)
	t.Cleanup(func() { _ = s.Close(context.Background()) })
	return s
}

// sharedPerTest returns a newStore for storetest that gives every call of
// one subtest the same store, as several processes would share one server.
func sharedPerTest(opts ...memory.Option) func(t *testing.T) store.Store[storetest.Value] {
	var (
		mu     sync.Mutex
		stores = make(map[string]*memory.Store[storetest.Value])
	)
	return func(t *testing.T) store.Store[storetest.Value] {
		mu.Lock()
		defer mu.Unlock()
		s, ok := stores[t.Name()]
		if !ok {
			s = newStore(t, opts...)
			stores[t.Name()] = s
		}
		return s
	}
}

var conformance = storetest.Options{ChangeVersions: true}

func TestConformance(t *testing.T) {
	storetest.RunWith(t, conformance, sharedPerTest())
}

func TestConformanceWeighted(t *testing.T) {
	storetest.RunWith(t, conformance, sharedPerTest(memory.MaxWeight(1<<30, func(_ string, v storetest.Value) uint32 { return uint32(len(v.Blob) + 1) })))
}

// With ExactClock an entry goes exactly at its KeepUntil; with the default
// coarse clock, never before it and at most one resolution after it, even
// while it is read all along.
func TestEntryDroppedAtKeepUntil(t *testing.T) {
	for name, tc := range map[string]struct {
		o    memory.Option
		late time.Duration
	}{
		"exact":  {memory.ExactClock(), 0},
		"coarse": {memory.CoarseClock(memory.DefaultResolution), memory.DefaultResolution},
	} {
		t.Run(name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				s := newStore(t, tc.o)
				ctx := context.Background()
				now := time.Now()
				until := now.Add(time.Minute)
				_ = s.Set(ctx, "k", store.Entry[storetest.Value]{Value: storetest.Value{Name: "v"}, StoredAt: now, KeepUntil: until})
				time.Sleep(time.Minute - time.Millisecond)
				for time.Now().Before(until) {
					if _, ok, _ := s.Get(ctx, "k"); !ok {
						t.Fatalf("entry gone %v before its KeepUntil", time.Until(until))
					}
					time.Sleep(100 * time.Microsecond)
				}
				for {
					_, ok, _ := s.Get(ctx, "k")
					if !ok {
						break
					}
					if late := time.Since(until); late >= tc.late {
						t.Fatalf("entry still returned %v after its KeepUntil", late)
					}
					time.Sleep(10 * time.Microsecond)
				}
				_ = s.Close(ctx)
			})
		})
	}
}

func TestMaxEntriesBoundsTheStore(t *testing.T) {
	s := newStore(t, memory.MaxEntries(100))
	ctx := context.Background()
	for i := range 10_000 {
		_ = s.Set(ctx, string(rune(i)), store.Entry[storetest.Value]{Value: storetest.Value{N: int64(i)}})
	}
	_ = s.Close(ctx) // stop the clean-up goroutine; eviction still happens on writes
	if n := s.Len(); n > 110 {
		t.Fatalf("store holds %d entries with MaxEntries(100)", n)
	}
}

func TestMaxWeightBoundsTheStore(t *testing.T) {
	s := newStore(t, memory.MaxWeight(10_000, func(_ string, v storetest.Value) uint32 { return uint32(len(v.Blob)) }))
	ctx := context.Background()
	blob := make([]byte, 1000)
	for i := range 1000 {
		_ = s.Set(ctx, string(rune(i)), store.Entry[storetest.Value]{Value: storetest.Value{Blob: blob}})
	}
	if n := s.Len(); n > 11 {
		t.Fatalf("store holds %d entries of 1000 bytes under a 10,000 weight bound", n)
	}
}

func TestInvalidOptionsPanic(t *testing.T) {
	for name, opt := range map[string]memory.Option{
		"zero entries":   memory.MaxEntries(0),
		"zero weight":    memory.MaxWeight(0, func(string, storetest.Value) uint32 { return 1 }),
		"wrong weigher":  memory.MaxWeight(10, func(string, int) uint32 { return 1 }),
		"negative count": memory.MaxEntries(-1),
		"negative clock": memory.CoarseClock(-time.Second),
	} {
		t.Run(name, func(t *testing.T) {
			defer func() {
				if recover() == nil {
					t.Fatal("New did not panic")
				}
			}()
			memory.New[storetest.Value](opt)
		})
	}
}

func TestHitDoesNotAllocate(t *testing.T) {
	s := newStore(t)
	ctx := context.Background()
	_ = s.Set(ctx, "k", store.Entry[storetest.Value]{Value: storetest.Value{Name: "v"}, KeepUntil: time.Now().Add(time.Hour)})
	allocs := testing.AllocsPerRun(1000, func() {
		if _, ok, _ := s.Get(ctx, "k"); !ok {
			t.Fatal("miss")
		}
	})
	if allocs != 0 {
		t.Fatalf("a hit allocated %v times", allocs)
	}
}

func TestConformanceCoarseClock(t *testing.T) {
	storetest.RunWith(t, conformance, sharedPerTest(memory.CoarseClock(time.Millisecond)))
}

func TestCoarseClockLendsItsTime(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := memory.New[int](memory.CoarseClock(time.Second))
		defer s.Close(context.Background())
		ctx := context.Background()
		_ = s.Set(ctx, "k", store.Entry[int]{Value: 1, KeepUntil: time.Now().Add(time.Hour)})
		time.Sleep(2500 * time.Millisecond)
		_, now, ok, _ := s.GetShared(ctx, "k")
		if !ok || !now.Equal(time.Now().Add(-500*time.Millisecond)) {
			t.Fatalf("coarse time %v, want the last whole-second tick before %v", now, time.Now())
		}
	})
}
