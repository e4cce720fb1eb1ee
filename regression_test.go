package herd_test

import (
	"context"
	"errors"
	"math"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/herdcache/herd"
	"github.com/herdcache/herd/store"
	"github.com/herdcache/herd/store/memory"
	"github.com/herdcache/herd/store/single"
)

// Fetch's Age must be the time since StoredAt. For an entry with neither TTL
// nor RefreshAfter, on a store that is not a store.SharedGetter (single,
// Redis, NATS), the hit path skips the clock and reports an age of 0.
func TestRegressionAgeWithoutTTL(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c := herd.New[string](single.New[string](), herd.WithLogger(discard))
		defer func() { _ = c.Close(context.Background()) }()
		src := &source{value: "v"}
		mustGet(t, c, "k", src.load)
		time.Sleep(5 * time.Minute)
		r := mustGet(t, c, "k", src.load)
		if r.Status != herd.StatusFresh || r.Age() != 5*time.Minute {
			t.Fatalf("got %v aged %v, want fresh aged 5m (StoredAt %v, now %v)", r.Status, r.Age(), r.StoredAt, time.Now())
		}
	})
}

// Invariant 5: a failed background refresh backs off. A refresh whose loader
// panics (or calls runtime.Goexit) is retried on every stale read instead.
func TestRegressionPanickingRefreshDoesNotBackOff(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c, _ := newCache(t, herd.TTL(24*time.Hour), herd.RefreshAfter(time.Minute),
			herd.RefreshBackoff(time.Second, time.Minute))
		var panicking atomic.Bool
		var calls atomic.Int32
		load := func(context.Context, string) (string, error) {
			calls.Add(1)
			if panicking.Load() {
				panic("boom")
			}
			return "v", nil
		}
		mustGet(t, c, "k", load)
		time.Sleep(2 * time.Minute)
		panicking.Store(true)
		before := calls.Load()
		// 100 stale reads over 10 seconds: a backoff of 1s, 2s, 4s allows ~4 tries.
		for range 100 {
			if r := mustGet(t, c, "k", load); r.Value != "v" {
				t.Fatalf("%+v", r)
			}
			synctest.Wait()
			time.Sleep(100 * time.Millisecond)
		}
		if n := calls.Load() - before; n > 10 {
			t.Fatalf("%d refresh attempts in 10s of reads with a panicking loader, want backoff (<= 10)", n)
		}
	})
}

// Stats.Loads counts loader calls and LoadErrors the failed ones; a loader
// that panics is neither counted nor reported to the observer.
func TestRegressionPanicNotCountedAsLoad(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var loadEvents atomic.Int32
		obs := herd.ObserverFunc(func(e herd.Event) {
			if e.Kind == herd.EventLoad {
				loadEvents.Add(1)
			}
		})
		c, _ := newCache(t, herd.WithObserver(obs))
		_, err := c.Get(context.Background(), "k", func(context.Context, string) (string, error) { panic("boom") })
		if err == nil {
			t.Fatal("no error from a panicking loader")
		}
		synctest.Wait() // the load's events follow its outcome
		st := c.Stats()
		if st.Loads != 1 || st.LoadErrors != 1 || loadEvents.Load() != 1 {
			t.Fatalf("after one panicking load: Loads %d, LoadErrors %d, EventLoad %d; want 1, 1, 1",
				st.Loads, st.LoadErrors, loadEvents.Load())
		}
	})
}

// Invariant 3: a loader's runtime.Goexit reaches every waiter as an error,
// as a panic does. With an expired entry under StaleIfError, a panic is an
// error but a Goexit is silently turned into the stale value.
func TestRegressionGoexitServedAsStale(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c, _ := newCache(t, herd.TTL(time.Minute), herd.StaleIfError(time.Hour))
		src := &source{value: "v"}
		mustGet(t, c, "p", src.load)
		mustGet(t, c, "g", src.load)
		time.Sleep(2 * time.Minute)
		_, perr := c.Fetch(context.Background(), "p", func(context.Context, string) (string, error) { panic("boom") })
		r, gerr := c.Fetch(context.Background(), "g", func(context.Context, string) (string, error) {
			runtime.Goexit()
			return "", nil
		})
		if perr == nil {
			t.Fatal("panic: no error")
		}
		if gerr == nil {
			t.Fatalf("Goexit: got %+v with no error; a panic gave %v", r, perr)
		}
	})
}

