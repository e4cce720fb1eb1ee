package tiered_test

import (
	"context"
	"errors"
	"log/slog"
	"math/rand/v2"
	"slices"
	"strconv"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/herdcache/herd"
	"github.com/herdcache/herd/store"
	"github.com/herdcache/herd/store/memory"
	"github.com/herdcache/herd/store/tiered"
)

// gatedFar is the far store of the tests that need one call of the far
// tier stopped at a chosen point: a Get of a key once it has read, a Set of
// a key once it has applied (optionally failing then, as a write whose
// reply was lost), a GetMany whose keys include a key before or after it
// has read. Each gate stops one call, the first that reaches it. Sets made
// on g.Store (the memory store under it), and Deletes, pass no gate: they
// are those of another client of the backend.
type gatedFar struct {
	*farStore

	mu     sync.Mutex
	gates  map[string]*gate // op + " " + key
	paused chan struct{}    // while not nil, changes of keys wait for it to close
	lost   map[string]bool  // keys whose changes the stream loses
}

// Watch is the far store's, with the deliveries of changes of keys held
// while pause is in effect: a slow stream, which delivers everything late.
func (g *gatedFar) Watch(ctx context.Context, fn func(store.Change)) (store.Watch, error) {
	return g.farStore.Watch(ctx, func(c store.Change) {
		g.mu.Lock()
		ch, lost := g.paused, g.lost[c.Key]
		g.mu.Unlock()
		if lost {
			return
		}
		if ch != nil && c.Key != "" {
			<-ch
		}
		fn(c)
	})
}

// pause holds the deliveries of changes of keys until the function it
// returns is called.
func (g *gatedFar) pause() (resume func()) {
	g.mu.Lock()
	defer g.mu.Unlock()
	ch := make(chan struct{})
	g.paused = ch
	return func() {
		g.mu.Lock()
		g.paused = nil
		g.mu.Unlock()
		close(ch)
	}
}

// A gate stops one call: reached is closed once the call waits at it, and
// the call goes on once release is closed (or its context ends, for the
// calls that take one).
type gate struct {
	reached, release chan struct{}
	fail             error // the error the stopped call returns, if any
}

func newGated() *gatedFar { return &gatedFar{farStore: newFar(), gates: make(map[string]*gate)} }

// newGatedSized is newGated over a memory store bounded to maxEntries.
func newGatedSized(maxEntries int) *gatedFar {
	f := newFar()
	_ = f.Close(context.Background()) // its memory store, replaced below
	f.Store = memory.New[int](memory.MaxEntries(maxEntries))
	return &gatedFar{farStore: f, gates: make(map[string]*gate)}
}

// lose makes the stream lose the changes of keys, until lose is called
// again (with none: lose nothing).
func (g *gatedFar) lose(keys ...string) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.lost = make(map[string]bool, len(keys))
	for _, k := range keys {
		g.lost[k] = true
	}
}

// hold sets a gate for the next call op ("get", "set", "getmany-before",
// "getmany-after") of key.
func (g *gatedFar) hold(op, key string) *gate {
	g.mu.Lock()
	defer g.mu.Unlock()
	gt := &gate{reached: make(chan struct{}), release: make(chan struct{})}
	g.gates[op+" "+key] = gt
	return gt
}

// take returns the gate of op and one of keys, removing it, or nil.
func (g *gatedFar) take(op string, keys ...string) *gate {
	g.mu.Lock()
	defer g.mu.Unlock()
	for _, k := range keys {
		if gt, ok := g.gates[op+" "+k]; ok {
			delete(g.gates, op+" "+k)
			return gt
		}
	}
	return nil
}

// wait stops at gt, if any, until it is released or ctx ends.
func (gt *gate) wait(ctx context.Context) error {
	if gt == nil {
		return nil
	}
	close(gt.reached)
	select {
	case <-gt.release:
		return gt.fail
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (g *gatedFar) Get(ctx context.Context, key string) (store.Entry[int], bool, error) {
	e, ok, err := g.farStore.Get(ctx, key)
	if werr := g.take("get", key).wait(ctx); werr != nil {
		return store.Entry[int]{}, false, werr
	}
	return e, ok, err
}

func (g *gatedFar) Set(ctx context.Context, key string, e store.Entry[int]) error {
	if err := g.farStore.Set(ctx, key, e); err != nil {
		return err
	}
	return g.take("set", key).wait(ctx)
}

func (g *gatedFar) GetVersion(ctx context.Context, key string) (store.Entry[int], store.Version, bool, error) {
	e, v, ok, err := g.farStore.GetVersion(ctx, key)
	if werr := g.take("get", key).wait(ctx); werr != nil {
		return store.Entry[int]{}, 0, false, werr
	}
	return e, v, ok, err
}

func (g *gatedFar) SetVersioned(ctx context.Context, key string, e store.Entry[int]) (store.Version, error) {
	v, err := g.farStore.SetVersioned(ctx, key, e)
	if err != nil {
		return 0, err
	}
	return v, g.take("set", key).wait(ctx)
}

func (g *gatedFar) GetMany(ctx context.Context, keys []string) (map[string]store.Entry[int], error) {
	if err := g.take("getmany-before", keys...).wait(ctx); err != nil {
		return nil, err
	}
	found, err := g.farStore.GetMany(ctx, keys)
	if werr := g.take("getmany-after", keys...).wait(ctx); werr != nil {
		return nil, werr
	}
	return found, err
}

// gatedFleet is fleet over g.
func gatedFleet(t *testing.T, g *gatedFar, n int, opts ...tiered.Option) []*tiered.VersionedStore[int] {
	t.Helper()
	t.Cleanup(func() {
		if err := g.Close(context.Background()); err != nil {
			t.Error(err)
		}
	})
	out := make([]*tiered.VersionedStore[int], n)
	for i := range out {
		s, err := tiered.NewVersioned[int](g, opts...)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			if err := s.Close(context.Background()); err != nil && !errors.Is(err, context.Canceled) {
				t.Error(err)
			}
		})
		out[i] = s
	}
	return out
}

