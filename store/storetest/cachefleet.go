package storetest

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/herdcache/herd"
	"github.com/herdcache/herd/store"
)

// FleetOptions adjusts [RunFleet] to what a backend can do.
type FleetOptions struct {
	// LockTTL is the lease of the fleet's locks in the scenarios where a
	// holder dies or loses its lease; they wait about that long, twice.
	// Default: 500ms.
	LockTTL time.Duration
}

func (o *FleetOptions) defaults() {
	if o.LockTTL == 0 {
		o.LockTTL = 500 * time.Millisecond
	}
}

// RunFleet runs the scenarios that every shared store must pass under two
// and three herd caches, as the processes of a fleet use it: each cache
// over a store of its own from newStore (a client of its own of the same
// backend), with the store as the fleet's locker when it is a
// [store.Locker]. Each cache's Close closes its store: for an in-process
// store that the caches share, newStore returns a view of it whose Close
// does nothing. The scenarios run when the store has what they need:
//
//   - cold misses coalesce (a Locker): the same cold keys asked of every
//     instance at once, through GetMany, overlapping GetManys and Get, are
//     loaded once each across the fleet;
//   - writes win (a [store.Versioned]): a Set on one instance that lands
//     while another loads the key, through Get or GetMany, wins on every
//     instance, and the late load is not written back;
//   - a holder dies (a Locker): keys locked by a process that never
//     stores nor extends are taken over when their leases end, while the
//     rest of the batch loads at once;
//   - a lease is lost (a Locker and a Versioned store): a holder whose
//     leases are not extended loses them to another instance, whose value
//     the late holder's write-back does not overwrite.
//
// Unlike [Run], the scenarios take real time (about two lock TTLs each): a
// backend's server runs on its own clock.
func RunFleet(t *testing.T, opts FleetOptions, newStore func(t *testing.T) store.Store[Value]) {
	t.Helper()
	opts.defaults()
	probe := newStore(t)
	_, locks := probe.(store.Locker)
	_, versioned := probe.(store.Versioned[Value])
	f := fleet{opts: opts, newStore: newStore}
	if locks {
		t.Run("ColdMissesCoalesce", f.coldMisses)
		t.Run("HolderDies", f.holderDies)
	}
	if versioned {
		t.Run("WritesWin", f.writesWin)
	}
	if locks && versioned {
		t.Run("LeaseLost", f.leaseLost)
	}
}

type fleet struct {
	opts     FleetOptions
	newStore func(t *testing.T) store.Store[Value]
}

// caches returns n caches over stores of their own, closed when the test
// ends; with the stores' locks when locked (and the locker lk if given).
func (f fleet) caches(t *testing.T, n int, locked bool, lk store.Locker, opts ...herd.Option) ([]*herd.Cache[Value], []store.Store[Value]) {
	t.Helper()
	caches := make([]*herd.Cache[Value], n)
	stores := make([]store.Store[Value], n)
	for i := range caches {
		s := f.newStore(t)
		o := append([]herd.Option{herd.TTL(time.Hour)}, opts...)
		if locked {
			l := lk
			if l == nil {
				l = s.(store.Locker)
			}
			o = append(o, herd.WithLocker(l, f.opts.LockTTL))
		}
		stores[i] = s
		caches[i] = herd.New[Value](s, o...)
	}
	t.Cleanup(func() {
		for _, c := range caches {
			if err := c.Close(context.Background()); err != nil {
				t.Errorf("Close: %v", err)
			}
		}
	})
	_ = stores[0] // the stores are the caches' to close
	return caches, stores
}

// source counts the loads of each key, each taking took.
type source struct {
	mu    sync.Mutex
	loads map[string]int
	took  time.Duration
	calls [][]string
}

func (s *source) batch(_ context.Context, keys []string) (map[string]Value, error) {
	s.mu.Lock()
	if s.loads == nil {
		s.loads = make(map[string]int)
	}
	for _, k := range keys {
		s.loads[k]++
	}
	s.calls = append(s.calls, slices.Clone(keys))
	s.mu.Unlock()
	time.Sleep(s.took)
	out := make(map[string]Value, len(keys))
	for _, k := range keys {
		out[k] = Value{Name: "v:" + k}
	}
	return out, nil
}

