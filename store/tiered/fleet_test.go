package tiered_test

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"go.uber.org/goleak"

	"github.com/herdcache/herd"
	"github.com/herdcache/herd/store"
	"github.com/herdcache/herd/store/memory"
	"github.com/herdcache/herd/store/tiered"
)

// farStore is the far tier of the tests: a memory store whose change
// stream can be stalled without saying so, can be made to report a Change
// with All set, and whose Get of a key can be held once until a change of
// that key has been delivered to a watch (a GetVersions too).
type farStore struct {
	*memory.Store[int]

	swallow atomic.Bool // drop every change: a stalled stream
	broken  atomic.Bool // every read and write fails: an unreachable server

	mu      sync.Mutex
	fns     []func(store.Change)
	holds   map[string]chan struct{} // key (or "*" for All) -> closed once delivered
	reading chan string              // a held Get reports its key here once it has read

	getManyKeys atomic.Int64 // keys asked of GetMany
	getManys    atomic.Int64 // calls of GetMany

	afterSet atomic.Pointer[func(key string)] // runs once, after a Set wrote, before it returns
}

func newFar() *farStore {
	return &farStore{Store: memory.New[int](), holds: make(map[string]chan struct{}), reading: make(chan string, 1)}
}

func (f *farStore) Watch(ctx context.Context, fn func(store.Change)) (store.Watch, error) {
	handle := func(c store.Change) {
		fn(c)
		if c.All {
			f.release("*")
		} else {
			f.release(c.Key)
		}
	}
	f.mu.Lock()
	f.fns = append(f.fns, handle)
	f.mu.Unlock()
	return f.Store.Watch(ctx, func(c store.Change) {
		if !f.swallow.Load() {
			handle(c)
		}
	})
}

// report delivers c (a Down, Up, Gap or All) to every watch, as a stream
// that lost its connection does, even while changes are swallowed.
func (f *farStore) report(c store.Change) {
	f.mu.Lock()
	fns := slices.Clone(f.fns)
	f.mu.Unlock()
	for _, fn := range fns {
		fn(c)
	}
}

// reportAll reports a Change with All set to every watch.
func (f *farStore) reportAll() { f.report(store.Change{All: true}) }

// unseen runs do, which must succeed, with the stream losing the changes
// it makes, and waits (in a synctest bubble) until they are lost.
func (f *farStore) unseen(t *testing.T, do func() error) {
	t.Helper()
	f.swallow.Store(true)
	if err := do(); err != nil {
		t.Fatal(err)
	}
	synctest.Wait()
	f.swallow.Store(false)
}

// release lets a Get held by holdGet(key) return.
func (f *farStore) release(key string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if ch, ok := f.holds[key]; ok {
		close(ch)
		delete(f.holds, key)
	}
}

// holdGet makes the next Get of key, once it has read the far value, wait
// until a change of key (or, for "*", a Change with All set) has been
// delivered to a watch and handled.
func (f *farStore) holdGet(key string) {
	f.mu.Lock()
	f.holds[key] = make(chan struct{})
	f.mu.Unlock()
}

// errBroken is the error of every call to a broken far store.
var errBroken = fmt.Errorf("far store unreachable: %w", store.ErrUnavailable)

func (f *farStore) Set(ctx context.Context, key string, e store.Entry[int]) error {
	if f.broken.Load() {
		return errBroken
	}
	err := f.Store.Set(ctx, key, e)
	if h := f.afterSet.Swap(nil); h != nil {
		(*h)(key)
	}
	return err
}

func (f *farStore) SetVersioned(ctx context.Context, key string, e store.Entry[int]) (store.Version, error) {
	if f.broken.Load() {
		return 0, errBroken
	}
	v, err := f.Store.SetVersioned(ctx, key, e)
	if h := f.afterSet.Swap(nil); h != nil {
		(*h)(key)
	}
	return v, err
}

func (f *farStore) SetIfVersioned(ctx context.Context, key string, e store.Entry[int], v store.Version) (store.Version, error) {
	if f.broken.Load() {
		return 0, errBroken
	}
	return f.Store.SetIfVersioned(ctx, key, e, v)
}