// A write in flight across a loss of the stream does not take the one
// change it then sees for its echo: its own echo may be among the changes
// lost, and the change seen may be a later write's.
//
// Sequence: instance A's Set(k, 1) applies on the far tier and its reply
// waits; the stream loses its change (Down, then Gap: nothing is
// replayed); another client then sets k to 2, and the stream, healthy
// again, delivers that change to A; only then does A's far Set return. A
// reads 2, the value of the write whose change was delivered before the
// read began.
func TestWriteAcrossLossDoesNotTakeALaterChangeForItsEcho(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		g := newGated()
		a := gatedFleet(t, g, 1)[0]
		ctx := context.Background()

		held := g.hold("set", "k")
		g.swallow.Store(true) // the stream loses what follows
		done := make(chan error, 1)
		go func() { done <- a.Set(ctx, "k", store.Entry[int]{Value: 1}) }()
		<-held.reached  // A's write has applied on the far tier
		synctest.Wait() // its change is lost
		g.swallow.Store(false)
		g.report(store.Change{Down: true})
		g.report(store.Change{Gap: true})
		synctest.Wait() // the repair has run: A held nothing near

		changes := a.Stats().Changes
		if err := g.Store.Set(ctx, "k", store.Entry[int]{Value: 2}); err != nil {
			t.Fatal(err)
		}
		synctest.Wait()
		if got := a.Stats().Changes; got != changes+1 {
			t.Fatalf("A handled %d changes after the later write, want %d", got, changes+1)
		}
		close(held.release)
		if err := <-done; err != nil {
			t.Fatal(err)
		}
		if got, ok := value(t, a, "k"); !ok || got != 2 {
			t.Fatalf("A read %d, %v after the change of a later write (2) was delivered to it; want 2", got, ok)
		}
	})
}

// An echo lost before a Gap is not taken for the change of a later write
// that the stream delivers after the Gap: not when the write was made
// while the stream was down (Redis: the tracking connection lost, the data
// connections fine), nor when no Down preceded the Gap (a Cluster master
// the watch began following late); and a read of the repair in flight,
// which read the key before the later write, does not fill what it read.
//
// Sequence: Down (in two cases of three); A's Set(k, 1) succeeds, its
// change lost; Gap; the repair's read of k waits (stopped "before" or
// "after" the far read); another client sets k to 2 and the change is
// delivered to A. A reads 2 while the repair's read waits, and 2 once the
// repair is over.
func TestEchoLostBeforeGapDoesNotConsumeALaterChange(t *testing.T) {
	for _, tc := range []struct {
		name string
		down bool   // a Down before the write (else a Gap without a Down)
		stop string // where the repair's read of k waits
	}{
		{"down/before-read", true, "getmany-before"},
		{"down/after-read", true, "getmany-after"},
		{"no-down/after-read", false, "getmany-after"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				g := newGated()
				a := gatedFleet(t, g, 1)[0]
				ctx := context.Background()
				if tc.down {
					g.report(store.Change{Down: true})
				}
				// A write of A, whose change the stream loses.
				g.unseen(t, func() error { return a.Set(ctx, "k", store.Entry[int]{Value: 1}) })
				held := g.hold(tc.stop, "k")
				g.report(store.Change{Gap: true})
				<-held.reached // the repair's read of k waits

				changes, echoes := a.Stats().Changes, a.Stats().Echoes
				if err := g.Store.Set(ctx, "k", store.Entry[int]{Value: 2}); err != nil {
					t.Fatal(err)
				}
				synctest.Wait()
				st := a.Stats()
				if st.Changes != changes+1 {
					t.Fatalf("A handled %d changes after the later write, want %d", st.Changes, changes+1)
				}
				if got, ok := value(t, a, "k"); !ok || got != 2 {
					t.Errorf("A read %d, %v while its repair was in flight, after the change of a later write (2) was delivered to it (echoes kept %d -> %d); want 2",
						got, ok, echoes, st.Echoes)
				}
				close(held.release)
				synctest.Wait() // the repair is over
				if got, ok := value(t, a, "k"); !ok || got != 2 {
					t.Fatalf("A read %d, %v after its repair and the delivery of a later write's change (2); want 2", got, ok)
				}
			})
		})
	}
}