func (s *source) one(ctx context.Context, key string) (Value, error) {
	vals, err := s.batch(ctx, []string{key})
	return vals[key], err
}

// off returns the keys not loaded exactly want times.
func (s *source) off(keys []string, want int) []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var off []string
	for _, k := range keys {
		if n := s.loads[k]; n != want {
			off = append(off, fmt.Sprintf("%s:%d", k, n))
		}
	}
	return off
}

func fleetKeys(prefix string, n int) []string {
	keys := make([]string, n)
	for i := range keys {
		keys[i] = fmt.Sprintf("%s-%02d", prefix, i)
	}
	return keys
}

func (f fleet) coldMisses(t *testing.T) {
	for _, n := range []int{2, 3} {
		t.Run(fmt.Sprintf("%d instances", n), func(t *testing.T) {
			caches, _ := f.caches(t, n, true, nil)
			src := &source{took: 50 * time.Millisecond}
			keys := fleetKeys(t.Name(), 30)
			var wg sync.WaitGroup
			ctx := context.Background()
			for _, c := range caches {
				for _, ks := range [][]string{keys, keys[:20], keys[10:]} {
					wg.Go(func() {
						got, err := c.GetMany(ctx, ks, src.batch)
						if err != nil || len(got) != len(ks) {
							t.Errorf("GetMany of %d keys = %d values, %v", len(ks), len(got), err)
						}
					})
				}
				for _, k := range keys[5:15] {
					wg.Go(func() {
						if v, err := c.Get(ctx, k, src.one); err != nil || v.Name != "v:"+k {
							t.Errorf("Get(%s) = %+v, %v", k, v, err)
						}
					})
				}
			}
			wg.Wait()
			if off := src.off(keys, 1); len(off) > 0 {
				t.Fatalf("keys not loaded exactly once across %d instances: %v", n, off)
			}
		})
	}
}

func (f fleet) holderDies(t *testing.T) {
	caches, stores := f.caches(t, 2, true, nil)
	keys := fleetKeys(t.Name(), 6)
	ctx := context.Background()
	// A process takes two keys' locks and dies: it never extends, releases
	// nor stores.
	for _, k := range keys[:2] {
		if _, err := stores[1].(store.Locker).TryLock(ctx, k, f.opts.LockTTL); err != nil {
			t.Fatal(err)
		}
	}
	src := &source{}
	start := time.Now()
	var mu sync.Mutex
	when := map[string]time.Duration{}
	load := func(ctx context.Context, ks []string) (map[string]Value, error) {
		mu.Lock()
		for _, k := range ks {
			when[k] = time.Since(start)
		}
		mu.Unlock()
		return src.batch(ctx, ks)
	}
	got, err := caches[0].GetMany(ctx, keys, load)
	if err != nil || len(got) != len(keys) {
		t.Fatalf("GetMany = %d values, %v", len(got), err)
	}
	mu.Lock()
	defer mu.Unlock()
	for _, k := range keys[:2] {
		if when[k] < f.opts.LockTTL/2 {
			t.Errorf("held key %s loaded %v after the start, long before the dead holder's lease of %v ended", k, when[k], f.opts.LockTTL)
		}
	}
	for _, k := range keys[2:] {
		if when[k] >= f.opts.LockTTL/2 {
			t.Errorf("free key %s loaded %v after the start: it waited for the held ones", k, when[k])
		}
	}
	if off := src.off(keys, 1); len(off) > 0 {
		t.Fatalf("keys not loaded exactly once: %v", off)
	}
}

