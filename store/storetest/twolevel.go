package storetest

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/herdcache/herd/store"
	"github.com/herdcache/herd/store/tiered"
)

// TwoLevelOptions adjusts [RunTwoLevel] to what a backend can do.
type TwoLevelOptions struct {
	// Cut, when set, cuts far, a store that newFar returned, from its
	// backend (its change stream, reads and writes: a proxy that drops the
	// store's connections, for example) while the backend and the other
	// stores go on, and returns a function that restores it. The
	// loss-and-repair scenario runs only with it.
	Cut func(t *testing.T, far store.Store[Value]) (restore func())
	// Resumes says that the store's stream, once restored after a cut,
	// replays the changes made meanwhile and reports Up, as a NATS watch
	// does; otherwise it must report a Gap, as Redis does, and the near
	// tier is revalidated. Either way, a cut must not flush the near tier.
	Resumes bool
	// Within bounds each wait for the stream (a delivery, a Down, the
	// stream back after a cut); the scenarios fail if it passes. Default:
	// 20s. The instances' NearTTL is an hour, so that no wait ends because
	// a near copy expired.
	Within time.Duration
}

func (o *TwoLevelOptions) defaults() {
	if o.Within == 0 {
		o.Within = 20 * time.Second
	}
}

// twoLevelNearTTL is the NearTTL of the suite's instances: far longer than
// any wait, so that only the stream (or a repair) can drop a near copy.
const twoLevelNearTTL = time.Hour

// RunTwoLevel runs the scenarios that every shared store with a change
// stream ([store.ChangeStream]) must pass as the far tier of two or three
// instances of the two-level store ([tiered.NewVersioned] when the store
// implements [store.Versioned], [tiered.New] otherwise), each over a store
// of its own from newFar (a client of its own of the same backend), as the
// processes of a fleet use it:
//
//   - Delivery: a write through one instance reaches the near tiers of the
//     others, which held the old value, for keys spread over the backend
//     (each instance reads the new value within [TwoLevelOptions].Within,
//     and never the old one after); the writer reads its own write at once;
//     a write and a delete by a plain client of the backend (a store from
//     newFar) reach every instance.
//   - Own writes: writes through one instance, each of a key of its own,
//     read back through it cost no far read, and each write's echo leaves
//     its near copy in place (the store's Echoes count every write, its
//     FarReads stay zero); a burst of writes of a few keys is read back
//     too; a later write through another instance replaces the copy on the
//     writer.
//   - Loss and repair (only with [TwoLevelOptions].Cut): one instance is cut
//     while another changes some keys and deletes some. While cut, the cut
//     instance serves the near copies it holds, with no far read and no
//     flush. Once restored, it reads the changed keys at their new values
//     and the deleted ones absent, and serves the unchanged ones from its
//     near tier: the only far reads are those of the keys that the stream
//     named (the deleted keys after a Gap's revalidation; the changed and
//     deleted ones after a replay), and a Gap is repaired in bulk, dropping
//     exactly the deleted keys, never flushed.
//   - Convergence: three instances write, delete and read the same keys
//     concurrently, then write each key at once, round after round, so
//     that the last writes of a key race on the backend and reach the
//     stream close together (where a stream may report them as one
//     change); once they stop, every instance reads every key as the far
//     store holds it, within Within: no near copy stays on an older value.
//
// A scenario fails if the stream reports a change twice while healthy, as
// the duplicate costs the writer its near copy; the store's contract
// allows duplicates, which the two-level store survives at the cost of a
// far read each.
func RunTwoLevel(t *testing.T, opts TwoLevelOptions, newFar func(t *testing.T) store.Store[Value]) {
	t.Helper()
	opts.defaults()
	if _, ok := newFar(t).(store.ChangeStream); !ok {
		t.Fatalf("the two-level suite needs a far store with a change stream (store.ChangeStream)")
	}
	tl := twoLevel{opts: opts, newFar: newFar}
	t.Run("Delivery", tl.delivery)
	t.Run("OwnWrites", tl.ownWrites)
	if opts.Cut != nil {
		t.Run("LossAndRepair", tl.lossAndRepair)
	}
	t.Run("Convergence", tl.convergence)
}

type twoLevel struct {
	opts   TwoLevelOptions
	newFar func(t *testing.T) store.Store[Value]
}

// nearStore is what the suite uses of a two-level store, of either kind.
type nearStore interface {
	store.Store[Value]
	store.BulkGetter[Value]
	Stats() tiered.Stats
	Close(ctx context.Context) error
}

