package herd_test

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"slices"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/herdcache/herd"
	"github.com/herdcache/herd/flight"
	"github.com/herdcache/herd/store"
	"github.com/herdcache/herd/store/memory"
)

// lockedFleet builds n caches over one shared memory store that also hands
// out the fleet's locks, as n processes over one Redis or NATS with
// WithLocker.
func lockedFleet(t *testing.T, n int, lockTTL time.Duration, opts ...herd.Option) ([]*herd.Cache[string], *memory.Store[string]) {
	t.Helper()
	mem := memory.New[string]()
	caches := make([]*herd.Cache[string], n)
	for i := range caches {
		o := append([]herd.Option{herd.WithLogger(discard), herd.WithLocker(mem, lockTTL)}, opts...)
		caches[i] = herd.New[string](nopClose{mem}, o...)
	}
	t.Cleanup(func() {
		for _, c := range caches {
			_ = c.Close(context.Background())
		}
		_ = mem.Close(context.Background())
	})
	return caches, mem
}

// keyCounter is a source that counts the loads of each key, through a
// batch loader or a loader, each taking a while.
type keyCounter struct {
	mu    sync.Mutex
	loads map[string]int
	calls [][]string
	took  time.Duration
}

func (k *keyCounter) batch(_ context.Context, keys []string) (map[string]string, error) {
	k.mu.Lock()
	if k.loads == nil {
		k.loads = make(map[string]int)
	}
	for _, key := range keys {
		k.loads[key]++
	}
	k.calls = append(k.calls, slices.Clone(keys))
	k.mu.Unlock()
	time.Sleep(k.took)
	out := make(map[string]string, len(keys))
	for _, key := range keys {
		out[key] = "v:" + key
	}
	return out, nil
}

func (k *keyCounter) one(ctx context.Context, key string) (string, error) {
	vals, err := k.batch(ctx, []string{key})
	return vals[key], err
}

// each reports the keys whose load count is not want.
func (k *keyCounter) each(keys []string, want int) []string {
	k.mu.Lock()
	defer k.mu.Unlock()
	var off []string
	for _, key := range keys {
		if k.loads[key] != want {
			off = append(off, fmt.Sprintf("%s:%d", key, k.loads[key]))
		}
	}
	return off
}

func coldKeys(n int) []string {
	keys := make([]string, n)
	for i := range keys {
		keys[i] = fmt.Sprintf("k%02d", i)
	}
	return keys
}

// Two and three instances sharing a store with WithLocker, all asking for
// the same 50 cold keys through GetMany at once, some in overlapping
// halves: each key is loaded once across the fleet.
func TestBatchFleetOverlappingGetManysLoadEachKeyOnce(t *testing.T) {
	for _, n := range []int{2, 3} {
		t.Run(fmt.Sprintf("%d instances", n), func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				caches, _ := lockedFleet(t, n, 10*time.Second, herd.TTL(time.Hour))
				src := &keyCounter{took: 100 * time.Millisecond}
				keys := coldKeys(50)
				var wg sync.WaitGroup
				for _, c := range caches {
					for _, ks := range [][]string{keys, keys[:30], keys[20:]} {
						wg.Go(func() {
							got, err := c.GetMany(context.Background(), ks, src.batch)
							if err != nil || len(got) != len(ks) {
								t.Errorf("GetMany of %d keys = %d values, %v", len(ks), len(got), err)
							}
							for _, k := range ks {
								if got[k] != "v:"+k {
									t.Errorf("GetMany[%s] = %q", k, got[k])
								}
							}
						})
					}
				}
				wg.Wait()
				if off := src.each(keys, 1); len(off) > 0 {
					t.Fatalf("keys not loaded exactly once across %d instances: %v", n, off)
				}
			})
		})
	}
}