func (f *farStore) Get(ctx context.Context, key string) (store.Entry[int], bool, error) {
	if f.broken.Load() {
		return store.Entry[int]{}, false, errBroken
	}
	e, ok, err := f.Store.Get(ctx, key)
	f.wait(key)
	return e, ok, err
}

// GetVersion is held as Get is.
func (f *farStore) GetVersion(ctx context.Context, key string) (store.Entry[int], store.Version, bool, error) {
	if f.broken.Load() {
		return store.Entry[int]{}, 0, false, errBroken
	}
	e, v, ok, err := f.Store.GetVersion(ctx, key)
	f.wait(key)
	return e, v, ok, err
}

// GetVersions is held as Get is, after reading every key, by the hold of
// any of them.
func (f *farStore) GetVersions(ctx context.Context, keys []string) []store.VersionedRead[int] {
	rs := f.Store.GetVersions(ctx, keys)
	for _, k := range keys {
		f.wait(k)
	}
	return rs
}

// wait waits, once a read of key has read, while holdGet holds it.
func (f *farStore) wait(key string) {
	f.mu.Lock()
	ch, held := f.holds[key]
	if !held {
		ch, held = f.holds["*"]
		key = "*"
	}
	f.mu.Unlock()
	if held {
		f.reading <- key
		<-ch
	}
}

func (f *farStore) GetMany(ctx context.Context, keys []string) (map[string]store.Entry[int], error) {
	f.getManys.Add(1)
	f.getManyKeys.Add(int64(len(keys)))
	if f.broken.Load() {
		return map[string]store.Entry[int]{}, errBroken
	}
	return f.Store.GetMany(ctx, keys)
}

// fleet returns n tiered instances over f, closed, with f, at the end of
// the test.
func fleet(t *testing.T, f *farStore, n int, opts ...tiered.Option) []*tiered.VersionedStore[int] {
	t.Helper()
	t.Cleanup(func() {
		if err := f.Close(context.Background()); err != nil {
			t.Error(err)
		}
	})
	out := make([]*tiered.VersionedStore[int], n)
	for i := range out {
		s, err := tiered.NewVersioned[int](f, opts...)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			if err := s.Close(context.Background()); err != nil {
				t.Error(err)
			}
		})
		out[i] = s
	}
	return out
}

func value(t *testing.T, s store.Store[int], key string) (int, bool) {
	t.Helper()
	e, ok, err := s.Get(context.Background(), key)
	if err != nil {
		t.Fatalf("Get(%q): %v", key, err)
	}
	return e.Value, ok
}

func mustValue(t *testing.T, s store.Store[int], key string, want int) {
	t.Helper()
	got, ok := value(t, s, key)
	if !ok || got != want {
		t.Fatalf("Get(%q) = %d, %v; want %d", key, got, ok, want)
	}
}

// writeBack sets the keys "0" to "9" in turn to 0, 1, ... n-1 through s,
// and reads each write back at once; every waitEvery-th write (the first
// included) has its echo delivered before its read, the others not.
func writeBack(t *testing.T, s store.Store[int], n, waitEvery int) {
	t.Helper()
	ctx := context.Background()
	for i := range n {
		k := fmt.Sprint(i % 10)
		if err := s.Set(ctx, k, store.Entry[int]{Value: i}); err != nil {
			t.Fatal(err)
		}
		if i%waitEvery == 0 {
			synctest.Wait()
		}
		mustValue(t, s, k, i)
	}
	synctest.Wait()
}

// A Set on one instance reaches the near tiers of the two others: once the
// change is delivered, none of them reads the old value.
func TestSetReachesEveryInstance(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := newFar()
		fl := fleet(t, f, 3)
		ctx := context.Background()
		for round := range 100 {
			for _, s := range fl {
				value(t, s, "k") // a near copy of the previous value
			}
			if err := fl[round%3].Set(ctx, "k", store.Entry[int]{Value: round}); err != nil {
				t.Fatal(err)
			}
			synctest.Wait() // every watch has handled the change
			for i, s := range fl {
				if got, ok := value(t, s, "k"); !ok || got != round {
					t.Fatalf("round %d: instance %d read %d, %v after the change of instance %d's Set was delivered", round, i, got, ok, round%3)
				}
			}
		}
		for i, s := range fl {
			if st := s.Stats(); st.Changes < 100 {
				t.Fatalf("instance %d handled %d changes, want at least 100", i, st.Changes)
			}
		}
	})
}