// An instance is one process of a two-level fleet: its two-level store
// over a far store of its own.
type instance struct {
	far  store.Store[Value]
	near nearStore
}

// instances returns n two-level stores, each over a store of its own from
// newFar, closed when the test ends (before their far stores, which
// newFar's caller closes).
func (tl twoLevel) instances(t *testing.T, n int) []instance {
	t.Helper()
	out := make([]instance, n)
	for i := range out {
		far := tl.newFar(t)
		var (
			s   nearStore
			err error
		)
		if v, ok := far.(store.Versioned[Value]); ok {
			s, err = tiered.NewVersioned[Value](v, tiered.NearTTL(twoLevelNearTTL))
		} else {
			s, err = tiered.New[Value](far, tiered.NearTTL(twoLevelNearTTL))
		}
		if err != nil {
			t.Fatalf("instance %d: %v", i, err)
		}
		t.Cleanup(func() {
			if err := s.Close(context.Background()); err != nil {
				t.Errorf("Close of instance %d: %v", i, err)
			}
		})
		out[i] = instance{far: far, near: s}
	}
	return out
}

// read returns the name of key's value through s, and whether it was found.
func read(t *testing.T, s store.Store[Value], key string) (string, bool) {
	t.Helper()
	e, ok, err := s.Get(context.Background(), key)
	if err != nil {
		t.Fatalf("Get(%q): %v", key, err)
	}
	return e.Value.Name, ok
}

// nameOf says what a read found, for messages.
func nameOf(name string, ok bool) string {
	if !ok {
		return "absent"
	}
	return fmt.Sprintf("%q", name)
}

// await polls cond until it holds, for up to Within, and fails t then with
// what and the last state cond described.
func (tl twoLevel) await(t *testing.T, what string, cond func() (bool, string)) time.Duration {
	t.Helper()
	start := time.Now()
	deadline := start.Add(tl.opts.Within)
	for {
		ok, state := cond()
		if ok {
			return time.Since(start)
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %v; %s", what, tl.opts.Within, state)
		}
		time.Sleep(100 * time.Microsecond)
	}
}

// eventually polls reads of key through in until it finds want ("" for
// absent), then reads it again and fails if it finds anything else: an
// instance never goes back to a value older than one it read. It returns
// how long the first part took.
func (tl twoLevel) eventually(t *testing.T, in nearStore, key, want string) time.Duration {
	t.Helper()
	match := func() (bool, string) {
		name, ok := read(t, in, key)
		return ok == (want != "") && name == want, "read " + nameOf(name, ok)
	}
	took := tl.await(t, fmt.Sprintf("a read of %q finds %s", key, nameOf(want, want != "")), match)
	if ok, state := match(); !ok {
		t.Fatalf("%q: %s after reading %s", key, state, nameOf(want, want != ""))
	}
	return took
}

// noFarRead fails t unless reading every key of keys through in, as want
// says (absent where it has no entry), costs no far read.
func noFarRead(t *testing.T, in nearStore, keys []string, want map[string]string, what string) {
	t.Helper()
	before := in.Stats().FarReads
	for _, k := range keys {
		w, present := want[k]
		if name, ok := read(t, in, k); ok != present || name != w {
			t.Fatalf("%s: %q read %s, want %s", what, k, nameOf(name, ok), nameOf(w, present))
		}
	}
	if n := in.Stats().FarReads - before; n != 0 {
		t.Fatalf("%s: reading %d keys cost %d far reads, want none (near copies)", what, len(keys), n)
	}
}

// twoLevelKeys returns n keys named after prefix: enough of them spread
// over every shard of a sharded backend.
func twoLevelKeys(prefix string, n int) []string {
	keys := make([]string, n)
	for i := range keys {
		keys[i] = fmt.Sprintf("%s-%03d", prefix, i)
	}
	return keys
}

// seed writes each key's value through plain before any instance exists,
// so that no change of these writes reaches the instances' streams.
func seed(t *testing.T, plain store.Store[Value], values map[string]string) {
	t.Helper()
	now := time.Now().Truncate(time.Millisecond)
	for k, v := range values {
		mustSet(t, plain, k, entry(Value{Name: v}, now))
	}
}

// percentile returns the p-th percentile of ds (sorted in place).
func percentile(ds []time.Duration, p int) time.Duration {
	slices.Sort(ds)
	if len(ds) == 0 {
		return 0
	}
	return ds[min(len(ds)-1, len(ds)*p/100)]
}