// gatedLocker blocks TryLock while its gate is set, as a remote lock does for
// a network round trip.
type gatedLocker struct {
	locker *memory.Locker
	mu     sync.Mutex
	gate   chan struct{}
}

func (g *gatedLocker) TryLock(ctx context.Context, key string, ttl time.Duration) (store.Lock, error) {
	g.mu.Lock()
	gate := g.gate
	g.mu.Unlock()
	if gate != nil {
		<-gate
	}
	return g.locker.TryLock(ctx, key, ttl)
}

// Invariant 1 with a Locker: a foreground load of a key another process holds
// waits for the holder's value. A foreground Get that joins a background
// refresh of the key instead gets the refresh's internal errLockedElsewhere.
func TestRegressionForegroundJoinsSkippedRefresh(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		mem := memory.New[string]()
		lk := &gatedLocker{locker: &memory.Locker{}}
		c := herd.New[string](mem, herd.TTL(2*time.Minute), herd.RefreshAfter(time.Minute),
			herd.WithLocker(lk, time.Minute), herd.WithLogger(discard))
		defer func() { _ = c.Close(context.Background()) }()
		src := &source{value: "v"}
		mustGet(t, c, "k", src.load)

		time.Sleep(90 * time.Second) // stale
		other, err := lk.locker.TryLock(context.Background(), "k", time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		gate := make(chan struct{})
		lk.mu.Lock()
		lk.gate = gate
		lk.mu.Unlock()
		mustGet(t, c, "k", src.load) // queues a refresh, which blocks in TryLock
		synctest.Wait()

		time.Sleep(time.Minute) // expired
		errs := make(chan error, 1)
		go func() {
			_, err := c.Get(context.Background(), "k", src.load)
			errs <- err
		}()
		synctest.Wait() // the foreground Get joined the refresh's flight call
		close(gate)     // TryLock returns ErrLocked: the other process loads
		synctest.Wait()
		// The other process stores its value and unlocks.
		now := time.Now()
		_ = mem.Set(context.Background(), "k", store.Entry[string]{
			Value: "theirs", StoredAt: now,
			ExpiresAt: now.Add(2 * time.Minute), KeepUntil: now.Add(2 * time.Minute),
		})
		_ = other.Unlock(context.Background())
		if err := <-errs; err != nil {
			t.Fatalf("foreground Get of a key locked elsewhere: %v; want it to wait for the holder", err)
		}
	})
}

// blockingStore is a memory store whose Set blocks while blockSets is on,
// until released or its context ends, as a hung network store does.
type blockingStore struct {
	*memory.Store[string]
	blockSets atomic.Bool
	release   chan struct{}
	sets      atomic.Int32
}

