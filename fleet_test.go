package herd_test

import (
	"context"
	"errors"
	"math"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/herdcache/herd"
	"github.com/herdcache/herd/flight"
	"github.com/herdcache/herd/store"
	"github.com/herdcache/herd/store/memory"
)

// fleet builds n caches over one shared memory store, as n processes over
// one Redis or NATS would be; the store is closed when the test ends.
func fleet(t *testing.T, n int, opts ...herd.Option) ([]*herd.Cache[string], *memory.Store[string]) {
	t.Helper()
	mem := memory.New[string]()
	caches := make([]*herd.Cache[string], n)
	for i := range caches {
		caches[i] = herd.New[string](nopClose{mem}, append([]herd.Option{herd.WithLogger(discard)}, opts...)...)
	}
	t.Cleanup(func() {
		for _, c := range caches {
			_ = c.Close(context.Background())
		}
		_ = mem.Close(context.Background())
	})
	return caches, mem
}

// nopClose shares a memory store between caches: closing one cache does not
// close the store under the others. Its methods are the store's.
type nopClose struct{ *memory.Store[string] }

func (nopClose) Close(context.Context) error { return nil }

// A Set on instance B that lands while A loads the key wins on every
// instance; A's callers still get A's value, and A counts the conflict. The
// same for a Delete.
func TestFleetWriteDuringLoadWinsOnEveryInstance(t *testing.T) {
	for _, write := range []string{"Set", "Delete"} {
		t.Run(write, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				caches, _ := fleet(t, 3, herd.TTL(time.Hour))
				a, b := caches[0], caches[1]
				slow := &source{value: "old"}
				release := slow.block()
				got := make(chan string, 1)
				go func() {
					v, err := a.Get(context.Background(), "k", slow.load)
					if err != nil {
						t.Errorf("A's Get: %v", err)
					}
					got <- v
				}()
				synctest.Wait() // A's load is in flight
				var err error
				if write == "Set" {
					err = b.Set(context.Background(), "k", "new")
				} else {
					err = b.Delete(context.Background(), "k")
				}
				if err != nil {
					t.Fatal(err)
				}
				release()
				if v := <-got; v != "old:k" {
					t.Fatalf("A's caller got %q, want the value A loaded", v)
				}
				synctest.Wait()
				if st := a.Stats(); st.WriteConflicts != 1 {
					t.Fatalf("A's stats %+v, want 1 write conflict", st)
				}
				fresh := &source{value: "reloaded"}
				want := "new"
				if write == "Delete" {
					want = "reloaded:k"
				}
				for i, c := range caches {
					if v, err := c.Get(context.Background(), "k", fresh.load); err != nil || v != want {
						t.Fatalf("instance %d after B's %s: %q, %v; want %q", i, write, v, err, want)
					}
				}
			})
		})
	}
}

// A loader three times slower than the lock TTL: the holder keeps its lease,
// so one loader runs at a time across three instances, and every caller
// gets the one value.
func TestFleetSlowLoaderKeepsItsLease(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		mem := memory.New[string]()
		defer mem.Close(context.Background())
		var caches []*herd.Cache[string]
		for range 3 {
			caches = append(caches, herd.New[string](nopClose{mem}, herd.TTL(time.Hour),
				herd.WithLocker(mem, time.Second), herd.WithLogger(discard)))
		}
		var running, most, calls atomic.Int32
		load := func(context.Context, string) (string, error) {
			calls.Add(1)
			n := running.Add(1)
			for {
				m := most.Load()
				if n <= m || most.CompareAndSwap(m, n) {
					break
				}
			}
			time.Sleep(3 * time.Second)
			running.Add(-1)
			return "v", nil
		}
		var wg sync.WaitGroup
		for _, c := range caches {
			for range 50 {
				wg.Go(func() {
					ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
					defer cancel()
					if v, err := c.Get(ctx, "k", load); err != nil || v != "v" {
						t.Errorf("Get = %q, %v", v, err)
					}
				})
			}
		}
		wg.Wait()
		if m, n := most.Load(), calls.Load(); m != 1 || n != 1 {
			t.Fatalf("%d loaders at once, %d in all, across 3 instances with a loader 3x the lock TTL; want 1 and 1", m, n)
		}
		for _, c := range caches {
			_ = c.Close(context.Background())
		}
	})
}

