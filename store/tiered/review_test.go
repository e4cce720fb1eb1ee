package tiered_test

import (
	"context"
	"errors"
	"sync"
	"testing"
	"testing/synctest"

	"github.com/herdcache/herd/store"
	"github.com/herdcache/herd/store/tiered"
)

// gatedFar is the far store of the tests that need one call of the far
// tier stopped at a chosen point: a Get of a key once it has read, a Set of
// a key once it has applied (optionally failing then, as a write whose
// reply was lost), a GetMany whose keys include a key before or after it
// has read. Each gate stops one call, the first that reaches it. Writes
// made on g.Store (the memory store under it) pass no gate: they are those
// of another client of the backend.
type gatedFar struct {
	*farStore

	mu    sync.Mutex
	gates map[string]*gate // op + " " + key
}

// A gate stops one call: reached is closed once the call waits at it, and
// the call goes on once release is closed (or its context ends, for the
// calls that take one).
type gate struct {
	reached, release chan struct{}
	fail             error // the error the stopped call returns, if any
}

func newGated() *gatedFar { return &gatedFar{farStore: newFar(), gates: make(map[string]*gate)} }

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
		if err := g.farStore.Close(context.Background()); err != nil {
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

// A write in flight across a loss of the stream must not take the one
// change it then sees for its echo: its own echo may be among the changes
// lost, and the change seen may be a later write's.
//
// Sequence: instance A's Set(k, 1) applies on the far tier; the stream
// loses its change (Down, then Gap: Redis keeps nothing to replay); another
// client then sets k to 2, and the stream, healthy again, delivers that
// change to A; only then does A's far Set return. A must read 2 (the change
// of the later write was delivered before the read began); it reads 1,
// and keeps serving it until NearTTL: settle keeps the write when exactly
// one change came while it was in flight (verdict.streamed == 1), without
// looking at the epoch, so the lost echo is not accounted for.
func TestReviewWriteAcrossLossTakesLaterChangeForItsEcho(t *testing.T) {
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

// An echo lost before a Gap is not taken for a later write's change that
// the stream delivers after it. A Gap disarms nothing: only a Down bumps
// the epoch that an armed copy is checked against, and a write made while
// the stream is down (Redis: the tracking connection lost, the data
// connections fine), or before a Gap that no Down preceded (a Cluster
// master the watch began following late), arms its copy with the epoch
// that is current after the Gap.
//
// Sequence: Down; A's Set(k, 1) succeeds, its change lost; Gap; the
// repair's read of k waits (stopped at "before" or "after" the far read);
// another client sets k to 2 and the change is delivered to A, which
// consumes it as the echo of its own write. A must read 2; it reads 1:
//   - "before": until the repair reads k again (for a near tier of
//     100,000 copies, the length of a repair);
//   - "after": for good (until NearTTL): the repair's read, which read 1
//     before the later write, fills 1, since a consumed echo does not
//     invalidate the reads in flight.
func TestReviewEchoLostBeforeGapConsumesLaterChange(t *testing.T) {
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
				g.swallow.Store(true)
				if err := a.Set(ctx, "k", store.Entry[int]{Value: 1}); err != nil {
					t.Fatal(err)
				}
				synctest.Wait() // the change of A's write is lost
				g.swallow.Store(false)
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

// A far read that began before a Gap must not leave a copy that the Gap's
// repair never revalidates (store.Change: "Every copy obtained from a read
// that began before this Change must be revalidated ... or dropped").
//
// Sequence: Down; A's far read of k reads 1 and waits; another client sets
// k to 2, a change the stream loses; Gap: the repair runs, and finds no
// copy of k (the read has not filled yet); the read returns and fills 1.
// A must read 2 (or read the far tier); it serves 1 until NearTTL, as the
// Gap does not invalidate the reads in flight (flights.invalidateAll), and
// the repair lists the copies present when it starts.
func TestReviewReadInFlightAcrossGapEscapesRepair(t *testing.T) {
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
		g.swallow.Store(true)
		if err := g.Store.Set(ctx, "k", store.Entry[int]{Value: 2}); err != nil {
			t.Fatal(err)
		}
		synctest.Wait() // the change is lost
		g.swallow.Store(false)
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

// A repair that a Down cancels is not resumed when the stream then comes
// back with Up: the copies the Gap asked to revalidate are served on,
// unrevalidated, until NearTTL. (The contract allows Gap, Down, Up; the
// repairer assumes the next is a Gap. No store of the repository emits
// Gap and Up both today: redisstore only Gap, natsstore only Up; a store
// that replays when it can and reports Gap when it cannot would.)
//
// Sequence: A holds k = 1; Down; another client sets k to 2, lost; Gap:
// the repair's read of k waits; Down (cancels the repair; its read ends
// with the context's error and leaves the copy); Up. A must read 2; it
// reads 1.
func TestReviewRepairCancelledByDownIsNotResumedAtUp(t *testing.T) {
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
		g.swallow.Store(true)
		if err := g.Store.Set(ctx, "k", store.Entry[int]{Value: 2}); err != nil {
			t.Fatal(err)
		}
		synctest.Wait()
		g.swallow.Store(false)
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