// A far read that began before a Gap leaves no copy that the Gap's repair
// does not revalidate (store.Change: "Every copy obtained from a read that
// began before this Change must be revalidated ... or dropped"), even when
// the read ends after the repair is over.
//
// Sequence: Down; A's far read of k reads 1 and waits; another client sets
// k to 2, a change the stream loses; Gap: the repair runs, and finds no
// copy of k; the read returns 1 to its caller. A then reads 2.
func TestReadInFlightAcrossGapDoesNotEscapeTheRepair(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		g := newGated()
		a := gatedFleet(t, g, 1)[0]
		ctx := context.Background()
		if err := g.Store.Set(ctx, "k", store.Entry[int]{Value: 1}); err != nil {
			t.Fatal(err)
		}
		synctest.Wait()
		g.report(store.Change{Down: true})
		held := g.hold("get", "k")
		read := make(chan int, 1)
		go func() {
			e, _, err := a.Get(ctx, "k")
			if err != nil {
				t.Error(err)
			}
			read <- e.Value
		}()
		<-held.reached // A's far read has read 1
		// Another client's write, whose change is lost.
		g.unseen(t, func() error { return g.Store.Set(ctx, "k", store.Entry[int]{Value: 2}) })
		g.report(store.Change{Gap: true})
		synctest.Wait() // the repair is over
		close(held.release)
		if got := <-read; got != 1 {
			t.Fatalf("the held read returned %d, want the 1 it read", got)
		}
		synctest.Wait()
		if got, ok := value(t, a, "k"); !ok || got != 2 {
			t.Fatalf("A read %d, %v after the Gap and its repair; the far tier holds 2 since before the Gap; want 2", got, ok)
		}
	})
}

// A repair that a Down cuts short resumes when the stream comes back with
// Up, so that the copies the Gap asked to revalidate are not served on
// unrevalidated. (The contract of store.Change allows Gap, Down, Up: a
// store that replays when it can and reports a Gap when it cannot emits
// that sequence. Of the repository's stores, redisstore reports Gaps only
// and natsstore Ups only.)
//
// Sequence: A holds k = 1; Down; another client sets k to 2, lost; Gap:
// the repair's read of k waits; Down (cuts the repair short; its read ends
// with the context's error); Up. Nothing is left in flight, and A reads 2.
func TestRepairCutShortByDownResumesAtUp(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		g := newGated()
		a := gatedFleet(t, g, 1)[0]
		ctx := context.Background()
		if err := g.Store.Set(ctx, "k", store.Entry[int]{Value: 1}); err != nil {
			t.Fatal(err)
		}
		synctest.Wait()
		mustValue(t, a, "k", 1)
		g.report(store.Change{Down: true})
		g.unseen(t, func() error { return g.Store.Set(ctx, "k", store.Entry[int]{Value: 2}) })
		held := g.hold("getmany-before", "k")
		g.report(store.Change{Gap: true})
		<-held.reached
		g.report(store.Change{Down: true}) // cancels the repair
		synctest.Wait()
		g.report(store.Change{Up: true}) // nothing missed since this Down
		synctest.Wait()
		if st := a.Stats(); st.InFlight != 0 {
			t.Fatalf("stats %+v: the cancelled repair is still in flight", st)
		}
		if got, ok := value(t, a, "k"); !ok || got != 2 {
			t.Fatalf("A read %d, %v after Gap, Down, Up; the far tier holds 2 since before the Gap; want 2", got, ok)
		}
	})
}

// herdOver returns a herd cache over s with an hour's TTL and two hours of
// stale-if-error, closed at the end of the test.
func herdOver(t *testing.T, s *tiered.VersionedStore[int]) *herd.Cache[int] {
	t.Helper()
	c := herd.New[int](s, herd.TTL(time.Hour), herd.StaleIfError(2*time.Hour), herd.WithLogger(slog.New(slog.DiscardHandler)))
	t.Cleanup(func() { _ = c.Close(context.Background()) })
	return c
}

func loadsTo(v int) herd.Loader[int] {
	return func(context.Context, string) (int, error) { return v, nil }
}

var errSourceDown = errors.New("source down")

func failingLoad(context.Context, string) (int, error) { return 0, errSourceDown }

// A key deleted on the far tier while the stream was away does not come
// back as a stale-if-error fallback once the Gap's repair has run, whether
// its copy was within its NearTTL at the Gap (the repair reads the key and
// finds it gone) or past it (a fallback, which the repair drops without
// reading it).
//
// Sequence: a herd cache over A loads k = 1; NearTTL passes, or not;
// Down; another client deletes k, a change the stream loses; Gap (the
// repair runs); the far tier becomes unreachable (Down); Fetch(k) with a
// failing source returns the source's error, as for a key whose deletion
// the instance was told of.
func TestFallbackOfKeyDeletedDuringGapDoesNotSurviveTheRepair(t *testing.T) {
	for _, past := range []bool{false, true} {
		t.Run(map[bool]string{false: "within-NearTTL", true: "past-NearTTL"}[past], func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				const nearTTL = time.Second
				g := newGated()
				a := gatedFleet(t, g, 1, tiered.NearTTL(nearTTL))[0]
				c := herdOver(t, a)
				ctx := context.Background()
				if v, err := c.Get(ctx, "k", loadsTo(1)); err != nil || v != 1 {
					t.Fatalf("Get = %d, %v", v, err)
				}
				synctest.Wait() // the write-back has landed
				if past {
					time.Sleep(2 * nearTTL)
				}
				g.report(store.Change{Down: true})
				g.unseen(t, func() error { return g.Delete(ctx, "k") })
				g.report(store.Change{Gap: true})
				synctest.Wait() // the repair is over
				st := a.Stats()
				g.broken.Store(true)
				g.report(store.Change{Down: true})
				if r, err := c.Fetch(ctx, "k", failingLoad); err == nil {
					t.Fatalf("Fetch of a key deleted on the far tier, after the Gap's repair (%d keys read, %d dropped), with the far tier and the source down = %+v; want the source's error",
						st.RepairReads, st.RepairDrops, r)
				}
			})
		})
	}
}