// failingExtend is a locker whose Extend always fails, as a backend that
// stopped answering: leases end at their TTL whatever the holder does.
type failingExtend struct{ l *memory.Locker }

func (f failingExtend) TryLock(ctx context.Context, key string, ttl time.Duration) (store.Lock, error) {
	lk, err := f.l.TryLock(ctx, key, ttl)
	if err != nil {
		return nil, err
	}
	return extendFails{lk}, nil
}

type extendFails struct{ store.Lock }

func (extendFails) Extend(context.Context, time.Duration) error {
	return errors.New("backend unreachable")
}

// When the lease is lost all the same, a second loader runs, and the first
// one's late result does not overwrite the second's: the store never goes
// back to an older value.
func TestFleetLostLeaseNeverGoesBack(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		caches, mem := fleet(t, 2, herd.TTL(time.Hour), herd.WithLocker(failingExtend{&memory.Locker{}}, time.Second))
		a, b := caches[0], caches[1]
		first := make(chan string, 1)
		go func() {
			v, _ := a.Get(context.Background(), "k", func(context.Context, string) (string, error) {
				time.Sleep(5 * time.Second) // outlives its lease
				return "older", nil
			})
			first <- v
		}()
		time.Sleep(2 * time.Second) // A's lease has expired; B takes the lock
		v, err := b.Get(context.Background(), "k", func(context.Context, string) (string, error) {
			return "newer", nil
		})
		if err != nil || v != "newer" {
			t.Fatalf("B's Get = %q, %v", v, err)
		}
		synctest.Wait()
		if v := <-first; v != "older" {
			t.Fatalf("A's caller got %q", v)
		}
		synctest.Wait()
		if e, ok, _ := mem.Get(context.Background(), "k"); !ok || e.Value != "newer" {
			t.Fatalf("store holds %q after the late load, want the newer value", e.Value)
		}
		if st := a.Stats(); st.WriteConflicts != 1 {
			t.Fatalf("A's stats %+v, want its late write-back refused", st)
		}
	})
}

// hangingLocker hangs in the calls it is told to, until their context ends,
// as a lock server that stopped answering does.
type hangingLocker struct {
	l                       memory.Locker
	tryLock, extend, unlock atomic.Bool
}

func (h *hangingLocker) TryLock(ctx context.Context, key string, ttl time.Duration) (store.Lock, error) {
	if h.tryLock.Load() {
		<-ctx.Done()
		return nil, ctx.Err()
	}
	lk, err := h.l.TryLock(ctx, key, ttl)
	if err != nil {
		return nil, err
	}
	return hangingLock{lk, h}, nil
}

type hangingLock struct {
	store.Lock
	h *hangingLocker
}

func (l hangingLock) Extend(ctx context.Context, ttl time.Duration) error {
	if l.h.extend.Load() {
		<-ctx.Done()
		return ctx.Err()
	}
	return l.Lock.Extend(ctx, ttl)
}

func (l hangingLock) Unlock(ctx context.Context) error {
	if l.h.unlock.Load() {
		<-ctx.Done()
		return ctx.Err()
	}
	return l.Lock.Unlock(ctx)
}

// A locker whose TryLock, Extend or Unlock hangs costs a load, bounded by
// StoreTimeout, never an error or a stuck key; once the hang ends, the key
// works normally.
func TestFleetHangingLockerCostsALoad(t *testing.T) {
	for _, call := range []string{"TryLock", "Extend", "Unlock"} {
		t.Run(call, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				h := &hangingLocker{}
				mem := memory.New[string]()
				c := herd.New[string](mem, herd.TTL(time.Minute), herd.WithLocker(h, 3*time.Second),
					herd.StoreTimeout(500*time.Millisecond), herd.WithLogger(discard))
				defer c.Close(context.Background())
				switch call {
				case "TryLock":
					h.tryLock.Store(true)
				case "Extend":
					h.extend.Store(true)
				case "Unlock":
					h.unlock.Store(true)
				}
				load := func(context.Context, string) (string, error) {
					time.Sleep(2 * time.Second) // long enough to extend the lease
					return "v", nil
				}
				for i := range 3 {
					key := string(rune('a' + i))
					ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
					start := time.Now()
					v, err := c.Get(ctx, key, load)
					cancel()
					if err != nil || v != "v" {
						t.Fatalf("Get(%s) with a hanging %s = %q, %v; want the loaded value", key, call, v, err)
					}
					if took := time.Since(start); took > 2*time.Second+600*time.Millisecond {
						t.Fatalf("Get(%s) took %v: the hanging %s held back a value in hand", key, took, call)
					}
				}
				h.tryLock.Store(false)
				h.extend.Store(false)
				h.unlock.Store(false)
				time.Sleep(time.Minute) // every entry expired
				synctest.Wait()
				fresh := &source{value: "after"}
				if v, err := c.Get(context.Background(), "a", fresh.load); err != nil || v != "after:a" {
					t.Fatalf("after the hang: %q, %v", v, err)
				}
				if c.Stats().StoreErrors == 0 {
					t.Fatalf("the hanging %s was not counted as a store error", call)
				}
			})
		})
	}
}