// No near copy outlives its entry's KeepUntil, whatever the stream says:
// here nothing, as it is silent. (Writes to the far store by a plain
// client reaching every instance are storetest.RunTwoLevel's, run over
// memory in store/memory.)
func TestNearCopyGoesAtKeepUntil(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := newFar()
		fl := fleet(t, f, 3)
		ctx := context.Background()
		_ = f.Set(ctx, "short", store.Entry[int]{Value: 3, KeepUntil: time.Now().Add(time.Second)})
		synctest.Wait()
		for _, s := range fl {
			mustValue(t, s, "short", 3)
		}
		f.swallow.Store(true)
		time.Sleep(time.Second)
		for i, s := range fl {
			if got, ok := value(t, s, "short"); ok {
				t.Fatalf("instance %d read %d past the entry's KeepUntil", i, got)
			}
		}
	})
}

// A Change with All set empties every near tier, and so do Gap and Down
// with FlushWhenDown: a write that the stream never reported is read after
// it. An Up does not.
func TestLossFlushesTheNearTier(t *testing.T) {
	for _, c := range []store.Change{{All: true}, {Gap: true}, {Down: true}} {
		t.Run(fmt.Sprintf("%+v", c), func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				f := newFar()
				var opts []tiered.Option
				if !c.All {
					opts = append(opts, tiered.FlushWhenDown())
				}
				fl := fleet(t, f, 3, opts...)
				ctx := context.Background()
				for i := range 10 {
					_ = f.Set(ctx, fmt.Sprint(i), store.Entry[int]{Value: i})
				}
				synctest.Wait()
				for _, s := range fl {
					for i := range 10 {
						mustValue(t, s, fmt.Sprint(i), i)
					}
				}
				f.swallow.Store(true) // these writes are lost by the stream
				for i := range 10 {
					_ = f.Set(ctx, fmt.Sprint(i), store.Entry[int]{Value: 100 + i})
				}
				synctest.Wait()
				mustValue(t, fl[0], "0", 0) // the near copy, as the stream said nothing
				f.swallow.Store(false)
				f.report(c)
				for n, s := range fl {
					if st := s.Stats(); st.Flushes != 1 || st.NearEntries != 0 {
						t.Fatalf("instance %d after %+v: %+v, want 1 flush and an empty near tier", n, c, st)
					}
					for i := range 10 {
						mustValue(t, s, fmt.Sprint(i), 100+i)
					}
				}
				if c.Down {
					f.report(store.Change{Up: true})
					for n, s := range fl {
						if st := s.Stats(); st.Flushes != 1 || st.NearEntries != 10 {
							t.Fatalf("instance %d after Up: %+v, want no more flushes and the near tier kept", n, st)
						}
					}
				}
			})
		})
	}
}

// The fill race, made deterministic: a far read that read the old value
// is held until the change of a newer write has been delivered; the near
// tier must not keep the old value it then returns.
func TestRegressionFillRaceKeepsOldValue(t *testing.T) {
	for _, all := range []bool{false, true} {
		t.Run(fmt.Sprintf("All=%v", all), func(t *testing.T) {
			f := newFar()
			ctx := context.Background()
			_ = f.Set(ctx, "k", store.Entry[int]{Value: 1}) // before any watch
			s := fleet(t, f, 1)[0]
			hold := "k"
			if all {
				hold = "*"
			}
			f.holdGet(hold)
			first := make(chan int)
			go func() {
				e, _, err := s.Get(ctx, "k")
				if err != nil {
					t.Error(err)
				}
				first <- e.Value
			}()
			<-f.reading // the far read has read 1 and waits for the change
			if all {
				f.swallow.Store(true) // only the All tells of this write
				_ = f.Set(ctx, "k", store.Entry[int]{Value: 2})
				f.reportAll()
			} else {
				_ = f.Set(ctx, "k", store.Entry[int]{Value: 2})
			}
			if got := <-first; got != 1 {
				t.Fatalf("the held read returned %d, want the 1 it read", got)
			}
			mustValue(t, s, "k", 2)
			if st := s.Stats(); st.DiscardedFills != 1 || st.InFlight != 0 {
				t.Fatalf("stats %+v, want 1 discarded fill and nothing in flight", st)
			}
		})
	}
}