// A copy past its NearTTL that nothing dropped is served as the
// stale-if-error fallback by Fetch, and by FetchMany for one key of a
// batch, when the far tier and the source fail; no fallback survives a
// change of its key delivered by the stream, a Change with All set, a far
// read that found the key gone, or the entry's KeepUntil.
//
// Sequence: a herd cache over A loads k and another key, both 1; NearTTL
// passes; the case's event, if any; the far tier becomes unreachable
// (Down); Fetch(k) with a failing source, then, where the fallback is
// served, FetchMany of both keys with a failing source.
func TestFallbackIsServedUntilDropped(t *testing.T) {
	for _, tc := range []struct {
		name string
		// gone makes the copy of k go, or not; the far tier still works.
		gone func(t *testing.T, g *gatedFar, c *herd.Cache[int])
		want bool // the fallback is served
	}{
		{"kept", func(*testing.T, *gatedFar, *herd.Cache[int]) {}, true},
		{"deleted", func(t *testing.T, g *gatedFar, _ *herd.Cache[int]) {
			_ = g.Delete(context.Background(), "k")
			synctest.Wait()
		}, false},
		{"all", func(t *testing.T, g *gatedFar, _ *herd.Cache[int]) { g.reportAll() }, false},
		{"found-gone", func(t *testing.T, g *gatedFar, c *herd.Cache[int]) {
			g.unseen(t, func() error { return g.Delete(context.Background(), "k") })
			// The far read finds nothing; the source fails.
			if _, err := c.Fetch(context.Background(), "k", failingLoad); err == nil {
				t.Fatal("Fetch of a key gone from the far tier, with the source failing, succeeded")
			}
		}, false},
		{"keep-until", func(*testing.T, *gatedFar, *herd.Cache[int]) { time.Sleep(3 * time.Hour) }, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				const nearTTL = time.Second
				g := newGated()
				a := gatedFleet(t, g, 1, tiered.NearTTL(nearTTL))[0]
				c := herdOver(t, a)
				ctx := context.Background()
				for _, k := range []string{"k", "other"} {
					if v, err := c.Get(ctx, k, loadsTo(1)); err != nil || v != 1 {
						t.Fatalf("Get(%q) = %d, %v", k, v, err)
					}
				}
				synctest.Wait()
				time.Sleep(2 * nearTTL)
				tc.gone(t, g, c)
				g.broken.Store(true)
				g.report(store.Change{Down: true})
				r, err := c.Fetch(ctx, "k", failingLoad)
				if served := err == nil; served != tc.want || served && (r.Value != 1 || r.Status != herd.StatusStaleOnError) {
					t.Fatalf("Fetch with the far tier and the source down = %+v, %v; want the fallback served: %v", r, err, tc.want)
				}
				if !tc.want {
					return
				}
				rs, err := c.FetchMany(ctx, []string{"k", "other"}, func(context.Context, []string) (map[string]int, error) {
					return nil, errSourceDown
				})
				if err != nil || len(rs) != 2 || rs["k"].Status != herd.StatusStaleOnError || rs["other"].Value != 1 {
					t.Fatalf("FetchMany with the far tier and the source down = %+v, %v; want both fallbacks", rs, err)
				}
			})
		})
	}
}

// The writer keeps its own Set through the echoes of a Delete and a Set it
// made one after the other: every write of the instance, Delete included,
// has its own echo, and the Delete's, whether it comes while the Set is in
// flight or once the Set has returned, is not counted as the Set's.
//
// Sequence, 100 times: A deletes k; A sets k = i; the stream delivers both
// echoes; A reads i. A reads every Set back from its near tier, with no
// far read.
func TestDeleteThenSetKeepsTheSet(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		g := newGated()
		a := gatedFleet(t, g, 1)[0]
		ctx := context.Background()
		const n = 100
		for i := range n {
			if err := a.Delete(ctx, "k"); err != nil {
				t.Fatal(err)
			}
			if err := a.Set(ctx, "k", store.Entry[int]{Value: i}); err != nil {
				t.Fatal(err)
			}
			synctest.Wait() // both echoes delivered
			mustValue(t, a, "k", i)
		}
		if st := a.Stats(); st.FarReads != 0 {
			t.Fatalf("%d far reads to read back %d Sets, each made right after a Delete of the key; want 0 (stats %+v)", st.FarReads, n, st)
		}
	})
}

