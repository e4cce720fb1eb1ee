package fleetcheck_test

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/herdcache/herd/internal/fleetcheck"
	"github.com/herdcache/herd/internal/history"
	"github.com/herdcache/herd/store"
	"github.com/herdcache/herd/store/memory"
	"github.com/herdcache/herd/store/tiered"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

const nearTTL = 300 * time.Millisecond

var errCut = errors.New("cut")

// cuttable is a far store whose data calls fail while it is cut; its
// change stream goes on (or, with deaf, never delivers anything).
type cuttable struct {
	*memory.Store[string]
	cut  atomic.Bool
	deaf bool
}

func (c *cuttable) Get(ctx context.Context, key string) (store.Entry[string], bool, error) {
	if c.cut.Load() {
		return store.Entry[string]{}, false, errCut
	}
	return c.Store.Get(ctx, key)
}

func (c *cuttable) Set(ctx context.Context, key string, e store.Entry[string]) error {
	if c.cut.Load() {
		return errCut
	}
	return c.Store.Set(ctx, key, e)
}

func (c *cuttable) Delete(ctx context.Context, key string) error {
	if c.cut.Load() {
		return errCut
	}
	return c.Store.Delete(ctx, key)
}

func (c *cuttable) GetVersion(ctx context.Context, key string) (store.Entry[string], store.Version, bool, error) {
	if c.cut.Load() {
		return store.Entry[string]{}, 0, false, errCut
	}
	return c.Store.GetVersion(ctx, key)
}

func (c *cuttable) SetIf(ctx context.Context, key string, e store.Entry[string], v store.Version) error {
	if c.cut.Load() {
		return errCut
	}
	return c.Store.SetIf(ctx, key, e, v)
}

func (c *cuttable) DeleteIf(ctx context.Context, key string, v store.Version) error {
	if c.cut.Load() {
		return errCut
	}
	return c.Store.DeleteIf(ctx, key, v)
}

func (c *cuttable) Watch(ctx context.Context, fn func(store.Change)) (store.Watch, error) {
	if c.deaf {
		fn = func(store.Change) {}
	}
	return c.Store.Watch(ctx, fn)
}

// fleet returns three two-level instances over one memory store, each over
// a cuttable view of it, and a plain writer of the memory store.
func fleet(t *testing.T, deaf bool) ([]store.Store[string], []*cuttable, fleetcheck.Plain) {
	t.Helper()
	far := memory.New[string]()
	t.Cleanup(func() { _ = far.Close(context.Background()) })
	var (
		stores []store.Store[string]
		views  []*cuttable
	)
	for range 3 {
		v := &cuttable{Store: far, deaf: deaf}
		s, err := tiered.NewVersioned[string](v, tiered.NearTTL(nearTTL))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = s.Close(context.Background()) })
		stores, views = append(stores, s), append(views, v)
	}
	plain := fleetcheck.Plain{
		Set: func(ctx context.Context, key, value string) error {
			return far.Set(ctx, key, store.Entry[string]{Value: value})
		},
		Delete: far.Delete,
	}
	return stores, views, plain
}

// A healthy fleet with one instance cut from the store for a while, then
// every key deleted: every kind of call is made and recorded, the cut fails
// calls of the cut instance, the deletes are recorded as the wipe of every
// key, and the check finds nothing.
func TestRunHealthyFleet(t *testing.T) {
	stores, views, plain := fleet(t, false)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	res, err := fleetcheck.Run(ctx, fleetcheck.Config{
		Stores: stores, Plain: []fleetcheck.Plain{plain}, PhaseCalls: 500, ProbeWithin: nearTTL / 2,
		Faults: []fleetcheck.Fault{{
			What: "instance 2 cut", Instance: 2, Bound: nearTTL,
			Inject: func() error { views[2].cut.Store(true); return nil },
			Heal:   func() error { views[2].cut.Store(false); return nil },
		}, {
			What: "every key deleted", Instance: history.Everyone, Wipes: true,
			Inject: func() error {
				for _, k := range []string{"k0", "k1", "k2", "k3", "k4", "k5", "k6", "k7", "k8", "k9"} {
					if err := plain.Delete(context.Background(), k); err != nil {
						return err
					}
				}
				return nil
			},
		}},
		Check: history.Config{Bound: 50 * time.Millisecond},
	})
	if err != nil {
		t.Fatal(err)
	}
	rep := res.Report
	t.Log(rep)
	for _, f := range res.Faults {
		t.Log(f)
	}
	for _, v := range rep.Violations {
		t.Error(v)
	}
	if rep.Reads < 1000 || rep.Writes < 10 || rep.FailedWrites == 0 {
		t.Errorf("too few calls, or none failed: %v", rep)
	}
	if len(res.Faults) != 2 || res.Faults[0].Failures < 10 || len(res.History.Faults()) != 2+len(res.Stalls) {
		t.Errorf("faults: %v", res.Faults)
	}
	kinds := map[[2]bool]int{} // [write, absent]
	wipes := 0
	for _, op := range res.History.Ops() {
		if !op.Failed {
			kinds[[2]bool{op.Kind == history.Write, op.Absent}]++
		}
		switch {
		case op.Instance == 4 && op.Kind == history.Write && op.Absent:
			wipes++
		case op.Instance > 3:
			t.Fatalf("op of instance %d: %v", op.Instance, op)
		}
	}
	if len(kinds) != 4 {
		t.Errorf("calls made: %v, want reads of values and misses, sets and deletes", kinds)
	}
	if wipes != 10 {
		t.Errorf("%d deletes recorded for the wipe, want one per key", wipes)
	}
}

// A near tier that hears of no change serves copies until its NearTTL:
// the check finds reads staler than the healthy bound, and none staler
// than the NearTTL.
func TestRunCatchesADeafNearTier(t *testing.T) {
	stores, _, plain := fleet(t, true)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	res, err := fleetcheck.Run(ctx, fleetcheck.Config{
		Stores: stores, Plain: []fleetcheck.Plain{plain}, PhaseCalls: 3000, ProbeWithin: 10 * nearTTL,
		Check: history.Config{Bound: 20 * time.Millisecond},
	})
	if err != nil {
		t.Fatal(err)
	}
	rep := res.Report
	t.Log(rep)
	if rep.Count(history.Stale) == 0 || rep.MaxStaleness <= 20*time.Millisecond {
		t.Errorf("a deaf near tier passed the check: %v", rep)
	}
	if rep.MaxStaleness > nearTTL+100*time.Millisecond {
		t.Errorf("staleness %v past the NearTTL of %v", rep.MaxStaleness, nearTTL)
	}
}

// An instance whose near tier hears of no change is never whole again: the
// probe that ends a fault waits for news, not for the NearTTL.
func TestRunWaitsForTheStream(t *testing.T) {
	stores, _, plain := fleet(t, true)
	ctx, cancel := context.WithTimeout(context.Background(), 3*nearTTL)
	defer cancel()
	res, err := fleetcheck.Run(ctx, fleetcheck.Config{
		Stores: stores, Plain: []fleetcheck.Plain{plain}, PhaseCalls: 100, ProbeWithin: nearTTL / 2,
		Faults: []fleetcheck.Fault{{What: "nothing", Instance: 0, Inject: func() error { return nil }}},
	})
	if !errors.Is(err, context.DeadlineExceeded) || res.Report != nil || len(res.Faults) != 1 {
		t.Fatalf("Run = %v, %v; want the probe to wait until the deadline", res.Faults, err)
	}
}