func (tl twoLevel) delivery(t *testing.T) {
	for _, n := range []int{2, 3} {
		t.Run(fmt.Sprintf("%d instances", n), func(t *testing.T) {
			plain := tl.newFar(t)
			keys := twoLevelKeys("d", 16)
			current := make(map[string]string, len(keys))
			for _, k := range keys {
				current[k] = "seed"
			}
			seed(t, plain, current)
			fl := tl.instances(t, n)
			for _, in := range fl {
				for _, k := range keys {
					read(t, in.near, k) // a near copy of each key
				}
			}
			var took []time.Duration
			const rounds = 20
			for r := range rounds {
				// Every instance holds a near copy of the current values:
				// the write must reach it through the stream.
				for i, in := range fl {
					noFarRead(t, in.near, keys, current, fmt.Sprintf("round %d, instance %d, before the write", r, i))
				}
				w := r % n
				now := time.Now().Truncate(time.Millisecond)
				for _, k := range keys {
					current[k] = fmt.Sprintf("round %d by %d", r, w)
					mustSet(t, fl[w].near, k, entry(Value{Name: current[k]}, now))
					if name, ok := read(t, fl[w].near, k); !ok || name != current[k] {
						t.Fatalf("round %d: the writer read %s right after writing %q", r, nameOf(name, ok), current[k])
					}
				}
				for i, in := range fl {
					if i == w {
						continue
					}
					for _, k := range keys {
						took = append(took, tl.eventually(t, in.near, k, current[k]))
					}
				}
			}
			// A plain client's writes: a Set, then a Delete.
			now := time.Now().Truncate(time.Millisecond)
			for _, k := range keys {
				mustSet(t, plain, k, entry(Value{Name: "plain"}, now))
			}
			for _, in := range fl {
				for _, k := range keys {
					took = append(took, tl.eventually(t, in.near, k, "plain"))
				}
			}
			for _, k := range keys {
				if err := plain.Delete(context.Background(), k); err != nil {
					t.Fatalf("Delete(%q): %v", k, err)
				}
			}
			for _, in := range fl {
				for _, k := range keys {
					took = append(took, tl.eventually(t, in.near, k, ""))
				}
			}
			for i, in := range fl {
				if st := in.near.Stats(); st.Flushes != 0 {
					t.Fatalf("instance %d: %+v, want no flush", i, st)
				}
			}
			t.Logf("%d changes reached the other instances' near tiers in p50 %v, p99 %v (by polling reads)",
				len(took), percentile(took, 50), percentile(took, 99))
		})
	}
}

func (tl twoLevel) ownWrites(t *testing.T) {
	for _, n := range []int{2, 3} {
		t.Run(fmt.Sprintf("%d instances", n), func(t *testing.T) {
			fl := tl.instances(t, n)
			w := fl[0].near
			// Each key written once, so that no echo, nor what a store
			// does on an echo, meets a later write of its key.
			keys := twoLevelKeys("o", 200)
			last := make(map[string]string, len(keys))
			now := time.Now().Truncate(time.Millisecond)
			for i, k := range keys {
				last[k] = fmt.Sprintf("write %d", i)
				mustSet(t, w, k, entry(Value{Name: last[k]}, now))
				if name, ok := read(t, w, k); !ok || name != last[k] {
					t.Fatalf("the writer read %s right after writing %q", nameOf(name, ok), last[k])
				}
			}
			tl.await(t, "the echoes of the writes", func() (bool, string) {
				st := w.Stats()
				return st.Echoes >= uint64(len(keys)) && st.InFlight == 0,
					fmt.Sprintf("the writer's stats: %+v, want %d echoes and nothing in flight", st, len(keys))
			})
			noFarRead(t, w, keys, last, "the writer after its echoes")
			st := w.Stats()
			if st.FarReads != 0 || st.Echoes != uint64(len(keys)) {
				t.Fatalf("the writer after %d own writes read back: %+v, want no far read and %d echoes", len(keys), st, len(keys))
			}
			for _, in := range fl[1:] {
				for _, k := range keys {
					tl.eventually(t, in.near, k, last[k])
				}
			}
			keys = keys[:10]
			// A burst of writes, each read back at once, without waiting
			// for echoes: the writer reads each of its writes.
			before := w.Stats().FarReads
			for i := range 200 {
				k := keys[i%len(keys)]
				last[k] = fmt.Sprintf("burst %d", i)
				mustSet(t, w, k, entry(Value{Name: last[k]}, time.Now().Truncate(time.Millisecond)))
				if name, ok := read(t, w, k); !ok || name != last[k] {
					t.Fatalf("burst write %d: the writer read %s, want %q", i, nameOf(name, ok), last[k])
				}
			}
			t.Logf("200 writes over %d keys read back without waiting for their echoes: %d far reads", len(keys), w.Stats().FarReads-before)
			// A later write through another instance replaces the
			// writer's copy, on the writer and everywhere.
			for i, in := range fl[1:] {
				k := keys[i]
				last[k] = fmt.Sprintf("by instance %d", i+1)
				mustSet(t, in.near, k, entry(Value{Name: last[k]}, time.Now().Truncate(time.Millisecond)))
				for _, other := range fl {
					tl.eventually(t, other.near, k, last[k])
				}
			}
		})
	}
}