// A far read in flight when this instance writes the key does not put the
// older value it read in the near tier over the write.
func TestReadInFlightDuringOwnWrite(t *testing.T) {
	f := newFar()
	ctx := context.Background()
	_ = f.Set(ctx, "k", store.Entry[int]{Value: 1}) // before any watch
	s := fleet(t, f, 1)[0]
	f.swallow.Store(true) // only the write itself can keep the read out
	f.holdGet("k")
	first := make(chan int)
	go func() {
		e, _, err := s.Get(ctx, "k")
		if err != nil {
			t.Error(err)
		}
		first <- e.Value
	}()
	<-f.reading
	if err := s.Set(ctx, "k", store.Entry[int]{Value: 2}); err != nil {
		t.Fatal(err)
	}
	f.release("k")
	if got := <-first; got != 1 {
		t.Fatalf("the held read returned %d, want 1", got)
	}
	mustValue(t, s, "k", 2)
}

// The instance that writes reads its write, 1,000 times in a row, while
// other instances and goroutines read and write the key, the stream
// reports every write back, and reads of the writer race with its writes.
func TestReadYourWrites(t *testing.T) {
	f := newFar()
	fl := fleet(t, f, 3)
	ctx := context.Background()
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for i, s := range fl {
		for range 2 {
			wg.Go(func() {
				for {
					select {
					case <-stop:
						return
					default:
					}
					if _, _, err := s.Get(ctx, "k"); err != nil {
						t.Error(err)
						return
					}
					if i > 0 {
						_ = s.Set(ctx, fmt.Sprintf("other-%d", i), store.Entry[int]{Value: i})
					}
				}
			})
		}
	}
	w := fl[0]
	for i := range 1000 {
		var err error
		if i%10 == 9 {
			_, v, _, verr := w.GetVersion(ctx, "k")
			if verr != nil {
				t.Fatal(verr)
			}
			err = w.SetIf(ctx, "k", store.Entry[int]{Value: i}, v)
		} else {
			err = w.Set(ctx, "k", store.Entry[int]{Value: i})
		}
		if err != nil {
			t.Fatal(err)
		}
		if got, ok := value(t, w, "k"); !ok || got != i {
			close(stop)
			wg.Wait()
			t.Fatalf("write %d: the writer read %d, %v", i, got, ok)
		}
	}
	close(stop)
	wg.Wait()
	for _, s := range fl {
		if n := s.Stats().InFlight; n != 0 {
			t.Fatalf("%d keys still tracked in flight with nothing in flight", n)
		}
	}
}

// With the stream stalled without saying so, a near copy is served at most
// NearTTL after the far read that fetched it began: exactly then with
// NearExactClock, and at most one tick of the near tier's coarse clock
// later by default.
func TestNearTTLBoundsStalenessOfAStalledStream(t *testing.T) {
	for name, tc := range map[string]struct {
		o    tiered.Option
		late time.Duration // the most a near copy may outlive NearTTL
	}{
		"exact":  {tiered.NearExactClock(), time.Nanosecond},
		"coarse": {tiered.NearCoarseClock(tiered.DefaultNearResolution), tiered.DefaultNearResolution + time.Nanosecond},
	} {
		t.Run(name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				f := newFar()
				const nearTTL = 5 * time.Second
				s := fleet(t, f, 1, tiered.NearTTL(nearTTL), tc.o)[0]
				ctx := context.Background()
				_ = f.Set(ctx, "k", store.Entry[int]{Value: 1})
				synctest.Wait()
				f.swallow.Store(true)
				mustValue(t, s, "k", 1) // fetched now, from the far tier
				time.Sleep(time.Second)
				_ = f.Set(ctx, "k", store.Entry[int]{Value: 2}) // the stream loses it
				time.Sleep(nearTTL - time.Second - time.Nanosecond)
				mustValue(t, s, "k", 1) // stale, within the bound
				time.Sleep(tc.late)
				mustValue(t, s, "k", 2) // NearTTL after the read began
				// A write through the instance starts a new NearTTL.
				_ = s.Set(ctx, "k", store.Entry[int]{Value: 3})
				_ = f.Set(ctx, "k", store.Entry[int]{Value: 4})
				time.Sleep(nearTTL - time.Nanosecond)
				mustValue(t, s, "k", 3)
				time.Sleep(tc.late)
				mustValue(t, s, "k", 4)
			})
		})
	}
}