func (f fleet) writesWin(t *testing.T) {
	for _, via := range []string{"Get", "GetMany"} {
		t.Run(via, func(t *testing.T) {
			caches, stores := f.caches(t, 3, false, nil)
			a, b := caches[0], caches[1]
			key := t.Name()
			entered, release := make(chan struct{}), make(chan struct{})
			load := func(context.Context, []string) (map[string]Value, error) {
				close(entered)
				<-release
				return map[string]Value{key: {Name: "loaded before the write"}}, nil
			}
			done := make(chan error, 1)
			go func() {
				var err error
				if via == "Get" {
					_, err = a.Get(context.Background(), key, func(ctx context.Context, k string) (Value, error) {
						vals, lerr := load(ctx, []string{k})
						return vals[k], lerr
					})
				} else {
					_, err = a.GetMany(context.Background(), []string{key}, load)
				}
				done <- err
			}()
			<-entered
			if err := b.Set(context.Background(), key, Value{Name: "written by B"}); err != nil {
				t.Fatal(err)
			}
			close(release)
			if err := <-done; err != nil {
				t.Fatal(err)
			}
			if err := a.Close(context.Background()); err != nil { // A's write-back is done
				t.Fatal(err)
			}
			for i, s := range stores[1:] { // A's was closed with it
				if e, ok, err := s.Get(context.Background(), key); err != nil || !ok || e.Value.Name != "written by B" {
					t.Fatalf("instance %d's store holds %+v (%v, %v), want B's write", i+1, e.Value, ok, err)
				}
			}
			if st := a.Stats(); st.WriteConflicts != 1 {
				t.Fatalf("A's stats %+v, want its late write-back refused", st)
			}
		})
	}
}

// noExtend is a locker whose leases cannot be extended, as a backend that
// stopped answering Extend: they end at their TTL whatever the holder does.
type noExtend struct{ store.Locker }

func (n noExtend) TryLock(ctx context.Context, key string, ttl time.Duration) (store.Lock, error) {
	lk, err := n.Locker.TryLock(ctx, key, ttl)
	if err != nil {
		return nil, err
	}
	return noExtendLock{lk}, nil
}

type noExtendLock struct{ store.Lock }

var errExtend = errors.New("storetest: extend refused")

func (noExtendLock) Extend(context.Context, time.Duration) error { return errExtend }

func (f fleet) leaseLost(t *testing.T) {
	for _, via := range []string{"Get", "GetMany"} {
		t.Run(via, func(t *testing.T) {
			lk := noExtend{f.newStore(t).(store.Locker)}
			caches, stores := f.caches(t, 2, true, lk)
			a, b := caches[0], caches[1]
			key := t.Name()
			slow := func(context.Context, []string) (map[string]Value, error) {
				time.Sleep(3 * f.opts.LockTTL) // outlives its lease
				return map[string]Value{key: {Name: "older"}}, nil
			}
			done := make(chan error, 1)
			go func() {
				var err error
				if via == "Get" {
					_, err = a.Get(context.Background(), key, func(ctx context.Context, k string) (Value, error) {
						vals, lerr := slow(ctx, []string{k})
						return vals[k], lerr
					})
				} else {
					_, err = a.GetMany(context.Background(), []string{key}, slow)
				}
				done <- err
			}()
			time.Sleep(f.opts.LockTTL + f.opts.LockTTL/2) // A's lease has ended: B takes the lock
			v, err := b.Get(context.Background(), key, func(context.Context, string) (Value, error) { return Value{Name: "newer"}, nil })
			if err != nil || v.Name != "newer" {
				t.Fatalf("B's Get = %+v, %v", v, err)
			}
			if err := <-done; err != nil {
				t.Fatal(err)
			}
			if err := a.Close(context.Background()); err != nil {
				t.Fatal(err)
			}
			if e, ok, err := stores[1].Get(context.Background(), key); err != nil || !ok || e.Value.Name != "newer" {
				t.Fatalf("the store holds %+v (%v, %v) after A's late load, want B's newer value", e.Value, ok, err)
			}
			if st := a.Stats(); st.WriteConflicts != 1 {
				t.Fatalf("A's stats %+v, want its late write-back refused", st)
			}
		})
	}
}