func (s *blockingStore) Set(ctx context.Context, key string, e store.Entry[string]) error {
	s.sets.Add(1)
	if s.blockSets.Load() {
		select {
		case <-s.release:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return s.Store.Set(ctx, key, e)
}

// SetIf blocks as Set does: it is how the cache writes a load back.
func (s *blockingStore) SetIf(ctx context.Context, key string, e store.Entry[string], v store.Version) error {
	s.sets.Add(1)
	if s.blockSets.Load() {
		select {
		case <-s.release:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return s.Store.SetIf(ctx, key, e, v)
}

// Invariant 7: the caller is never blocked past its context. A Set that lands
// while a load of the key writes its result waits on that write (a
// sync.Mutex in writeGuard.supersede), whatever its own context says. A
// goroutine blocked on a sync.Mutex is not durably blocked, so a synctest
// bubble cannot advance its clock past it: this test runs outside a bubble,
// with a Set whose context is already cancelled and a watchdog.
func TestRegressionSetBlockedPastContext(t *testing.T) {
	s := &blockingStore{Store: memory.New[string](), release: make(chan struct{})}
	c := herd.New[string](s, herd.WithLogger(discard))
	defer func() { _ = c.Close(context.Background()) }()
	defer close(s.release)
	s.blockSets.Store(true)
	go func() { _, _ = c.Get(context.Background(), "k", (&source{value: "v"}).load) }()
	for s.sets.Load() == 0 { // the load's store write hangs
		runtime.Gosched()
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	done := make(chan error, 1)
	go func() { done <- c.Set(ctx, "k", "mine") }()
	select {
	case err := <-done:
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("Set with a cancelled context: %v, want context.Canceled", err)
		}
	case <-time.After(5 * time.Second): // watchdog only
		t.Fatal("Set with a cancelled context still blocked after 5s, behind a load's hung store write")
	}
}

// ctxStore is a memory store whose writes take latency and honour their
// context, as a network store's do.
type ctxStore struct {
	*memory.Store[string]
	latency time.Duration
	errs    atomic.Int32
}

func (s *ctxStore) Set(ctx context.Context, key string, e store.Entry[string]) error {
	select {
	case <-time.After(s.latency):
	case <-ctx.Done():
		s.errs.Add(1)
		return ctx.Err()
	}
	return s.Store.Set(ctx, key, e)
}

func (s *ctxStore) SetIf(ctx context.Context, key string, e store.Entry[string], v store.Version) error {
	select {
	case <-time.After(s.latency):
	case <-ctx.Done():
		s.errs.Add(1)
		return ctx.Err()
	}
	return s.Store.SetIf(ctx, key, e, v)
}

// LoadTimeout bounds the load. The store write of a successful load runs on
// the same context, so a loader that succeeds close to the timeout has its
// value thrown away and the next Get loads again.
func TestRegressionLoadTimeoutLosesWrite(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := &ctxStore{Store: memory.New[string](), latency: 200 * time.Millisecond}
		c := herd.New[string](s, herd.TTL(time.Hour), herd.LoadTimeout(3*time.Second), herd.WithLogger(discard))
		defer func() { _ = c.Close(context.Background()) }()
		var calls atomic.Int32
		load := func(ctx context.Context, key string) (string, error) {
			calls.Add(1)
			select {
			case <-time.After(2900 * time.Millisecond): // within the 3s timeout
				return "v", nil
			case <-ctx.Done():
				return "", ctx.Err()
			}
		}
		for range 2 {
			if v, err := c.Get(context.Background(), "k", load); err != nil || v != "v" {
				t.Fatalf("Get = %q, %v", v, err)
			}
		}
		if n := calls.Load(); n != 1 {
			t.Fatalf("%d loads (%d store writes cut by the LoadTimeout), want 1: the successful load was not cached", n, s.errs.Load())
		}
	})
}

// Invariant 7: a store that fails costs the caller a load, not an error. A
// store write that hangs (the load's context is detached and, without
// LoadTimeout, has no deadline) keeps the key's flight call open: the loader
// returned at once, yet every caller of the key times out.
func TestRegressionBlockedStoreWriteHoldsKey(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := &blockingStore{Store: memory.New[string](), release: make(chan struct{})}
		c := herd.New[string](s, herd.WithLogger(discard))
		s.blockSets.Store(true)
		var calls atomic.Int32
		load := func(context.Context, string) (string, error) { calls.Add(1); return "v", nil }
		var errs []error
		for range 3 {
			ctx, cancel := context.WithTimeout(context.Background(), time.Second)
			_, err := c.Get(ctx, "k", load)
			cancel()
			errs = append(errs, err)
		}
		close(s.release)
		_ = c.Close(context.Background())
		for _, err := range errs {
			if err != nil {
				t.Fatalf("Gets over a store whose writes hang: %v (loader ran %d times, returned at once)", errs, calls.Load())
			}
		}
	})
}