// GetMany answers from the near tier first and asks the far tier once for
// the rest.
func TestGetManyNearFirst(t *testing.T) {
	f := newFar()
	ctx := context.Background()
	for i := range 4 { // before any watch, so that no change drops a near copy
		_ = f.Set(ctx, fmt.Sprint(i), store.Entry[int]{Value: i})
	}
	s := fleet(t, f, 1)[0]
	mustValue(t, s, "0", 0)
	mustValue(t, s, "1", 1)
	got, err := s.GetMany(ctx, []string{"0", "1", "2", "3", "absent", "2", "0"})
	if err != nil || len(got) != 4 {
		t.Fatalf("GetMany = %v, %v", got, err)
	}
	for i := range 4 {
		if got[fmt.Sprint(i)].Value != i {
			t.Fatalf("GetMany = %v", got)
		}
	}
	if calls, keys := f.getManys.Load(), f.getManyKeys.Load(); calls != 1 || keys != 3 {
		t.Fatalf("far GetMany called %d times for %d keys, want once for 3", calls, keys)
	}
	got, err = s.GetMany(ctx, []string{"2", "3"}) // now near
	if err != nil || len(got) != 2 || f.getManys.Load() != 1 {
		t.Fatalf("GetMany of near keys = %v, %v after %d far calls", got, err, f.getManys.Load())
	}
}

// A herd.Cache over tiered, with the far store's locks: a Get on one
// instance, a Set on another, and the first sees the Set.
func TestHerdCacheOverTiered(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		far := memory.New[string]()
		defer far.Close(context.Background())
		ctx := context.Background()
		caches := make([]*herd.Cache[string], 2)
		for i := range caches {
			s, err := tiered.NewVersioned[string](far)
			if err != nil {
				t.Fatal(err)
			}
			caches[i] = herd.New[string](s, herd.TTL(time.Hour), herd.WithLocker(far, 10*time.Second))
			defer caches[i].Close(ctx) // closes s, not far
		}
		var loads atomic.Int32
		load := func(context.Context, string) (string, error) {
			loads.Add(1)
			return "loaded", nil
		}
		if v, err := caches[0].Get(ctx, "k", load); err != nil || v != "loaded" {
			t.Fatalf("Get = %q, %v", v, err)
		}
		synctest.Wait() // the write-back has landed
		if v, err := caches[1].Get(ctx, "k", load); err != nil || v != "loaded" || loads.Load() != 1 {
			t.Fatalf("Get on the second instance = %q, %v after %d loads; want the first's value, 1 load", v, err, loads.Load())
		}
		if err := caches[1].Set(ctx, "k", "set"); err != nil {
			t.Fatal(err)
		}
		synctest.Wait()
		if v, err := caches[0].Get(ctx, "k", load); err != nil || v != "set" || loads.Load() != 1 {
			t.Fatalf("Get after another instance's Set = %q, %v after %d loads", v, err, loads.Load())
		}
	})
}

