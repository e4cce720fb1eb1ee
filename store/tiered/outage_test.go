package tiered_test

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"testing/synctest"
	"time"

	"github.com/herdcache/herd"
	"github.com/herdcache/herd/store"
	"github.com/herdcache/herd/store/tiered"
)

// fill sets n keys "0".."n-1" to their index on the far store and reads
// them through every instance, so that each holds a near copy.
func fill(t *testing.T, f *farStore, fl []*tiered.VersionedStore[int], n int) {
	t.Helper()
	ctx := context.Background()
	for i := range n {
		if err := f.Set(ctx, fmt.Sprint(i), store.Entry[int]{Value: i}); err != nil {
			t.Fatal(err)
		}
	}
	synctest.Wait()
	for _, s := range fl {
		for i := range n {
			mustValue(t, s, fmt.Sprint(i), i)
		}
	}
}

// Through an outage (the stream Down, the far store unreachable), an
// instance serves the near copies it holds, without asking the far store,
// until their NearTTL, counted from the far read that fetched them; past
// it, a read goes to the far store (and fails), and the copy is no hit.
func TestDownServesNearCopiesUntilNearTTL(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const nearTTL = 10 * time.Second
		f := newFar()
		s := fleet(t, f, 1, tiered.NearTTL(nearTTL), tiered.NearExactClock())[0]
		fill(t, f, []*tiered.VersionedStore[int]{s}, 10)
		filled := time.Now()
		reads := s.Stats().FarReads

		f.broken.Store(true)
		f.report(store.Change{Down: true})
		time.Sleep(nearTTL - time.Nanosecond - time.Since(filled))
		for i := range 10 {
			mustValue(t, s, fmt.Sprint(i), i)
		}
		if st := s.Stats(); st.FarReads != reads || st.Flushes != 0 || st.Downs != 1 {
			t.Fatalf("during the outage: %+v, want no far read (%d before), no flush and one Down", st, reads)
		}
		time.Sleep(time.Nanosecond)
		if _, _, err := s.Get(context.Background(), "0"); !errors.Is(err, store.ErrUnavailable) {
			t.Fatalf("Get past NearTTL in an outage: %v, want the far store's error", err)
		}
		if st := s.Stats(); st.FarReads != reads+1 {
			t.Fatalf("past NearTTL: %d far reads, want %d", st.FarReads, reads+1)
		}
	})
}

// A write through an instance during an outage fails, and leaves no near
// copy: neither the value written nor the one before, which the far store
// may no longer hold.
func TestWriteInOutageLeavesNoNearCopy(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := newFar()
		s := fleet(t, f, 1)[0]
		fill(t, f, []*tiered.VersionedStore[int]{s}, 1)
		f.broken.Store(true)
		f.report(store.Change{Down: true})
		if err := s.Set(context.Background(), "0", store.Entry[int]{Value: 7}); !errors.Is(err, store.ErrUnavailable) {
			t.Fatalf("Set in an outage: %v, want the far store's error", err)
		}
		if e, ok, err := s.Get(context.Background(), "0"); err == nil {
			t.Fatalf("Get after a failed Set = %v, %v, want the far store's error, not a near copy", e.Value, ok)
		}
	})
}

// A Gap (the stream back, changes missed) revalidates the near copies in
// bulk: the keys changed or deleted while the stream was away are read
// anew or dropped, the others stay, and serving every key after the repair
// costs no far read.
func TestGapRevalidatesInsteadOfFlushing(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const n = 2500 // three batches of DefaultRepairBatch
		f := newFar()
		fl := fleet(t, f, 2)
		fill(t, f, fl, n)
		ctx := context.Background()

		f.swallow.Store(true)
		f.report(store.Change{Down: true})
		for i := range 20 { // changed while away: 0-9 set, 10-19 deleted
			k := fmt.Sprint(i)
			if i < 10 {
				_ = f.Set(ctx, k, store.Entry[int]{Value: 1000 + i})
			} else {
				_ = f.Delete(ctx, k)
			}
		}
		synctest.Wait()
		mustValue(t, fl[0], "0", 0) // the stream said nothing yet
		f.swallow.Store(false)
		calls := f.getManys.Load()
		f.report(store.Change{Gap: true})
		synctest.Wait() // the repairs have run

		if got := f.getManys.Load() - calls; got != 2*3 {
			t.Fatalf("%d far GetMany calls for two repairs of %d keys, want 6", got, n)
		}
		for i, s := range fl {
			before := s.Stats()
			if before.Repairs != 1 || before.RepairReads != n || before.RepairDrops != 10 || before.Flushes != 0 {
				t.Fatalf("instance %d after the Gap: %+v, want 1 repair of %d keys, 10 dropped, no flush", i, before, n)
			}
			for j := range n {
				k := fmt.Sprint(j)
				switch {
				case j < 10:
					mustValue(t, s, k, 1000+j)
				case j < 20:
					if v, ok := value(t, s, k); ok {
						t.Fatalf("instance %d read %d for %q, deleted while the stream was away", i, v, k)
					}
				default:
					mustValue(t, s, k, j)
				}
			}
			// The deleted keys are absent from the near tier: each costs a
			// far read. Every other key is served near.
			if reads := s.Stats().FarReads - before.FarReads; reads != 10 {
				t.Fatalf("instance %d: %d far reads to serve %d keys after the repair, want 10 (the deleted keys)", i, reads, n)
			}
		}
	})
}