// The echo rule under a scripted mix of writes: three instances with small
// near tiers (so that copies are evicted between writes and their echoes)
// make Set, Delete, SetIf and DeleteIf (some with stale versions:
// conflicts), WriteIf batches with two writes of one key, and writes whose
// reply is lost after they applied (an error for a write that landed),
// while another client writes and deletes directly and changes are
// reported twice. The echoes arrive at random points: only every few steps
// does the test wait for the stream. Checked: the writer reads its write
// (or the far tier's value) right after each write that succeeded, and
// once the stream has delivered everything, every instance reads what the
// far tier holds; at least one echo is kept.
func TestEchoRuleScriptedFleet(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		g := newGated()
		fl := gatedFleet(t, g, 3, tiered.NearMaxEntries(4))
		ctx := context.Background()
		rng := rand.New(rand.NewPCG(21, 3))
		keys := []string{"a", "b", "c", "d", "e", "f"}
		farValue := func(k string) (int, bool) {
			e, ok, err := g.Store.Get(ctx, k)
			if err != nil {
				t.Fatal(err)
			}
			return e.Value, ok
		}
		check := func(step int) {
			t.Helper()
			synctest.Wait()
			for _, k := range keys {
				want, wok := farValue(k)
				for i, s := range fl {
					if got, ok := value(t, s, k); ok != wok || got != want {
						t.Fatalf("step %d: instance %d read %q = %d, %v; the far tier holds %d, %v and every change was delivered", step, i, k, got, ok, want, wok)
					}
				}
			}
		}
		for step := range 3000 {
			k := keys[rng.IntN(len(keys))]
			s := fl[rng.IntN(len(fl))]
			v := step + 1
			wrote := false
			switch op := rng.IntN(10); op {
			case 0, 1:
				wrote = s.Set(ctx, k, store.Entry[int]{Value: v}) == nil
			case 2:
				_ = s.Delete(ctx, k)
			case 3:
				_, ver, _, err := s.GetVersion(ctx, k)
				if err != nil {
					t.Fatal(err)
				}
				if rng.IntN(3) == 0 {
					_ = g.Store.Set(ctx, k, store.Entry[int]{Value: -v}) // the version goes stale
				}
				wrote = s.SetIf(ctx, k, store.Entry[int]{Value: v}, ver) == nil
			case 4:
				_, ver, _, err := s.GetVersion(ctx, k)
				if err != nil {
					t.Fatal(err)
				}
				_ = s.DeleteIf(ctx, k, ver)
			case 5:
				_, ver, _, err := s.GetVersion(ctx, k)
				if err != nil {
					t.Fatal(err)
				}
				_ = s.WriteIf(ctx, []store.ConditionalWrite[int]{
					{Key: k, Entry: store.Entry[int]{Value: v}, Version: ver},
					{Key: k, Entry: store.Entry[int]{Value: -v}, Version: ver},
				})
			case 6: // the reply of a write that applied is lost
				gt := g.hold("set", k)
				gt.fail = errBroken
				close(gt.release)
				if err := s.Set(ctx, k, store.Entry[int]{Value: v}); err == nil {
					t.Fatal("a Set whose reply was lost succeeded")
				}
			case 7: // another client
				if rng.IntN(2) == 0 {
					_ = g.Store.Set(ctx, k, store.Entry[int]{Value: v})
				} else {
					_ = g.Delete(ctx, k)
				}
			case 8: // a change reported twice
				synctest.Wait()
				g.report(store.Change{Key: k})
			case 9:
				_, _ = value(t, s, keys[rng.IntN(len(keys))])
			}
			if wrote {
				if got, ok := value(t, s, k); !ok || got != v {
					if want, wok := farValue(k); got != want || ok != wok {
						t.Fatalf("step %d: the writer read %q = %d, %v right after writing %d; the far tier holds %d, %v", step, k, got, ok, v, want, wok)
					}
				}
			}
			if rng.IntN(8) == 0 {
				check(step)
			}
		}
		check(3000)
		var echoes uint64
		for _, s := range fl {
			echoes += s.Stats().Echoes
		}
		if echoes == 0 {
			t.Fatal("no echo was kept: the probe did not exercise the echo rule")
		}
	})
}

// Concurrent writers converge: three instances, four goroutines each,
// write two keys at once (Set, Delete, SetIf with the version just read)
// while another client writes too; once everyone is done and the stream
// has delivered everything, every instance reads what the far tier holds.
func TestConcurrentWritersConverge(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		g := newGated()
		fl := gatedFleet(t, g, 3)
		ctx := context.Background()
		keys := []string{"x", "y"}
		var wg sync.WaitGroup
		for i, s := range fl {
			for j := range 4 {
				wg.Go(func() {
					rng := rand.New(rand.NewPCG(uint64(i), uint64(j)))
					for n := range 300 {
						k := keys[rng.IntN(len(keys))]
						v := (i*4+j)*1000 + n
						switch rng.IntN(5) {
						case 0, 1:
							_ = s.Set(ctx, k, store.Entry[int]{Value: v})
						case 2:
							_ = s.Delete(ctx, k)
						case 3:
							if _, ver, _, err := s.GetVersion(ctx, k); err == nil {
								_ = s.SetIf(ctx, k, store.Entry[int]{Value: v}, ver)
							}
						case 4:
							_, _, _ = s.Get(ctx, k)
						}
					}
				})
			}
		}
		wg.Go(func() {
			for n := range 300 {
				_ = g.Store.Set(ctx, keys[n%2], store.Entry[int]{Value: -n})
			}
		})
		wg.Wait()
		synctest.Wait()
		for _, k := range keys {
			want, wok, err := g.Store.Get(ctx, k)
			if err != nil {
				t.Fatal(err)
			}
			for i, s := range fl {
				if got, ok := value(t, s, k); ok != wok || got != want.Value {
					t.Fatalf("instance %d read %q = %d, %v; the far tier holds %d, %v and every change was delivered", i, k, got, ok, want.Value, wok)
				}
			}
		}
	})
}