// Close is idempotent, leaves no goroutine, leaves the far store alone,
// and every method returns ErrClosed after it.
func TestClose(t *testing.T) {
	defer goleak.VerifyNone(t)
	far := memory.New[int]()
	ctx := context.Background()
	s, err := tiered.NewVersioned[int](far)
	if err != nil {
		t.Fatal(err)
	}
	_ = s.Set(ctx, "k", store.Entry[int]{Value: 1})
	cancelled, cancel := context.WithCancel(ctx)
	cancel()
	if err := s.Close(cancelled); err != nil && !errors.Is(err, context.Canceled) {
		t.Fatalf("Close on a cancelled context: %v", err)
	}
	var wg sync.WaitGroup
	for range 3 {
		wg.Go(func() {
			if err := s.Close(ctx); err != nil {
				t.Errorf("Close: %v", err)
			}
		})
	}
	wg.Wait()
	checks := map[string]error{
		"Set":    s.Set(ctx, "k", store.Entry[int]{}),
		"Delete": s.Delete(ctx, "k"),
		"SetIf":  s.SetIf(ctx, "k", store.Entry[int]{}, 0),
	}
	_, _, checks["Get"] = s.Get(ctx, "k")
	_, _, _, checks["GetVersion"] = s.GetVersion(ctx, "k")
	_, checks["GetMany"] = s.GetMany(ctx, []string{"k"})
	_, checks["TryLock"] = s.TryLock(ctx, "k", time.Second)
	checks["DeleteIf"] = s.DeleteIf(ctx, "k", 0)
	for op, err := range checks {
		if !errors.Is(err, tiered.ErrClosed) {
			t.Errorf("%s after Close: %v, want ErrClosed", op, err)
		}
	}
	if e, ok, err := far.Get(ctx, "k"); err != nil || !ok || e.Value != 1 {
		t.Fatalf("the far store after the tiered store's Close: %v, %v, %v", e, ok, err)
	}
	if err := far.Close(ctx); err != nil {
		t.Fatal(err)
	}
}

// The bookkeeping of reads in flight is bounded by the reads in flight:
// after 10,000 concurrent misses of distinct keys, nothing is left.
func TestInFlightBookkeepingIsBounded(t *testing.T) {
	f := newFar()
	s := fleet(t, f, 1, tiered.NearMaxEntries(100))[0]
	ctx := context.Background()
	var wg sync.WaitGroup
	for g := range 16 {
		wg.Go(func() {
			for i := range 625 {
				key := fmt.Sprintf("%d-%d", g, i)
				_ = s.Set(ctx, key, store.Entry[int]{Value: i})
				_, _, _ = s.Get(ctx, key)
				_, _, _ = s.Get(ctx, "absent-"+key)
			}
		})
	}
	wg.Wait()
	st := s.Stats()
	if st.InFlight != 0 {
		t.Fatalf("%d keys tracked in flight after every read returned", st.InFlight)
	}
	if st.NearEntries > 100 {
		t.Fatalf("near tier holds %d entries under NearMaxEntries(100)", st.NearEntries)
	}
}

// A hit through herd.Cache on a near copy costs a near lookup: no far read,
// no allocation.
func TestCacheNearHitDoesNotAllocate(t *testing.T) {
	far := memory.New[string]()
	defer far.Close(context.Background())
	s, err := tiered.New[string](far)
	if err != nil {
		t.Fatal(err)
	}
	c := herd.New[string](s, herd.TTL(time.Hour))
	defer c.Close(context.Background())
	ctx := context.Background()
	if v, err := c.Get(ctx, "k", func(context.Context, string) (string, error) { return "v", nil }); err != nil || v != "v" {
		t.Fatalf("Get = %q, %v", v, err)
	}
	// The write-back and the change it causes land on their own
	// goroutines: read until the near tier holds the copy. (A read that
	// missed the far tier just before the write-back landed, and found the
	// load over, loads again: the store has no versions to tell it.)
	reload := func(context.Context, string) (string, error) { return "v", nil }
	for i := 0; ; i++ {
		if _, _, ok := tiered.PeekNear(s, "k"); ok {
			break
		}
		if i == 1_000_000 {
			t.Fatal("the near tier never held the key")
		}
		if _, err := c.Get(ctx, "k", reload); err != nil {
			t.Fatal(err)
		}
		runtime.Gosched()
	}
	load := func(context.Context, string) (string, error) { panic("a near hit must not load") }
	allocs := testing.AllocsPerRun(1000, func() {
		if v, err := c.Get(ctx, "k", load); err != nil || v != "v" {
			t.Fatalf("Get = %q, %v", v, err)
		}
	})
	if allocs != 0 {
		t.Fatalf("a near hit allocated %v times", allocs)
	}
	if st := c.Stats(); st.Hits < 1000 {
		t.Fatalf("stats %+v, want the near hits counted", st)
	}
}