func (tl twoLevel) lossAndRepair(t *testing.T) {
	for _, n := range []int{2, 3} {
		t.Run(fmt.Sprintf("%d instances", n), func(t *testing.T) {
			const sentinel = "sentinel"
			plain := tl.newFar(t)
			keys := twoLevelKeys("r", 200)
			changed, deleted := keys[:10], keys[10:20]
			held := map[string]string{sentinel: "before"}
			for _, k := range keys {
				held[k] = "v0"
			}
			seed(t, plain, held)
			fl := tl.instances(t, n)
			cut, writer := fl[0], fl[1].near
			all := append([]string{sentinel}, keys...)
			for _, in := range fl {
				for _, k := range all {
					read(t, in.near, k)
				}
			}
			noFarRead(t, cut.near, all, held, "the instance to cut, before the cut")
			start := cut.near.Stats()

			restore := tl.opts.Cut(t, cut.far)
			restored := false
			defer func() {
				if !restored {
					restore()
				}
			}()
			tl.await(t, "the cut instance's stream reports Down", func() (bool, string) {
				st := cut.near.Stats()
				if st.Flushes != 0 {
					t.Fatalf("the cut instance flushed its near tier: %+v", st)
				}
				return st.Downs > start.Downs, fmt.Sprintf("its stats: %+v", st)
			})
			now := time.Now().Truncate(time.Millisecond)
			after := make(map[string]string, len(held))
			for k, v := range held {
				after[k] = v
			}
			for _, k := range changed {
				after[k] = "v1"
				mustSet(t, writer, k, entry(Value{Name: "v1"}, now))
			}
			for _, k := range deleted {
				delete(after, k)
				if err := writer.Delete(context.Background(), k); err != nil {
					t.Fatalf("Delete(%q): %v", k, err)
				}
			}
			// Cut, the instance serves what it holds: no far read.
			noFarRead(t, cut.near, all, held, "the cut instance during the cut")
			for i, in := range fl[2:] { // the instances not cut see the changes
				for _, k := range keys[:20] {
					tl.eventually(t, in.near, k, after[k])
				}
				if st := in.near.Stats(); st.Downs != 0 {
					t.Fatalf("instance %d, not cut: %+v, want no Down", i+2, st)
				}
			}

			restore()
			restored = true
			// The stream is back, and has delivered (or replayed) what
			// came before, once the cut instance reads a write made after
			// the restore.
			after[sentinel] = "after"
			mustSet(t, writer, sentinel, entry(Value{Name: "after"}, time.Now().Truncate(time.Millisecond)))
			tl.eventually(t, cut.near, sentinel, "after")
			if !tl.opts.Resumes {
				tl.await(t, "the cut instance's repair", func() (bool, string) {
					st := cut.near.Stats()
					if st.Flushes != 0 {
						t.Fatalf("the cut instance flushed its near tier: %+v", st)
					}
					return st.RepairReads-start.RepairReads >= uint64(len(keys)) && st.InFlight == 0,
						fmt.Sprintf("its stats: %+v, want %d keys revalidated", st, len(keys))
				})
			}

			before := cut.near.Stats()
			for _, k := range keys {
				want, present := after[k]
				if name, ok := read(t, cut.near, k); ok != present || name != want {
					t.Fatalf("after the restore, %q read %s, want %s", k, nameOf(name, ok), nameOf(want, present))
				}
			}
			end := cut.near.Stats()
			reads := end.FarReads - before.FarReads
			wantReads := uint64(len(deleted))
			if tl.opts.Resumes {
				wantReads += uint64(len(changed))
			}
			t.Logf("after the cut: %d repairs read %d keys and dropped %d; %d far reads to serve %d keys",
				end.Repairs-start.Repairs, end.RepairReads-start.RepairReads, end.RepairDrops-start.RepairDrops, reads, len(keys))
			switch {
			case end.Flushes != 0:
				t.Fatalf("the cut instance flushed its near tier: %+v", end)
			case reads != wantReads:
				t.Fatalf("%d far reads to serve %d keys after the restore, want %d (the keys the stream named); stats %+v",
					reads, len(keys), wantReads, end)
			case tl.opts.Resumes && end.Repairs != start.Repairs:
				t.Fatalf("a stream that resumes had the near tier repaired: %+v", end)
			case !tl.opts.Resumes && end.Repairs == start.Repairs:
				t.Fatalf("no repair after a stream that cannot resume came back: %+v", end)
			case !tl.opts.Resumes && end.RepairDrops-start.RepairDrops != uint64(len(deleted)):
				t.Fatalf("the repair dropped %d near copies, want the %d deleted keys: %+v",
					end.RepairDrops-start.RepairDrops, len(deleted), end)
			}
			for i, in := range fl {
				if st := in.near.Stats(); st.Flushes != 0 {
					t.Fatalf("instance %d flushed its near tier: %+v", i, st)
				}
			}
		})
	}
}