// An instance never reads a value older than one it read before (the
// package's guarantee), even while its own write is in flight: once a far
// read of the key has ended during the write, the write does not keep its
// copy.
//
// Sequence, with the stream slow (changes delivered late, none lost): A's
// Set(k, 1) applies and its reply waits; another client sets k to 2; A
// reads k: a far read, 2; A's Set returns; A reads k: 2, before the stream
// has delivered either change.
func TestReadDuringOwnWriteDoesNotGoBackwards(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		g := newGated()
		a := gatedFleet(t, g, 1)[0]
		ctx := context.Background()
		resume := g.pause()
		defer resume()
		held := g.hold("set", "k")
		done := make(chan error, 1)
		go func() { done <- a.Set(ctx, "k", store.Entry[int]{Value: 1}) }()
		<-held.reached
		if err := g.Store.Set(ctx, "k", store.Entry[int]{Value: 2}); err != nil {
			t.Fatal(err)
		}
		first, ok := value(t, a, "k")
		if !ok || first != 2 {
			t.Fatalf("A's read while its write was in flight = %d, %v; want 2, the far tier's", first, ok)
		}
		close(held.release)
		if err := <-done; err != nil {
			t.Fatal(err)
		}
		if got, ok := value(t, a, "k"); !ok || got != 2 {
			t.Fatalf("A read %d, %v after it had read 2 (the later write); want 2", got, ok)
		}
	})
}

// settled waits until every goroutine of the test's bubble is blocked, and
// fails t unless cond then holds.
func settled(t *testing.T, what string, cond func() bool) {
	t.Helper()
	synctest.Wait()
	if !cond() {
		t.Fatalf("%s: not so once everything settled", what)
	}
}

// singleGated is g without its bulk capabilities: a far store whose
// repairs read key by key.
type singleGated struct {
	store.Versioned[int]
	store.ChangeStream
}

// awayChanges makes, on the far tier while A's stream is down and loses
// them, sets of keys 0-4 to 1000+i and deletes of keys 5-9, then reports
// the Gap.
func awayChanges(t *testing.T, g *gatedFar) {
	t.Helper()
	ctx := context.Background()
	g.report(store.Change{Down: true})
	g.swallow.Store(true)
	for i := range 10 {
		k := strconv.Itoa(i)
		if i < 5 {
			_ = g.Store.Set(ctx, k, store.Entry[int]{Value: 1000 + i})
		} else {
			_ = g.Delete(ctx, k)
		}
	}
	synctest.Wait()
	g.swallow.Store(false)
}

// checkRepaired checks that s reads keys 0-4 at 1000+i, 5-9 as gone, and
// 10 to n-1 at i.
func checkRepaired(t *testing.T, s *tiered.VersionedStore[int], n int) {
	t.Helper()
	for i := range n {
		k := strconv.Itoa(i)
		got, ok := value(t, s, k)
		switch {
		case i < 5 && (!ok || got != 1000+i):
			t.Fatalf("%q after the repair = %d, %v; want %d", k, got, ok, 1000+i)
		case i >= 5 && i < 10 && ok:
			t.Fatalf("%q after the repair = %d; want it gone", k, got)
		case i >= 10 && (!ok || got != i):
			t.Fatalf("%q after the repair = %d, %v; want %d", k, got, ok, i)
		}
	}
}

// The repair of a Gap revalidates every copy: over a far store without
// bulk reads (key by key, whatever RepairBatch); through a second Gap
// while a repair is in flight (the first is cancelled, the second
// revalidates everything); and with a write through the instance and a
// change by another client while the repair's read of their keys is in
// flight (both win over what the repair read).
//
// Sequence: A holds keys 0-39; Down; another client sets keys 0-4 and
// deletes keys 5-9, changes the stream loses; Gap, and the case's events.
// A reads keys 0-4 at their new values, 5-9 as gone, and the others
// unchanged, or as the case wrote them.
func TestRepairRevalidatesEveryCopy(t *testing.T) {
	const n = 40
	t.Run("single-reads", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			g := newGated()
			t.Cleanup(func() { _ = g.Close(context.Background()) })
			a, err := tiered.NewVersioned[int](singleGated{g, g}, tiered.RepairBatch(7))
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = a.Close(context.Background()) })
			fill(t, g.farStore, []*tiered.VersionedStore[int]{a}, n)
			awayChanges(t, g)
			gets := g.getManys.Load()
			g.report(store.Change{Gap: true})
			synctest.Wait()
			st := a.Stats()
			if st.RepairReads != n || st.RepairDrops != 5 || g.getManys.Load() != gets {
				t.Fatalf("repair over single reads: %+v, %d far GetMany; want %d keys read one by one, 5 dropped", st, g.getManys.Load()-gets, n)
			}
			checkRepaired(t, a, n)
		})
	})
	t.Run("second-gap", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			g := newGated()
			a := gatedFleet(t, g, 1, tiered.RepairBatch(n))[0]
			fill(t, g.farStore, []*tiered.VersionedStore[int]{a}, n)
			awayChanges(t, g)
			held := g.hold("getmany-before", "0")
			g.report(store.Change{Gap: true})
			<-held.reached
			g.report(store.Change{Gap: true}) // cancels the first repair
			synctest.Wait()
			if st := a.Stats(); st.Repairs != 2 || st.InFlight != 0 {
				t.Fatalf("after a second Gap: %+v; want 2 repairs, nothing in flight", st)
			}
			checkRepaired(t, a, n)
		})
	})
	t.Run("write-during-repair", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			g := newGated()
			a := gatedFleet(t, g, 1, tiered.RepairBatch(n))[0]
			fill(t, g.farStore, []*tiered.VersionedStore[int]{a}, n)
			awayChanges(t, g)
			held := g.hold("getmany-after", "0")
			g.report(store.Change{Gap: true})
			<-held.reached // the repair has read every key
			ctx := context.Background()
			if err := a.Set(ctx, "0", store.Entry[int]{Value: -1}); err != nil {
				t.Fatal(err)
			}
			if err := g.Store.Set(ctx, "20", store.Entry[int]{Value: -20}); err != nil {
				t.Fatal(err)
			}
			synctest.Wait()
			close(held.release)
			synctest.Wait()
			mustValue(t, a, "0", -1)
			mustValue(t, a, "20", -20)
			mustValue(t, a, "1", 1001)
			if v, ok := value(t, a, "5"); ok {
				t.Fatalf("%q after the repair = %d; want it gone", "5", v)
			}
		})
	})
}

