package tiered_test

import (
	"context"
	"fmt"
	"testing"
	"testing/synctest"
	"time"

	"github.com/herdcache/herd/store"
	"github.com/herdcache/herd/store/tiered"
)

// plainFar is the far store of the tests as Redis looks to the near tier:
// its changes carry no version and its writes report none, so that the
// near tier tells its own writes' echoes by counting them.
type plainFar struct{ f *farStore }

var _ store.Versioned[int] = plainFar{}

func (p plainFar) Get(ctx context.Context, key string) (store.Entry[int], bool, error) {
	return p.f.Get(ctx, key)
}

func (p plainFar) Set(ctx context.Context, key string, e store.Entry[int]) error {
	return p.f.Set(ctx, key, e)
}

func (p plainFar) Delete(ctx context.Context, key string) error { return p.f.Delete(ctx, key) }

func (p plainFar) GetVersion(ctx context.Context, key string) (store.Entry[int], store.Version, bool, error) {
	return p.f.GetVersion(ctx, key)
}

func (p plainFar) SetIf(ctx context.Context, key string, e store.Entry[int], v store.Version) error {
	return p.f.SetIf(ctx, key, e, v)
}

func (p plainFar) DeleteIf(ctx context.Context, key string, v store.Version) error {
	return p.f.DeleteIf(ctx, key, v)
}

func (p plainFar) VersionRetention() time.Duration { return p.f.VersionRetention() }

func (p plainFar) GetMany(ctx context.Context, keys []string) (map[string]store.Entry[int], error) {
	return p.f.GetMany(ctx, keys)
}

func (p plainFar) Close(ctx context.Context) error { return p.f.Close(ctx) }

func (p plainFar) Watch(ctx context.Context, fn func(store.Change)) (store.Watch, error) {
	return p.f.Watch(ctx, func(c store.Change) {
		c.Version = 0
		fn(c)
	})
}

// plainFleet returns n tiered instances over plainFar{f}, closed, with f,
// at the end of the test.
func plainFleet(t *testing.T, f *farStore, n int) []*tiered.VersionedStore[int] {
	t.Helper()
	t.Cleanup(func() { _ = f.Close(context.Background()) })
	out := make([]*tiered.VersionedStore[int], n)
	for i := range out {
		s, err := tiered.NewVersioned[int](plainFar{f})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = s.Close(context.Background()) })
		out[i] = s
	}
	return out
}

// Without versions, the writer keeps its own writes through their echoes,
// counted: 1,300 writes read back at once, some of them before the echo of
// the previous write of the key came, cost almost no far read; a write by
// another instance after them, delivered before or after the echo, is never
// taken for one.
func TestPlainWriterKeepsItsOwnWrites(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := newFar()
		fl := plainFleet(t, f, 2)
		a, b := fl[0], fl[1]
		ctx := context.Background()
		writeBack(t, a, 1000, 3)
		// Writes of one key in a row, each before the echo of the one
		// before: each copy waits for the echoes the one it replaced
		// waited for.
		for i := range 100 {
			for j := range 3 {
				if err := a.Set(ctx, "k", store.Entry[int]{Value: 10*i + j}); err != nil {
					t.Fatal(err)
				}
			}
			mustValue(t, a, "k", 10*i+2)
			synctest.Wait()
			mustValue(t, a, "k", 10*i+2)
		}
		// Each echo taken has its key read again in the background (the
		// change may stand for a later write too); a write during such a
		// read is not kept, and costs its next read a far read.
		st := a.Stats()
		t.Logf("1,300 own writes read back: %d far reads, %d echoes, %d keys read again", st.FarReads, st.Echoes, st.EchoChecks)
		if st.FarReads > 65 || st.EchoChecks == 0 {
			t.Fatalf("after 1,300 own writes read back: %+v, want at most 5%% far reads, and echoes checked", st)
		}
		for round := range 200 {
			k := fmt.Sprint(round % 10)
			if err := a.Set(ctx, k, store.Entry[int]{Value: -round}); err != nil {
				t.Fatal(err)
			}
			if round%2 == 0 {
				synctest.Wait()
			}
			if err := a.Set(ctx, k, store.Entry[int]{Value: -round - 1000}); err != nil {
				t.Fatal(err)
			}
			if err := b.Set(ctx, k, store.Entry[int]{Value: round}); err != nil {
				t.Fatal(err)
			}
			synctest.Wait()
			mustValue(t, a, k, round)
		}
	})
}

// Without versions, an echo lost with the stream is not taken for a later
// write's change: a write whose report the stream dropped, then a Down (or
// a Gap), then a write by another instance: the writer drops its copy.
func TestPlainLostEchoIsNotTakenForALaterWrite(t *testing.T) {
	for _, loss := range []store.Change{{Down: true}, {Gap: true}} {
		t.Run(fmt.Sprintf("%+v", loss), func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				f := newFar()
				fl := plainFleet(t, f, 2)
				a, b := fl[0], fl[1]
				ctx := context.Background()
				// A write of A, whose echo the stream loses.
				f.unseen(t, func() error { return a.Set(ctx, "k", store.Entry[int]{Value: 1}) })
				f.report(loss)
				synctest.Wait()
				if err := b.Set(ctx, "k", store.Entry[int]{Value: 2}); err != nil {
					t.Fatal(err)
				}
				synctest.Wait()
				mustValue(t, a, "k", 2)
			})
		})
	}
}

// Without versions, a Delete then a Set by the same instance keep the
// Set's value, and a later write by another instance replaces it.
func TestPlainDeleteThenSet(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := newFar()
		fl := plainFleet(t, f, 2)
		a, b := fl[0], fl[1]
		ctx := context.Background()
		for round := range 100 {
			if err := a.Delete(ctx, "k"); err != nil {
				t.Fatal(err)
			}
			if err := a.Set(ctx, "k", store.Entry[int]{Value: round}); err != nil {
				t.Fatal(err)
			}
			mustValue(t, a, "k", round)
			synctest.Wait()
			mustValue(t, a, "k", round)
			if round%10 == 0 {
				if err := b.Set(ctx, "k", store.Entry[int]{Value: -round}); err != nil {
					t.Fatal(err)
				}
				synctest.Wait()
				mustValue(t, a, "k", -round)
			}
		}
		t.Logf("100 rounds of Delete then Set read back: %d far reads", a.Stats().FarReads)
	})
}