func (tl twoLevel) convergence(t *testing.T) {
	plain := tl.newFar(t)
	fl := tl.instances(t, 3)
	keys := twoLevelKeys("c", 8)
	ctx := context.Background()
	var (
		wg      sync.WaitGroup
		readers sync.WaitGroup
		stop    = make(chan struct{})
	)
	for i, in := range fl {
		// A reader fills the near tier while the writers go: its far
		// reads race with the changes.
		readers.Go(func() {
			for m := 0; ; m++ {
				select {
				case <-stop:
					return
				default:
				}
				if _, _, err := in.near.Get(ctx, keys[m%len(keys)]); err != nil {
					t.Errorf("instance %d, reader: %v", i, err)
					return
				}
			}
		})
		for g := range 2 {
			wg.Go(func() {
				for m := range 100 {
					k := keys[(m*7+g*3+i)%len(keys)]
					var err error
					switch m % 5 {
					case 4:
						err = in.near.Delete(ctx, k)
					case 2:
						_, err = in.near.GetMany(ctx, keys)
					default:
						v := Value{Name: fmt.Sprintf("instance %d, writer %d, write %d", i, g, m)}
						err = in.near.Set(ctx, k, entry(v, time.Now().Truncate(time.Millisecond)))
					}
					if err == nil {
						_, _, err = in.near.Get(ctx, keys[m%len(keys)])
					}
					if err != nil {
						t.Errorf("instance %d, writer %d: %v", i, g, err)
						return
					}
				}
			})
		}
	}
	wg.Wait()
	close(stop)
	readers.Wait()
	if t.Failed() {
		return
	}
	// Then the three write each key at once, round after round, with
	// every instance holding a copy of it: the last writes of a key race
	// on the backend, and the stream reports them close together.
	for r := range 10 {
		for _, k := range keys {
			start := make(chan struct{})
			for i, in := range fl {
				read(t, in.near, k)
				wg.Go(func() {
					<-start
					var err error
					if (r+i)%4 == 3 {
						err = in.near.Delete(ctx, k)
					} else {
						v := Value{Name: fmt.Sprintf("instance %d, round %d", i, r)}
						err = in.near.Set(ctx, k, entry(v, time.Now().Truncate(time.Millisecond)))
					}
					if err != nil {
						t.Errorf("instance %d, round %d: %v", i, r, err)
					}
				})
			}
			close(start)
			wg.Wait()
		}
	}
	if t.Failed() {
		return
	}
	for _, k := range keys {
		name, ok := read(t, plain, k)
		want := ""
		if ok {
			want = name
		}
		for i, in := range fl {
			tl.await(t, fmt.Sprintf("instance %d reads %q as the far store holds it (%s)", i, k, nameOf(name, ok)), func() (bool, string) {
				got, found := read(t, in.near, k)
				return found == ok && got == want, fmt.Sprintf("it read %s; stats %+v", nameOf(got, found), in.near.Stats())
			})
		}
	}
	for i, in := range fl {
		if st := in.near.Stats(); st.InFlight != 0 || st.Flushes != 0 {
			t.Fatalf("instance %d after the writes: %+v, want nothing in flight and no flush", i, st)
		}
	}
}