// Delete wins over a load in flight: its result is not stored. But a Get that
// starts after Delete returned joins that same load and gets the value it
// read before the Delete: invalidate-after-update returns the old value.
func TestRegressionGetAfterDeleteGetsPreDeleteValue(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c, _ := newCache(t, herd.TTL(time.Hour))
		var mu sync.Mutex
		db := "old"
		gate := make(chan struct{})
		load := func(context.Context, string) (string, error) {
			mu.Lock()
			v := db // the query runs now...
			mu.Unlock()
			<-gate // ...and its answer arrives later
			return v, nil
		}
		go func() { _, _ = c.Get(context.Background(), "k", load) }()
		synctest.Wait()

		mu.Lock()
		db = "new" // update the source of truth, then invalidate
		mu.Unlock()
		if err := c.Delete(context.Background(), "k"); err != nil {
			t.Fatal(err)
		}
		got := make(chan string, 1)
		go func() {
			v, _ := c.Get(context.Background(), "k", load)
			got <- v
		}()
		synctest.Wait()
		close(gate)
		if v := <-got; v != "new" {
			t.Fatalf("Get after Delete returned %q, read from the source before the Delete; want %q", v, "new")
		}
	})
}

// TTL(math.MaxInt64) passes validation, but newEntry scales it through
// float64, which overflows to a negative duration: every entry is born
// expired (and dropped by the store), so every Get loads.
func TestRegressionHugeTTLOverflows(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c, _ := newCache(t, herd.TTL(math.MaxInt64))
		src := &source{value: "v"}
		mustGet(t, c, "k", src.load)
		synctest.Wait() // the load's store write lands
		if r := mustGet(t, c, "k", src.load); r.Status != herd.StatusFresh {
			t.Fatalf("second Get with TTL(math.MaxInt64): %v, want fresh (%d loads)", r.Status, src.calls.Load())
		}
	})
}

// SetTTL(ctx, 0) means "return the value but do not cache it". In a
// background refresh nobody receives the value, and the old entry is left in
// place: the cache keeps serving the value the source has replaced, and
// reloads (with no backoff, as the load succeeded) on every stale read.
func TestRegressionSetTTLZeroRefreshKeepsOldValue(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c, _ := newCache(t, herd.TTL(time.Hour), herd.RefreshAfter(time.Minute))
		mustGet(t, c, "k", func(context.Context, string) (string, error) { return "v1", nil })
		time.Sleep(2 * time.Minute)
		var calls atomic.Int32
		uncacheable := func(ctx context.Context, _ string) (string, error) {
			calls.Add(1)
			herd.SetTTL(ctx, 0) // Cache-Control: no-store
			return "v2", nil
		}
		var served []string
		for range 10 {
			served = append(served, mustGet(t, c, "k", uncacheable).Value)
			synctest.Wait()
		}
		if served[len(served)-1] == "v1" {
			t.Fatalf("served %v with %d loads of v2: the replaced value is still served, and reloaded on every read", served, calls.Load())
		}
	})
}

var errNoRow = errors.New("no such row")

// Every error Get returns should wrap its cause. For "not found", the
// loader's own error is replaced by a new one that wraps only ErrNotFound.
func TestRegressionNotFoundDropsLoaderError(t *testing.T) {
	c, _ := newCache(t)
	_, err := c.Get(context.Background(), "k", func(context.Context, string) (string, error) {
		return "", errors.Join(herd.ErrNotFound, errNoRow)
	})
	if !errors.Is(err, herd.ErrNotFound) || !errors.Is(err, errNoRow) {
		t.Fatalf("err = %v: errors.Is(ErrNotFound) %v, errors.Is(loader's errNoRow) %v; want both",
			err, errors.Is(err, herd.ErrNotFound), errors.Is(err, errNoRow))
	}
}

// A load's store write keeps the key's call in flight without holding its
// callers: a Get that arrives while the write hangs gets the loaded value at
// once and starts no second load.
func TestRegressionNoSecondLoadWhileTheWriteLands(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := &blockingStore{Store: memory.New[string](), release: make(chan struct{})}
		c := herd.New[string](s, herd.StoreTimeout(time.Minute), herd.WithLogger(discard))
		defer func() { _ = c.Close(context.Background()) }()
		s.blockSets.Store(true)
		src := &source{value: "v"}
		for range 3 {
			if v, err := c.Get(context.Background(), "k", src.load); err != nil || v != "v:k" {
				t.Fatalf("Get while the write hangs = %q, %v", v, err)
			}
		}
		if n := src.calls.Load(); n != 1 {
			t.Fatalf("%d loads while the first load's write was in flight, want 1", n)
		}
		close(s.release)
		synctest.Wait()
		if r := mustGet(t, c, "k", src.load); r.Status != herd.StatusFresh {
			t.Fatalf("after the write landed: %+v", r)
		}
	})
}