// Close while a repair's far read is in flight (a far store that answers
// only when the call's context ends) returns at once, and leaves no
// goroutine (the synctest bubble would not end).
func TestCloseDuringRepair(t *testing.T) {
	synctest.Test(t, func(t *testing.T) { closeDuringRepair(t) })
}

func closeDuringRepair(t *testing.T) {
	g := newGated()
	a, err := tiered.NewVersioned[int](g)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	for i := range 10 {
		_ = g.Store.Set(ctx, strconv.Itoa(i), store.Entry[int]{Value: i})
	}
	// Their changes are handled before the reads, so that none drops the
	// copy of a read.
	settled(t, "the changes of the Sets", func() bool { return a.Stats().Changes >= 10 })
	for i := range 10 {
		if _, _, err := a.Get(ctx, strconv.Itoa(i)); err != nil {
			t.Fatal(err)
		}
	}
	if n := a.Stats().NearEntries; n != 10 {
		t.Fatalf("near tier holds %d copies, want 10", n)
	}
	held := g.hold("getmany-before", "0")
	g.report(store.Change{Down: true})
	g.report(store.Change{Gap: true})
	<-held.reached // the repair waits for the far tier
	cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if err := a.Close(cctx); err != nil {
		t.Fatalf("Close during a repair: %v", err)
	}
	if err := g.Close(ctx); err != nil {
		t.Fatal(err)
	}
	// The bubble ends only once every goroutine of the store has.
}

// On the default coarse clock, copies filled by GetMany and by a write are
// served through a Down until NearTTL after their far call began, and not
// one tick of the clock (plus a nanosecond) later: then Get and GetMany
// return the far tier's error.
func TestNearTTLBoundsCopiesThroughOutage(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const nearTTL = 5 * time.Second
		g := newGated()
		a := gatedFleet(t, g, 1, tiered.NearTTL(nearTTL))[0]
		ctx := context.Background()
		_ = g.Store.Set(ctx, "read", store.Entry[int]{Value: 1})
		synctest.Wait()
		start := time.Now()
		if got, err := a.GetMany(ctx, []string{"read"}); err != nil || got["read"].Value != 1 {
			t.Fatalf("GetMany = %v, %v", got, err)
		}
		if err := a.Set(ctx, "written", store.Entry[int]{Value: 2}); err != nil {
			t.Fatal(err)
		}
		synctest.Wait() // its echo is delivered (one delivered after the Down would drop it)
		g.broken.Store(true)
		g.report(store.Change{Down: true})
		time.Sleep(nearTTL - time.Nanosecond)
		mustValue(t, a, "read", 1)
		mustValue(t, a, "written", 2)
		if got, err := a.GetMany(ctx, []string{"read", "written"}); err != nil || len(got) != 2 {
			t.Fatalf("GetMany within NearTTL in the outage = %v, %v; want both near copies", got, err)
		}
		time.Sleep(time.Until(start.Add(nearTTL + tiered.DefaultNearResolution + time.Nanosecond)))
		for _, k := range []string{"read", "written"} {
			if e, ok, err := a.Get(ctx, k); err == nil {
				t.Fatalf("Get(%q) past NearTTL plus a tick in the outage = %+v, %v; want the far tier's error", k, e, ok)
			}
		}
		if got, err := a.GetMany(ctx, []string{"read", "written"}); err == nil || len(got) != 0 {
			t.Fatalf("GetMany past NearTTL plus a tick in the outage = %v, %v; want nothing and the far tier's error", got, err)
		}
	})
}

// An instance holding 20,000 near copies, 1% of them changed while its
// stream was away, repairs them in one far GetMany per RepairBatch keys,
// drops none, and then serves every key, changed or not, from its near
// tier, with no far read. Its log gives the far calls the repair made and
// the far reads a flush would have cost instead (one per copy read again).
func TestRepairOfALargeNearTier(t *testing.T) {
	synctest.Test(t, func(t *testing.T) { repairOfALargeNearTier(t) })
}