// A repair whose far reads fail drops the copies it could not revalidate;
// a Down cancels a repair, and leaves the copies it had not reached for the
// next Gap.
func TestRepairDropsWhatItCannotRead(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := newFar()
		s := fleet(t, f, 1)[0]
		fill(t, f, []*tiered.VersionedStore[int]{s}, 10)
		f.broken.Store(true)
		f.report(store.Change{Gap: true})
		synctest.Wait()
		if st := s.Stats(); st.RepairDrops != 10 || st.NearEntries != 0 {
			t.Fatalf("after a repair that could not read: %+v, want 10 dropped and an empty near tier", st)
		}
	})
}

// The instance that wrote keeps its own write near when the stream echoes
// it back: 1,000 writes read back cost no far read. A later write by
// another instance, delivered after the echo or together with it, drops it.
func TestWriterKeepsItsOwnWrite(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := newFar()
		fl := fleet(t, f, 2)
		a, b := fl[0], fl[1]
		ctx := context.Background()
		writeBack(t, a, 1000, 2)
		if st := a.Stats(); st.FarReads != 0 || st.Echoes != 1000 {
			t.Fatalf("writer after 1,000 own writes read back: %+v, want no far read and 1,000 echoes kept", st)
		}
		for round := range 100 {
			k := fmt.Sprint(round % 10)
			if err := a.Set(ctx, k, store.Entry[int]{Value: -round}); err != nil {
				t.Fatal(err)
			}
			if round%2 == 0 {
				synctest.Wait()
			}
			if err := b.Set(ctx, k, store.Entry[int]{Value: round}); err != nil {
				t.Fatal(err)
			}
			synctest.Wait()
			mustValue(t, a, k, round)
			mustValue(t, b, k, round)
		}
	})
}

// An echo lost with the stream is not taken for another: a write whose
// echo the stream dropped, then a Down, then a write by another instance
// that the stream reports: the writer must drop its copy.
func TestLostEchoIsNotTakenForALaterWrite(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := newFar()
		fl := fleet(t, f, 2)
		a, b := fl[0], fl[1]
		ctx := context.Background()
		// A write of A, whose echo the stream loses.
		f.unseen(t, func() error { return a.Set(ctx, "k", store.Entry[int]{Value: 1}) })
		f.report(store.Change{Down: true})
		if err := b.Set(ctx, "k", store.Entry[int]{Value: 2}); err != nil {
			t.Fatal(err)
		}
		synctest.Wait()
		mustValue(t, a, "k", 2)
	})
}