// Get on one instance and GetMany on another, for the same cold keys at
// once: each key is loaded once.
func TestBatchFleetGetAgainstGetMany(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		caches, _ := lockedFleet(t, 2, 10*time.Second, herd.TTL(time.Hour))
		src := &keyCounter{took: 100 * time.Millisecond}
		keys := coldKeys(50)
		var wg sync.WaitGroup
		for _, k := range keys {
			wg.Go(func() {
				if v, err := caches[0].Get(context.Background(), k, src.one); err != nil || v != "v:"+k {
					t.Errorf("Get(%s) = %q, %v", k, v, err)
				}
			})
		}
		wg.Go(func() {
			if got, err := caches[1].GetMany(context.Background(), keys, src.batch); err != nil || len(got) != len(keys) {
				t.Errorf("GetMany = %d values, %v", len(got), err)
			}
		})
		wg.Wait()
		if off := src.each(keys, 1); len(off) > 0 {
			t.Fatalf("keys not loaded exactly once: %v", off)
		}
	})
}

// Another process holds the locks of some keys of a batch and dies (its
// leases are never extended, and it stores nothing): the rest of the batch
// loads at once; the held keys are taken over once their leases end, and
// loaded then.
func TestBatchHolderDiesMidBatch(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const lockTTL = 2 * time.Second
		caches, mem := lockedFleet(t, 1, lockTTL, herd.TTL(time.Hour))
		keys := coldKeys(6)
		for _, k := range keys[:2] {
			if _, err := mem.TryLock(context.Background(), k, lockTTL); err != nil {
				t.Fatal(err)
			}
		}
		src := &keyCounter{}
		var mu sync.Mutex
		when := map[string]time.Duration{}
		start := time.Now()
		load := func(ctx context.Context, ks []string) (map[string]string, error) {
			mu.Lock()
			for _, k := range ks {
				when[k] = time.Since(start)
			}
			mu.Unlock()
			return src.batch(ctx, ks)
		}
		got, err := caches[0].GetMany(context.Background(), keys, load)
		if err != nil || len(got) != len(keys) {
			t.Fatalf("GetMany = %v, %v", got, err)
		}
		for _, k := range keys[2:] {
			if when[k] != 0 {
				t.Errorf("free key %s loaded at +%v, want at once", k, when[k])
			}
		}
		for _, k := range keys[:2] {
			if when[k] < lockTTL {
				t.Errorf("held key %s loaded at +%v, before the dead holder's lease ended", k, when[k])
			}
		}
		if off := src.each(keys, 1); len(off) > 0 {
			t.Fatalf("keys not loaded exactly once: %v", off)
		}
		if st := caches[0].Stats(); st.LockWaits != 2 {
			t.Fatalf("stats %+v, want 2 lock waits", st)
		}
	})
}

// A live holder on another instance: a batch that asks for its key waits
// for the holder's value (read from the store when it lands) while the
// rest of the batch loads, and never loads that key itself.
func TestBatchWaitsForALiveHolder(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		caches, _ := lockedFleet(t, 2, 10*time.Second, herd.TTL(time.Hour))
		a, b := caches[0], caches[1]
		go func() {
			_, _ = a.Get(context.Background(), "held", func(context.Context, string) (string, error) {
				time.Sleep(time.Second)
				return "A's value", nil
			})
		}()
		synctest.Wait() // A holds the lock and loads
		src := &keyCounter{}
		got, err := b.GetMany(context.Background(), []string{"held", "x", "y"}, src.batch)
		if err != nil || got["held"] != "A's value" || got["x"] != "v:x" || got["y"] != "v:y" {
			t.Fatalf("GetMany = %v, %v", got, err)
		}
		if off := src.each([]string{"held"}, 0); len(off) > 0 {
			t.Fatalf("B loaded the key A held: %v", off)
		}
		if calls := src.calls; len(calls) != 1 || !sameKeys(calls[0], []string{"x", "y"}) {
			t.Fatalf("B's batch loader calls %v, want one of x and y", calls)
		}
	})
}