func repairOfALargeNearTier(t *testing.T) {
	const n = 20_000
	g := newGatedSized(2 * n)
	a := gatedFleet(t, g, 1, tiered.NearMaxEntries(2*n))[0]
	ctx := context.Background()
	keys := make([]string, n)
	for i := range keys {
		keys[i] = strconv.Itoa(i)
		_ = g.Store.Set(ctx, keys[i], store.Entry[int]{Value: i})
	}
	// The stream delivers the changes of these Sets: wait until they are
	// handled, so that none drops a copy filled below.
	settled(t, "the changes of the Sets", func() bool { return a.Stats().Changes >= uint64(n) })
	for c := range slices.Chunk(keys, 1000) {
		if got, err := a.GetMany(ctx, c); err != nil || len(got) != len(c) {
			t.Fatalf("GetMany = %d entries, %v", len(got), err)
		}
	}
	if st := a.Stats(); st.NearEntries != n {
		t.Fatalf("near tier holds %d copies, want %d", st.NearEntries, n)
	}
	g.report(store.Change{Down: true})
	changed := n / 100
	lost := make([]string, changed)
	for i := range lost {
		lost[i] = keys[i*100]
	}
	g.lose(lost...)
	for i, k := range lost {
		_ = g.Store.Set(ctx, k, store.Entry[int]{Value: -i})
	}
	// A change the stream delivers after those it loses: once it is
	// handled, they are all lost.
	before := a.Stats().Changes
	_ = g.Store.Set(ctx, "sentinel", store.Entry[int]{Value: 0})
	settled(t, "the sentinel's change", func() bool { return a.Stats().Changes > before })
	g.lose()
	calls := g.getManys.Load()
	g.report(store.Change{Gap: true})
	settled(t, "the repair", func() bool { st := a.Stats(); return st.RepairReads >= uint64(n) && st.InFlight == 0 })
	st := a.Stats()
	calls = g.getManys.Load() - calls
	t.Logf("repair of %d near copies, %d changed while away: %d far GetMany calls, %d keys read, %d dropped; a flush would have cost %d far reads to serve them again",
		n, changed, calls, st.RepairReads, st.RepairDrops, n)
	if want := int64((n + tiered.DefaultRepairBatch - 1) / tiered.DefaultRepairBatch); calls != want || st.RepairDrops != 0 {
		t.Fatalf("repair: %d far calls, %d dropped; want %d calls, none dropped", calls, st.RepairDrops, want)
	}
	reads := st.FarReads
	for i, k := range keys {
		want := i
		if i%100 == 0 && i/100 < changed {
			want = -i / 100
		}
		if got, ok := value(t, a, k); !ok || got != want {
			t.Fatalf("%q after the repair = %d, %v; want %d", k, got, ok, want)
		}
	}
	if extra := a.Stats().FarReads - reads; extra != 0 {
		t.Fatalf("%d far reads to serve the %d keys after the repair, want 0", extra, n)
	}
}

// A herd cache over the store serves the near copies within their NearTTL
// through an outage on every read path (Get, Fetch, GetMany, FetchMany),
// also once a failed far read has made herd mark the store down.
//
// Sequence: the cache loads k = 1 (held near); the far tier becomes
// unreachable (Down); a Get of another key misses the near tier, fails on
// the far tier (herd marks the store down) and loads; then, within k's
// NearTTL, a read of k on the path under test returns 1, StatusFresh,
// without a load.
func TestHerdReadsServeNearCopiesThroughOutage(t *testing.T) {
	for _, path := range []string{"Get", "Fetch", "GetMany", "FetchMany"} {
		t.Run(path, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				g := newGated()
				a := gatedFleet(t, g, 1, tiered.NearTTL(time.Minute))[0]
				c := herdOver(t, a)
				ctx := context.Background()
				if v, err := c.Get(ctx, "k", loadsTo(1)); err != nil || v != 1 {
					t.Fatalf("Get = %d, %v", v, err)
				}
				synctest.Wait() // the write-back has landed
				g.broken.Store(true)
				g.report(store.Change{Down: true})
				if v, err := c.Get(ctx, "other", loadsTo(2)); err != nil || v != 2 {
					t.Fatalf("Get of a key not held near, in the outage = %d, %v; want 2, loaded", v, err)
				}
				var loads int
				one := func(context.Context, string) (int, error) { loads++; return 7, nil }
				many := func(_ context.Context, keys []string) (map[string]int, error) {
					loads++
					return map[string]int{"k": 7}, nil
				}
				var (
					got    int
					status herd.Status
					err    error
				)
				switch path {
				case "Get":
					got, err = c.Get(ctx, "k", one)
					status = herd.StatusFresh
				case "Fetch":
					var r herd.Result[int]
					r, err = c.Fetch(ctx, "k", one)
					got, status = r.Value, r.Status
				case "GetMany":
					var m map[string]int
					m, err = c.GetMany(ctx, []string{"k"}, many)
					got, status = m["k"], herd.StatusFresh
				case "FetchMany":
					var m map[string]herd.Result[int]
					m, err = c.FetchMany(ctx, []string{"k"}, many)
					got, status = m["k"].Value, m["k"].Status
				}
				if err != nil || got != 1 || status != herd.StatusFresh || loads != 0 {
					t.Fatalf("%s(k) in the outage, within k's NearTTL = %d (%v), %v after %d loads; want the near copy 1, fresh, no load",
						path, got, status, err, loads)
				}
			})
		})
	}
}