// Streams report several changes of a key as one: Redis, in BCAST
// tracking, sends one invalidation per key for all the writes of an event
// loop iteration; a NATS bucket keeps one message per key, so a write (or
// a Delete, a purge that rolls the subject up) removes an earlier message
// that the watch's consumer was not yet sent. A write by this instance and
// a later write by another, reported as one change: the writer must not
// take it for its echo and keep its own, older write. Every instance must
// read the later write.
func TestCoalescedChangesAreNotTakenForAnEcho(t *testing.T) {
	for _, tc := range []struct {
		name     string
		inFlight bool // the change arrives while A's write is in flight
		delete   bool // B deletes the key instead of writing 2
	}{
		{name: "Set"},
		{name: "Delete", delete: true},
		{name: "SetInFlight", inFlight: true},
		{name: "DeleteInFlight", inFlight: true, delete: true},
	} {
		for _, plain := range []bool{false, true} {
			t.Run(fmt.Sprintf("%s/plain=%v", tc.name, plain), func(t *testing.T) {
				synctest.Test(t, func(t *testing.T) {
					f := newFar()
					fl := fleet(t, f, 2)
					if plain { // without versions: the echo is counted, then checked
						fl = plainFleet(t, f, 2)
					}
					a, b := fl[0], fl[1]
					ctx := context.Background()
					later := func() {
						var err error
						if tc.delete {
							err = b.Delete(ctx, "k")
						} else {
							err = b.Set(ctx, "k", store.Entry[int]{Value: 2})
						}
						if err != nil {
							t.Error(err)
						}
						synctest.Wait()
						f.swallow.Store(false)
						f.report(store.Change{Key: "k"}) // A's write and B's, as one change
					}
					f.swallow.Store(true) // not yet delivered
					if tc.inFlight {
						hook := func(string) { later() }
						f.afterSet.Store(&hook)
					}
					if err := a.Set(ctx, "k", store.Entry[int]{Value: 1}); err != nil {
						t.Fatal(err)
					}
					if !tc.inFlight {
						later()
					}
					synctest.Wait()
					for i, s := range fl {
						got, ok := value(t, s, "k")
						if !tc.delete && (!ok || got != 2) || tc.delete && ok {
							t.Errorf("instance %d read %d, %v after A's write of 1 and B's later write, reported as one change", i, got, ok)
						}
					}
				})
			})
		}
	}
}

// Past NearTTL, a near copy is no hit, but a herd cache over the store
// serves it by stale-if-error when the far store cannot be read and the
// source fails too; with FlushWhenDown there is no copy to serve.
func TestNearCopyIsTheFallbackOfAFailedLoad(t *testing.T) {
	for _, flush := range []bool{false, true} {
		t.Run(fmt.Sprintf("FlushWhenDown=%v", flush), func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				const nearTTL = time.Second
				f := newFar()
				opts := []tiered.Option{tiered.NearTTL(nearTTL)}
				if flush {
					opts = append(opts, tiered.FlushWhenDown())
				}
				s := fleet(t, f, 1, opts...)[0]
				c := herd.New[int](s, herd.TTL(time.Hour), herd.StaleIfError(2*time.Hour))
				t.Cleanup(func() { _ = c.Close(context.Background()) })
				ctx := context.Background()
				if v, err := c.Get(ctx, "k", func(context.Context, string) (int, error) { return 1, nil }); err != nil || v != 1 {
					t.Fatalf("first Get = %d, %v", v, err)
				}
				synctest.Wait() // the load's write-back has landed
				f.broken.Store(true)
				f.report(store.Change{Down: true})
				time.Sleep(2 * nearTTL)
				failing := func(context.Context, string) (int, error) { return 0, errors.New("source down") }
				r, err := c.Fetch(ctx, "k", failing)
				switch {
				case flush && err == nil:
					t.Fatalf("Fetch with FlushWhenDown = %+v, want the source's error", r)
				case !flush && (err != nil || r.Value != 1 || r.Status != herd.StatusStaleOnError):
					t.Fatalf("Fetch = %+v, %v; want 1 served stale on error", r, err)
				}
				if v, err := c.Get(ctx, "k", func(context.Context, string) (int, error) { return 2, nil }); err != nil || v != 2 {
					t.Fatalf("Get with the source back = %d, %v; want 2, loaded", v, err)
				}
			})
		})
	}
}

// A stream that reports only the last of several quick changes of a key
// (a NATS KV watch does, as the bucket keeps one revision per key): the
// writer's echo is never reported, only a later write by another instance.
// With versions, the writer tells that change from its echo and drops its
// copy.
func TestCoalescedChangeIsNotTakenForAnEcho(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := newFar()
		fl := fleet(t, f, 2)
		a, b := fl[0], fl[1]
		ctx := context.Background()
		for round := range 10 {
			// A write of A, whose echo is coalesced away.
			f.unseen(t, func() error { return a.Set(ctx, "k", store.Entry[int]{Value: -round}) })
			if err := b.Set(ctx, "k", store.Entry[int]{Value: round}); err != nil {
				t.Fatal(err)
			}
			synctest.Wait()
			mustValue(t, a, "k", round)
		}
	})
}