// failingReads is a memory store whose reads fail once told to, as a
// server that died does.
type failingReads struct {
	*memory.Store[string]
	fail atomic.Bool
}

func (f *failingReads) Get(ctx context.Context, key string) (store.Entry[string], bool, error) {
	if f.fail.Load() {
		return store.Entry[string]{}, false, errors.New("connection refused")
	}
	return f.Store.Get(ctx, key)
}

// A caller waiting for another instance's value stops waiting and loads as
// soon as the store fails, rather than poll a dead server until the lock TTL.
func TestFleetWaiterLoadsWhenTheStoreFails(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		mem := &failingReads{Store: memory.New[string]()}
		c := herd.New[string](mem, herd.TTL(time.Minute), herd.WithLocker(mem.Store, time.Hour), herd.WithLogger(discard))
		defer c.Close(context.Background())
		holder, err := mem.TryLock(context.Background(), "k", time.Hour) // another instance loads
		if err != nil {
			t.Fatal(err)
		}
		defer func() { _ = holder.Unlock(context.Background()) }()
		done := make(chan error, 1)
		start := time.Now()
		go func() {
			_, err := c.Get(context.Background(), "k", (&source{value: "v"}).load)
			done <- err
		}()
		time.Sleep(time.Second) // waiting for the holder's value
		mem.fail.Store(true)
		if err := <-done; err != nil {
			t.Fatalf("Get after the store failed: %v", err)
		}
		if took := time.Since(start); took > 2*time.Second {
			t.Fatalf("waited %v after the store failed, want a load at once", took)
		}
	})
}

// Three instances, 300 callers each on one cold key: the loader runs once.
func TestFleetStampedeLoadsOnce(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		mem := memory.New[string]()
		defer mem.Close(context.Background())
		var caches []*herd.Cache[string]
		for range 3 {
			caches = append(caches, herd.New[string](nopClose{mem}, herd.TTL(time.Minute),
				herd.WithLocker(mem, 5*time.Second), herd.WithLogger(discard)))
		}
		src := &source{value: "v"}
		var wg sync.WaitGroup
		for _, c := range caches {
			for range 300 {
				wg.Go(func() {
					if v, err := c.Get(context.Background(), "k", src.load); err != nil || v != "v:k" {
						t.Errorf("Get = %q, %v", v, err)
					}
				})
			}
		}
		wg.Wait()
		if n := src.calls.Load(); n != 1 {
			t.Fatalf("%d loads across 3 instances, want 1", n)
		}
		for _, c := range caches {
			_ = c.Close(context.Background())
		}
	})
}

// A panic in an observer on a refresh worker is recovered and counted; the
// worker lives on and later refreshes still run.
func TestRegressionObserverPanicKillsProcess(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		src := &source{value: "v"}
		obs := herd.ObserverFunc(func(e herd.Event) {
			if e.Kind == herd.EventRefreshFailed || e.Kind == herd.EventLoad {
				panic("observer bug")
			}
		})
		c := herd.New[string](memory.New[string](), herd.RefreshAfter(time.Minute), herd.WithObserver(obs), herd.WithLogger(discard))
		defer c.Close(context.Background())
		mustGet(t, c, "k", src.load)
		src.set("", errors.New("source down"))
		time.Sleep(2 * time.Minute)
		mustGet(t, c, "k", src.load) // stale: a refresh that fails
		synctest.Wait()
		src.set("w", nil)
		time.Sleep(time.Hour) // past the backoff
		mustGet(t, c, "k", src.load)
		synctest.Wait()
		if r := mustGet(t, c, "k", src.load); r.Value != "w:k" {
			t.Fatalf("after a panicking observer the refresh did not run: %+v", r)
		}
		if st := c.Stats(); st.CallbackPanics < 3 {
			t.Fatalf("stats %+v, want the observer's panics counted", st)
		}
	})
}