// A process that missed the store, then won the lock after the previous
// holder had stored its value and unlocked, loaded again. It now reads the
// store once more after winning the lock.
func TestRegressionLockWinnerRereadsTheStore(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		mem := memory.New[string]()
		lk := &gatedLocker{locker: &memory.Locker{}}
		c := herd.New[string](mem, herd.TTL(time.Minute), herd.WithLocker(lk, time.Minute), herd.WithLogger(discard))
		defer func() { _ = c.Close(context.Background()) }()
		gate := make(chan struct{})
		lk.mu.Lock()
		lk.gate = gate
		lk.mu.Unlock()
		var calls atomic.Int32
		got := make(chan string, 1)
		go func() {
			v, _ := c.Get(context.Background(), "k", func(context.Context, string) (string, error) {
				calls.Add(1)
				return "mine", nil
			})
			got <- v
		}()
		synctest.Wait() // missed the store, now waiting in TryLock
		// Meanwhile another process loaded the key, stored it and unlocked.
		now := time.Now()
		_ = mem.Set(context.Background(), "k", store.Entry[string]{
			Value: "theirs", StoredAt: now,
			ExpiresAt: now.Add(time.Minute), KeepUntil: now.Add(time.Minute),
		})
		close(gate)
		if v := <-got; v != "theirs" || calls.Load() != 0 {
			t.Fatalf("got %q after %d loads; want the other process's value and no load", v, calls.Load())
		}
	})
}

// mapStore is a plain store.Store: no versions, not in-process. Its Set
// refuses the loads' values ("L…") while fail is set, and waits for gate,
// when there is one, before storing a Set's ("S…").
type mapStore struct {
	mu   sync.Mutex
	m    map[string]store.Entry[string]
	fail atomic.Bool
	gate chan struct{}
}

func (s *mapStore) Get(_ context.Context, k string) (store.Entry[string], bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	e, ok := s.m[k]
	return e, ok, nil
}

func (s *mapStore) Set(_ context.Context, k string, e store.Entry[string]) error {
	if s.fail.Load() && !strings.HasPrefix(e.Value, "S") {
		return errors.New("write-back refused")
	}
	if strings.HasPrefix(e.Value, "S") && s.gate != nil {
		<-s.gate
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.m == nil {
		s.m = map[string]store.Entry[string]{}
	}
	s.m[k] = e
	return nil
}

func (s *mapStore) Delete(_ context.Context, k string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.m, k)
	return nil
}

// An observer that Sets the key of a failed write-back returns at once: the
// write-back's events come after its write is finished, which a Set waits
// for.
func TestRegressionObserverSetDuringWriteBack(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := &mapStore{}
		s.fail.Store(true)
		var c *herd.Cache[string]
		setErr := make(chan error, 1)
		var once atomic.Bool
		obs := herd.ObserverFunc(func(e herd.Event) {
			if e.Kind == herd.EventStoreError && e.Key == "k" && once.CompareAndSwap(false, true) {
				setErr <- c.Set(context.Background(), "k", "S-from-observer")
			}
		})
		c = herd.New[string](s, herd.TTL(time.Minute), herd.WithLogger(discard), herd.WithObserver(obs))
		defer func() { _ = c.Close(context.Background()) }()
		if _, err := c.Get(context.Background(), "k", func(context.Context, string) (string, error) { return "L", nil }); err != nil {
			t.Fatal(err)
		}
		synctest.Wait()
		select {
		case err := <-setErr:
			if err != nil {
				t.Fatalf("the observer's Set: %v", err)
			}
		default:
			t.Fatal("the observer's Set waits for the write-back that called the observer")
		}
	})
}