// A batch whose loader runs three times the lock TTL keeps its leases: a Get
// of one of its keys on another instance meanwhile waits for the batch's
// value and loads nothing.
func TestBatchExtendsItsLeases(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const lockTTL = time.Second
		caches, _ := lockedFleet(t, 2, lockTTL, herd.TTL(time.Hour))
		src := &keyCounter{took: 3 * lockTTL}
		keys := coldKeys(10)
		done := make(chan struct{})
		go func() {
			defer close(done)
			if _, err := caches[0].GetMany(context.Background(), keys, src.batch); err != nil {
				t.Errorf("GetMany: %v", err)
			}
		}()
		time.Sleep(2 * lockTTL) // past one lease: only an extended one still holds
		if v, err := caches[1].Get(context.Background(), keys[3], src.one); err != nil || v != "v:"+keys[3] {
			t.Fatalf("Get = %q, %v", v, err)
		}
		<-done
		if off := src.each(keys, 1); len(off) > 0 {
			t.Fatalf("keys not loaded exactly once: %v", off)
		}
	})
}

// The leases of a batch are lost (the backend does not answer Extend):
// another instance takes a key over and stores a newer value; the batch's
// late write-back of that key is refused, the store never goes back, and
// the batch's other keys are written.
func TestBatchLostLeaseNeverGoesBack(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		mem := memory.New[string]()
		defer mem.Close(context.Background())
		locks := failingExtend{&memory.Locker{}}
		newCache := func() *herd.Cache[string] {
			c := herd.New[string](nopClose{mem}, herd.TTL(time.Hour), herd.WithLocker(locks, time.Second), herd.WithLogger(discard))
			t.Cleanup(func() { _ = c.Close(context.Background()) })
			return c
		}
		a, b := newCache(), newCache()
		first := make(chan map[string]string, 1)
		go func() {
			got, _ := a.GetMany(context.Background(), []string{"k", "other"}, func(context.Context, []string) (map[string]string, error) {
				time.Sleep(5 * time.Second) // outlives its leases
				return map[string]string{"k": "older", "other": "A's other"}, nil
			})
			first <- got
		}()
		time.Sleep(2 * time.Second) // A's leases have expired
		if v, err := b.Get(context.Background(), "k", constLoader("newer")); err != nil || v != "newer" {
			t.Fatalf("B's Get = %q, %v", v, err)
		}
		if got := <-first; got["k"] != "older" || got["other"] != "A's other" {
			t.Fatalf("A's caller got %v", got)
		}
		synctest.Wait()
		if e, ok, _ := mem.Get(context.Background(), "k"); !ok || e.Value != "newer" {
			t.Fatalf("store holds %q for k after the late batch, want the newer value", e.Value)
		}
		if e, ok, _ := mem.Get(context.Background(), "other"); !ok || e.Value != "A's other" {
			t.Fatalf("store holds %q (%v) for the batch's other key", e.Value, ok)
		}
		if st := a.Stats(); st.WriteConflicts != 1 {
			t.Fatalf("A's stats %+v, want one write-back refused", st)
		}
	})
}

// A batch loader called by GetMany's background refresh of stale keys is
// told so, as a loader called by Get's refresh is.
func TestBatchRefreshSaysRefreshing(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c, _ := newCache(t, herd.TTL(time.Hour), herd.RefreshAfter(time.Minute))
		var mu sync.Mutex
		var saw []bool
		load := func(ctx context.Context, keys []string) (map[string]string, error) {
			mu.Lock()
			saw = append(saw, herd.Refreshing(ctx))
			mu.Unlock()
			return map[string]string{"a": "v", "b": "v"}, nil
		}
		if _, err := c.GetMany(context.Background(), []string{"a", "b"}, load); err != nil {
			t.Fatal(err)
		}
		time.Sleep(2 * time.Minute)
		if _, err := c.GetMany(context.Background(), []string{"a", "b"}, load); err != nil {
			t.Fatal(err)
		}
		synctest.Wait()
		mu.Lock()
		defer mu.Unlock()
		if !slices.Equal(saw, []bool{false, true}) {
			t.Fatalf("Refreshing in the loader calls = %v, want false for the load, true for the refresh", saw)
		}
	})
}

// hangingBulk is a store whose bulk reads hang until their context ends.
type hangingBulk struct {
	*memory.Store[string]
}

func (h hangingBulk) GetMany(ctx context.Context, _ []string) (map[string]store.Entry[string], error) {
	<-ctx.Done()
	return map[string]store.Entry[string]{}, ctx.Err()
}