// A nil context panics with a clear message before any lock is taken; a
// caller that recovers (as net/http does) leaves the cache working.
func TestRegressionNilContextWedgesCache(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c := herd.New[string](memory.New[string](), herd.RefreshAfter(time.Minute))
		src := &source{value: "v"}
		mustGet(t, c, "stale", src.load)
		time.Sleep(2 * time.Minute)
		for _, call := range []func(){
			func() { _, _ = c.Get(nil, "stale", src.load) }, //nolint:staticcheck // the nil context is the point
			func() { _ = c.Set(nil, "k", "v") },             //nolint:staticcheck // the nil context is the point
			func() { _ = c.Delete(nil, "k") },               //nolint:staticcheck // the nil context is the point
		} {
			func() {
				defer func() {
					if r := recover(); r != "herd: nil Context" {
						t.Fatalf("recovered %v, want the nil Context panic", r)
					}
				}()
				call()
			}()
		}
		mustGet(t, c, "other", src.load)
		if r := mustGet(t, c, "stale", src.load); r.Status != herd.StatusStale {
			t.Fatalf("%+v", r)
		}
		if err := c.Close(context.Background()); err != nil {
			t.Fatal(err)
		}
	})
}

// QueueSize(math.MaxInt) used to pass validation and panic on the first
// stale read, under the refresher's mutex.
func TestRegressionHugeQueueSizeWedgesCache(t *testing.T) {
	for name, opt := range map[string]herd.Option{
		"QueueSize": herd.QueueSize(math.MaxInt),
		"Workers":   herd.Workers(math.MaxInt),
	} {
		t.Run(name, func(t *testing.T) {
			mem := memory.New[string]()
			defer mem.Close(context.Background())
			defer func() {
				if r, _ := recover().(string); r == "" || !contains(r, name) {
					t.Fatalf("New panicked with %v, want a message naming %s", r, name)
				}
			}()
			herd.New[string](mem, opt)
		})
	}
}

func contains(s, sub string) bool {
	for i := 0; i+len(sub) <= len(s); i++ {
		if s[i:i+len(sub)] == sub {
			return true
		}
	}
	return false
}

// RefreshBackoff(min, math.MaxInt64) used to overflow after about 35
// failures, and callers got a *flight.PanicError instead of the loader's
// error.
func TestRegressionBackoffOverflow(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c := herd.New[string](memory.New[string](), herd.RefreshBackoff(time.Millisecond, math.MaxInt64), herd.WithLogger(discard))
		defer c.Close(context.Background())
		boom := errors.New("source down")
		for i := range 80 {
			_, err := c.Get(context.Background(), "k", func(context.Context, string) (string, error) { return "", boom })
			var pe *flight.PanicError
			if errors.As(err, &pe) || !errors.Is(err, boom) {
				t.Fatalf("failure %d: %v, want the loader's error", i+1, err)
			}
		}
	})
}

// hangingReads is a memory store whose reads hang until their context ends,
// as a server that stopped answering does.
type hangingReads struct{ store.Store[string] }

func (h hangingReads) Close(ctx context.Context) error {
	return h.Store.(*memory.Store[string]).Close(ctx)
}

func (h hangingReads) Get(ctx context.Context, _ string) (store.Entry[string], bool, error) {
	<-ctx.Done()
	return store.Entry[string]{}, false, ctx.Err()
}

// A store whose reads hang costs the caller a load after StoreTimeout, not
// its whole deadline.
func TestRegressionHungStoreReadCostsTheDeadline(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c := herd.New[string](hangingReads{memory.New[string]()}, herd.StoreTimeout(100*time.Millisecond), herd.WithLogger(discard))
		defer c.Close(context.Background())
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		start := time.Now()
		v, err := c.Get(ctx, "k", (&source{value: "v"}).load)
		if err != nil || v != "v:k" {
			t.Fatalf("Get over a hung store = %q, %v; want the loaded value", v, err)
		}
		if took := time.Since(start); took != 100*time.Millisecond {
			t.Fatalf("Get took %v, want the 100ms StoreTimeout", took)
		}
		if c.Stats().StoreErrors == 0 {
			t.Fatal("the hung read was not counted")
		}
	})
}