// Over a store without versions, a load that begins while a Set is writing
// to the store does not write over the Set when it ends later.
func TestRegressionLoadBegunDuringASetsWrite(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := &mapStore{gate: make(chan struct{})}
		c := herd.New[string](s, herd.TTL(time.Hour), herd.WithLogger(discard))
		defer func() { _ = c.Close(context.Background()) }()
		ctx := context.Background()
		setDone := make(chan error)
		go func() { setDone <- c.Set(ctx, "k", "S-new") }()
		synctest.Wait() // the Set is writing
		release := make(chan struct{})
		go func() {
			_, _ = c.Get(ctx, "k", func(context.Context, string) (string, error) {
				<-release
				return "L-old", nil
			})
		}()
		synctest.Wait() // the load is in flight
		close(s.gate)   // the Set lands
		if err := <-setDone; err != nil {
			t.Fatal(err)
		}
		close(release)
		synctest.Wait()
		if e, _, _ := s.Get(ctx, "k"); e.Value != "S-new" {
			t.Fatalf("the store holds %q after Set(S-new) returned while a load was in flight", e.Value)
		}
	})
}

// gatedWrites is a mapStore whose writes of the loads' values ("L…") wait
// for gate, when there is one.
type gatedWrites struct {
	mapStore
	gate atomic.Pointer[chan struct{}]
}

func (s *gatedWrites) Set(ctx context.Context, k string, e store.Entry[string]) error {
	if g := s.gate.Load(); g != nil && strings.HasPrefix(e.Value, "L") {
		select {
		case <-*g:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return s.mapStore.Set(ctx, k, e)
}

// Over a remote store too, a refresh keeps its key until its value is in
// the store: a stale read meanwhile does not queue a second refresh.
func TestRegressionRemoteRefreshHoldsItsKeyUntilStored(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := &gatedWrites{}
		c := herd.New[string](s, herd.WithLogger(discard), herd.TTL(time.Hour), herd.RefreshAfter(time.Minute),
			herd.Workers(1), herd.StoreTimeout(time.Hour))
		defer func() { _ = c.Close(context.Background()) }()
		var calls atomic.Int32
		load := func(context.Context, string) (string, error) { return "L" + strconv.Itoa(int(calls.Add(1))), nil }
		mustGet(t, c, "k", load)
		synctest.Wait()
		time.Sleep(2 * time.Minute)
		gate := make(chan struct{})
		s.gate.Store(&gate)
		mustGet(t, c, "k", load) // stale: queues the refresh, whose write hangs
		synctest.Wait()
		mustGet(t, c, "k", load)
		synctest.Wait()
		st := c.Stats()
		close(gate)
		synctest.Wait()
		if st.RefreshesQueued != 1 || calls.Load() != 2 {
			t.Fatalf("%d refreshes queued, %d loads while the refresh wrote its value; want 1 and 2", st.RefreshesQueued, calls.Load())
		}
	})
}

// A nil loader is a programming error: it panics at the call, with a message
// naming it, on a cached key as on a cold one, rather than surface as a
// PanicError of the first miss only.
func TestRegressionNilLoaderPanicsAtTheCall(t *testing.T) {
	c, _ := newCache(t)
	ctx := context.Background()
	if _, err := c.Get(ctx, "warm", constLoader("v")); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, want string
		call       func()
	}{
		{"Get cold", "herd: Get needs a loader, got nil", func() { _, _ = c.Get(ctx, "cold", nil) }},
		{"Get warm", "herd: Get needs a loader, got nil", func() { _, _ = c.Get(ctx, "warm", nil) }},
		{"Fetch warm", "herd: Fetch needs a loader, got nil", func() { _, _ = c.Fetch(ctx, "warm", nil) }},
		{"GetMany warm", "herd: GetMany needs a batch loader, got nil", func() { _, _ = c.GetMany(ctx, []string{"warm"}, nil) }},
		{"FetchMany", "herd: FetchMany needs a batch loader, got nil", func() { _, _ = c.FetchMany(ctx, nil, nil) }},
		{"Batch", "herd: Batch needs a batch loader, got nil", func() { herd.Batch[string](nil) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			defer func() {
				if r := recover(); r != tc.want {
					t.Fatalf("panic %v, want %q", r, tc.want)
				}
			}()
			tc.call()
		})
	}
}