// A bulk read that hangs costs GetMany's caller StoreTimeout and a load,
// not its deadline.
func TestGetManyReadIsBoundedByStoreTimeout(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		mem := memory.New[string]()
		c := herd.New[string](hangingBulk{mem}, herd.StoreTimeout(100*time.Millisecond), herd.WithLogger(discard))
		defer c.Close(context.Background())
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		src := &keyCounter{}
		got, err := c.GetMany(ctx, []string{"a", "b"}, src.batch)
		if err != nil || got["a"] != "v:a" || got["b"] != "v:b" {
			t.Fatalf("GetMany = %v, %v; want the loaded values before the caller's deadline", got, err)
		}
		if st := c.Stats(); st.StoreErrors != 1 {
			t.Fatalf("stats %+v, want the hung read counted", st)
		}
	})
}

// An observer that Gets the key of every event it is told about, Load
// events included, never waits for the load that sent them: events come
// after the load's result is published. Through Get and GetMany, with a
// lock held elsewhere and a store whose writes fail.
func TestObserverMayGetTheKeyOfItsEvent(t *testing.T) {
	for _, via := range []string{"Get", "GetMany"} {
		t.Run(via, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				mem := memory.New[string]()
				defer mem.Close(context.Background())
				var (
					c    *herd.Cache[string]
					seen sync.Map // the kinds of events that made a Get, once each
				)
				obs := herd.ObserverFunc(func(e herd.Event) {
					if e.Key == "" || e.Kind == herd.EventHit || e.Kind == herd.EventMiss {
						return
					}
					if _, dup := seen.LoadOrStore(e.Kind, true); dup {
						return
					}
					_, _ = c.Get(context.Background(), e.Key, constLoader("from the observer"))
				})
				c = herd.New[string](failingWrites{mem}, herd.TTL(time.Hour), herd.WithLocker(mem, time.Second),
					herd.WithObserver(obs), herd.WithLogger(discard))
				defer c.Close(context.Background())
				held, err := mem.TryLock(context.Background(), "held", time.Second)
				if err != nil {
					t.Fatal(err)
				}
				defer func() { _ = held.Unlock(context.Background()) }()
				for _, k := range []string{"free", "held"} {
					if via == "Get" {
						_, err = c.Get(context.Background(), k, constLoader("v"))
					} else {
						_, err = c.GetMany(context.Background(), []string{k}, func(context.Context, []string) (map[string]string, error) {
							return map[string]string{k: "v"}, nil
						})
					}
					if err != nil {
						t.Fatalf("%s(%s): %v", via, k, err)
					}
				}
				synctest.Wait()
				kinds := []herd.EventKind{herd.EventLockWait, herd.EventStoreError}
				if via == "Get" {
					kinds = append(kinds, herd.EventLoad) // a batch's load events name no key
				}
				for _, k := range kinds {
					if _, ok := seen.Load(k); !ok {
						t.Errorf("the observer saw no %v event", k)
					}
				}
			})
		})
	}
}

// failingWrites is a store whose writes fail.
type failingWrites struct{ *memory.Store[string] }

var errWrite = errors.New("writes down")

func (failingWrites) SetIf(context.Context, string, store.Entry[string], store.Version) error {
	return errWrite
}

func (failingWrites) Set(context.Context, string, store.Entry[string]) error { return errWrite }

// A batch loader that calls runtime.Goexit fails every key of its call with
// ErrGoexit; nothing is cached and the keys load again.
func TestGetManyLoaderGoexit(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c, _ := newCache(t, herd.TTL(time.Hour))
		_, err := c.GetMany(context.Background(), []string{"a", "b"}, func(context.Context, []string) (map[string]string, error) {
			runtime.Goexit()
			return nil, nil
		})
		var kerrs herd.KeyErrors
		if !errors.As(err, &kerrs) || !errors.Is(kerrs["a"], flight.ErrGoexit) || !errors.Is(kerrs["b"], flight.ErrGoexit) {
			t.Fatalf("GetMany = %v, want ErrGoexit for both keys", err)
		}
		src := &keyCounter{}
		if got, err := c.GetMany(context.Background(), []string{"a", "b"}, src.batch); err != nil || got["a"] != "v:a" {
			t.Fatalf("GetMany after the Goexit = %v, %v", got, err)
		}
	})
}
