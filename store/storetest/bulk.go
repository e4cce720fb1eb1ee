package storetest

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	"github.com/herdcache/herd/store"
)

func bulkVersioned(t *testing.T, s store.Store[Value]) store.BulkVersioned[Value] {
	t.Helper()
	b, ok := s.(store.BulkVersioned[Value])
	if !ok {
		t.Fatalf("%T does not implement store.BulkVersioned", s)
	}
	return b
}

func bulkLocker(t *testing.T, s store.Store[Value]) store.BulkLocker {
	t.Helper()
	l, ok := s.(store.BulkLocker)
	if !ok {
		t.Fatalf("%T does not implement store.BulkLocker", s)
	}
	return l
}

// bulkGetVersions: GetVersions agrees with GetVersion key by key: present,
// deleted, expired, never written, not-found entries and odd keys, in the
// order asked for; an empty list gives no results.
func (s suite) bulkGetVersions(t *testing.T) {
	st := bulkVersioned(t, s.newStore(t))
	ctx := context.Background()
	now := s.now()
	keys := []string{"present", "deleted", "past", "never", "not-found"}
	mustSet(t, st, "present", entry(Value{Name: "p", N: 1}, now))
	mustSet(t, st, "deleted", entry(Value{Name: "d"}, now))
	if err := st.Delete(ctx, "deleted"); err != nil {
		t.Fatal(err)
	}
	mustSet(t, st, "past", store.Entry[Value]{Value: Value{Name: "gone"}, KeepUntil: now.Add(-time.Second)})
	mustSet(t, st, "not-found", store.Entry[Value]{NotFound: true, StoredAt: now, KeepUntil: now.Add(time.Hour)})
	for i, k := range OddKeys(s.opts.LongKey) {
		keys = append(keys, k)
		if i%2 == 0 {
			mustSet(t, st, k, entry(Value{Name: "odd", N: int64(i)}, now))
		}
	}
	for i := range 200 {
		k := fmt.Sprintf("many-%d", i)
		keys = append(keys, k)
		if i%3 == 0 {
			mustSet(t, st, k, entry(Value{N: int64(i)}, now))
		}
	}
	got := st.GetVersions(ctx, keys)
	if len(got) != len(keys) {
		t.Fatalf("GetVersions of %d keys returned %d results", len(keys), len(got))
	}
	for i, k := range keys {
		r := got[i]
		if r.Err != nil {
			t.Fatalf("GetVersions: key %q: %v", k, r.Err)
		}
		e, v, ok, err := st.GetVersion(ctx, k)
		if err != nil {
			t.Fatalf("GetVersion(%q): %v", k, err)
		}
		if r.Found != ok || r.Version != v {
			t.Fatalf("key %q: GetVersions found=%v version=%d, GetVersion found=%v version=%d", k, r.Found, r.Version, ok, v)
		}
		if ok {
			sameEntry(t, r.Entry, e)
		}
	}
	if !got[0].Found || got[1].Found || got[2].Found || got[3].Found || !got[4].Found || !got[4].Entry.NotFound {
		t.Fatalf("GetVersions of present, deleted, past, never, not-found: %+v", got[:5])
	}
	if got[1].Version == 0 {
		t.Fatal("GetVersions: a deleted key has version 0, want the deletion's")
	}
	if none := st.GetVersions(ctx, nil); len(none) != 0 {
		t.Fatalf("GetVersions(nil) = %v, want no results", none)
	}
}

// A bulkCase is one key of the WriteIf test: how it starts, what another
// client does after its version is read, and what the batch writes.
type bulkCase struct {
	present bool                                                          // set before its version is read
	raced   func(b store.Store[Value], key string) error                  // another client's write after the read
	delete  bool                                                          // the batch deletes instead of setting
	check   func(t *testing.T, key string, e store.Entry[Value], ok bool) // the state afterwards
}

// bulkWriteIf: WriteIf writes the keys whose version is still the one read
// and refuses exactly the others with ErrConflict, deletes among sets,
// keys never written (version zero) among keys present, in any order; the
// keys written get new versions, the refused ones keep the other client's
// write; and the same batch again is refused whole.
func (s suite) bulkWriteIf(t *testing.T) {
	a := bulkVersioned(t, s.newStore(t))
	b := s.newStore(t)
	ctx := context.Background()
	now := s.now()
	set := func(b store.Store[Value], key string) error {
		return b.Set(ctx, key, entry(Value{Name: "other"}, now))
	}
	del := func(b store.Store[Value], key string) error { return b.Delete(ctx, key) }
	written := func(t *testing.T, key string, e store.Entry[Value], ok bool) {
		t.Helper()
		if !ok || e.Value.Name != "batch:"+key {
			t.Fatalf("%s: after WriteIf the store holds %+v (found %v), want the batch's write", key, e.Value, ok)
		}
	}
	gone := func(t *testing.T, key string, e store.Entry[Value], ok bool) {
		t.Helper()
		if ok {
			t.Fatalf("%s: deleted by WriteIf, still holds %+v", key, e.Value)
		}
	}
	others := func(t *testing.T, key string, e store.Entry[Value], ok bool) {
		t.Helper()
		if !ok || e.Value.Name != "other" {
			t.Fatalf("%s: a refused write changed the other client's entry: %+v (found %v)", key, e.Value, ok)
		}
	}
	cases := map[string]bulkCase{
		"fresh-set":        {check: written},
		"fresh-delete":     {delete: true, check: gone},
		"present-set":      {present: true, check: written},
		"present-delete":   {present: true, delete: true, check: gone},
		"raced-set":        {present: true, raced: set, check: others},
		"raced-fresh":      {raced: set, check: others},
		"raced-fresh-del":  {raced: set, delete: true, check: others},
		"raced-delete":     {present: true, raced: del, check: gone},
		"raced-delete-del": {present: true, raced: del, delete: true, check: gone},
	}
	var keys []string
	for name := range cases {
		for i := range 4 { // several of each, so that they span slots and shards
			keys = append(keys, fmt.Sprintf("%s-%d", name, i))
		}
	}
	rand.Shuffle(len(keys), func(i, j int) { keys[i], keys[j] = keys[j], keys[i] })
	caseOf := func(key string) bulkCase { return cases[key[:len(key)-2]] }
	for _, k := range keys {
		if caseOf(k).present {
			mustSet(t, a, k, entry(Value{Name: "old"}, now))
		}
	}
	reads := a.GetVersions(ctx, keys)
	writes := make([]store.ConditionalWrite[Value], len(keys))
	for i, k := range keys {
		if reads[i].Err != nil {
			t.Fatalf("GetVersions: %q: %v", k, reads[i].Err)
		}
		c := caseOf(k)
		if c.raced != nil {
			if err := c.raced(b, k); err != nil {
				t.Fatalf("the other client's write of %q: %v", k, err)
			}
		}
		writes[i] = store.ConditionalWrite[Value]{
			Key: k, Version: reads[i].Version, Delete: c.delete,
			Entry: entry(Value{Name: "batch:" + k, N: int64(i)}, now),
		}
	}
	errs := a.WriteIf(ctx, writes)
	if len(errs) != len(writes) {
		t.Fatalf("WriteIf of %d writes returned %d results", len(writes), len(errs))
	}
	for i, k := range keys {
		c := caseOf(k)
		switch err := errs[i]; {
		case c.raced != nil && !errors.Is(err, store.ErrConflict):
			t.Fatalf("%s: WriteIf after another client's write: %v, want ErrConflict", k, err)
		case c.raced == nil && err != nil:
			t.Fatalf("%s: WriteIf with the current version: %v", k, err)
		}
		e, v, ok, err := a.GetVersion(ctx, k)
		if err != nil {
			t.Fatal(err)
		}
		c.check(t, k, e, ok)
		if v == reads[i].Version {
			t.Fatalf("%s: version still %d after a write", k, v)
		}
	}
	// Every key was written since the versions were read: all refused.
	for i, err := range a.WriteIf(ctx, writes) {
		if !errors.Is(err, store.ErrConflict) {
			t.Fatalf("%s: WriteIf again with the old version: %v, want ErrConflict", keys[i], err)
		}
	}
	if none := a.WriteIf(ctx, nil); len(none) != 0 {
		t.Fatalf("WriteIf(nil) = %v, want no results", none)
	}
}

// bulkWriteIfConcurrent: batches from three clients and single SetIfs, all
// holding the same versions, race over the same keys: each key has exactly
// one winner, and holds its write.
func (s suite) bulkWriteIfConcurrent(t *testing.T) {
	stores := []store.BulkVersioned[Value]{
		bulkVersioned(t, s.newStore(t)), bulkVersioned(t, s.newStore(t)), bulkVersioned(t, s.newStore(t)),
	}
	ctx := context.Background()
	now := s.now()
	const n = 30
	keys := make([]string, n)
	for i := range keys {
		keys[i] = fmt.Sprintf("contended-%d", i)
		if i%2 == 1 {
			mustSet(t, stores[0], keys[i], entry(Value{Name: "old"}, now))
		}
	}
	reads := stores[0].GetVersions(ctx, keys)
	var (
		wg     sync.WaitGroup
		mu     sync.Mutex
		wins   = make([][]string, n) // the winners of each key
		failed []error
	)
	record := func(i int, who string, err error) {
		mu.Lock()
		defer mu.Unlock()
		switch {
		case err == nil:
			wins[i] = append(wins[i], who)
		case !errors.Is(err, store.ErrConflict):
			failed = append(failed, fmt.Errorf("%s, key %q: %w", who, keys[i], err))
		}
	}
	start := make(chan struct{})
	for c, st := range stores {
		wg.Go(func() {
			who := fmt.Sprintf("batch %d", c)
			writes := make([]store.ConditionalWrite[Value], n)
			for i, k := range keys {
				writes[i] = store.ConditionalWrite[Value]{Key: k, Version: reads[i].Version, Entry: entry(Value{Name: who}, now)}
			}
			<-start
			for i, err := range st.WriteIf(ctx, writes) {
				record(i, who, err)
			}
		})
	}
	for i, k := range keys {
		wg.Go(func() {
			who := fmt.Sprintf("single %d", i)
			<-start
			record(i, who, stores[i%len(stores)].SetIf(ctx, k, entry(Value{Name: who}, now), reads[i].Version))
		})
	}
	close(start)
	wg.Wait()
	if len(failed) > 0 {
		t.Fatalf("conditional writes failed: %v", failed)
	}
	for i, k := range keys {
		if len(wins[i]) != 1 {
			t.Fatalf("%s: winners %v, want exactly one", k, wins[i])
		}
		if got, ok := mustGet(t, stores[1], k); !ok || got.Value.Name != wins[i][0] {
			t.Fatalf("%s: store holds %+v, want the winner %s's write", k, got.Value, wins[i][0])
		}
	}
}

// bulkTryLockMany: the keys another owner holds come back ErrLocked, the
// others locked; those locks exclude a single TryLock and a second batch,
// and UnlockMany frees them.
func (s suite) bulkTryLockMany(t *testing.T) {
	a, b := bulkLocker(t, s.newStore(t)), locker(t, s.newStore(t))
	ctx := context.Background()
	var keys []string
	held := make(map[string]store.Lock)
	for i := range 12 {
		k := fmt.Sprintf("lock-%d", i)
		keys = append(keys, k)
		if i%3 == 1 {
			l, err := b.TryLock(ctx, k, time.Minute)
			if err != nil {
				t.Fatal(err)
			}
			held[k] = l
		}
	}
	res := a.TryLockMany(ctx, keys, time.Minute)
	if len(res) != len(keys) {
		t.Fatalf("TryLockMany of %d keys returned %d results", len(keys), len(res))
	}
	var mine []store.Lock
	tokens := make(map[string]uint64)
	for k, l := range held {
		tokens[k] = l.Token()
	}
	for i, k := range keys {
		r := res[i]
		if _, other := held[k]; other {
			if !errors.Is(r.Err, store.ErrLocked) || r.Lock != nil {
				t.Fatalf("%s, held by another owner: TryLockMany = %v, %v; want ErrLocked", k, r.Lock, r.Err)
			}
			continue
		}
		if r.Err != nil || r.Lock == nil {
			t.Fatalf("%s, free: TryLockMany = %v, %v; want a lock", k, r.Lock, r.Err)
		}
		mine = append(mine, r.Lock)
		tokens[k] = r.Lock.Token()
		if _, err := b.TryLock(ctx, k, time.Minute); !errors.Is(err, store.ErrLocked) {
			t.Fatalf("%s: TryLock while TryLockMany's lock is held: %v, want ErrLocked", k, err)
		}
	}
	for i, r := range a.TryLockMany(ctx, keys, time.Minute) {
		if !errors.Is(r.Err, store.ErrLocked) {
			t.Fatalf("%s: second TryLockMany while held: %v, %v; want ErrLocked", keys[i], r.Lock, r.Err)
		}
	}
	for i, err := range a.UnlockMany(ctx, mine) {
		if err != nil {
			t.Fatalf("UnlockMany, lock %d: %v", i, err)
		}
	}
	for _, l := range held {
		if err := l.Unlock(ctx); err != nil {
			t.Fatal(err)
		}
	}
	// All free again: the next owner wins every key, with tokens above
	// the last owner's.
	res = a.TryLockMany(ctx, keys, time.Minute)
	var again []store.Lock
	for i, r := range res {
		if r.Err != nil {
			t.Fatalf("%s: TryLockMany after UnlockMany: %v", keys[i], r.Err)
		}
		if r.Lock.Token() <= tokens[keys[i]] {
			t.Fatalf("%s: fencing token went from %d to %d, want it to grow", keys[i], tokens[keys[i]], r.Lock.Token())
		}
		again = append(again, r.Lock)
	}
	for i, err := range a.UnlockMany(ctx, again) {
		if err != nil {
			t.Fatalf("%s: UnlockMany: %v", keys[i], err)
		}
	}
	if none := a.TryLockMany(ctx, nil, time.Minute); len(none) != 0 {
		t.Fatalf("TryLockMany(nil) = %v, want no results", none)
	}
	if none := a.UnlockMany(ctx, nil); len(none) != 0 {
		t.Fatalf("UnlockMany(nil) = %v, want no results", none)
	}
	if none := a.ExtendMany(ctx, nil, time.Minute); len(none) != 0 {
		t.Fatalf("ExtendMany(nil) = %v, want no results", none)
	}
}

// bulkLockExclusion: batches from three clients and single TryLocks race
// for the same keys: each key has exactly one owner.
func (s suite) bulkLockExclusion(t *testing.T) {
	lockers := []store.BulkLocker{
		bulkLocker(t, s.newStore(t)), bulkLocker(t, s.newStore(t)), bulkLocker(t, s.newStore(t)),
	}
	ctx := context.Background()
	const n = 30
	keys := make([]string, n)
	for i := range keys {
		keys[i] = fmt.Sprintf("contended-%d", i)
	}
	type owner struct {
		by   int // the locker
		lock store.Lock
	}
	var (
		wg     sync.WaitGroup
		mu     sync.Mutex
		owners = make([][]owner, n)
		failed []error
	)
	record := func(i, by int, l store.Lock, err error) {
		mu.Lock()
		defer mu.Unlock()
		switch {
		case err == nil:
			owners[i] = append(owners[i], owner{by, l})
		case !errors.Is(err, store.ErrLocked):
			failed = append(failed, fmt.Errorf("key %q: %w", keys[i], err))
		}
	}
	start := make(chan struct{})
	for by, l := range lockers {
		wg.Go(func() {
			<-start
			for i, r := range l.TryLockMany(ctx, keys, time.Minute) {
				record(i, by, r.Lock, r.Err)
			}
		})
	}
	for i, k := range keys {
		wg.Go(func() {
			by := i % len(lockers)
			<-start
			l, err := lockers[by].TryLock(ctx, k, time.Minute)
			record(i, by, l, err)
		})
	}
	close(start)
	wg.Wait()
	if len(failed) > 0 {
		t.Fatalf("TryLock and TryLockMany failed: %v", failed)
	}
	byLocker := make([][]store.Lock, len(lockers))
	for i, k := range keys {
		if len(owners[i]) != 1 {
			t.Fatalf("%s: %d owners, want exactly one", k, len(owners[i]))
		}
		o := owners[i][0]
		byLocker[o.by] = append(byLocker[o.by], o.lock)
	}
	for by, locks := range byLocker {
		for _, err := range lockers[by].UnlockMany(ctx, locks) {
			if err != nil {
				t.Fatalf("UnlockMany by the owner: %v", err)
			}
		}
	}
}

// bulkExtendUnlockMany: ExtendMany sets the leases of locks from TryLockMany
// and TryLock; once one lease lapsed and another owner took the key,
// ExtendMany and UnlockMany report ErrNotHeld for that lock only and leave
// the new owner's lock alone; a second UnlockMany reports ErrNotHeld for all.
func (s suite) bulkExtendUnlockMany(t *testing.T) {
	a, b := bulkLocker(t, s.newStore(t)), locker(t, s.newStore(t))
	ctx := context.Background()
	ttl := s.opts.LockTTL
	lockAll := func(keys []string, lease time.Duration) []store.Lock {
		t.Helper()
		var locks []store.Lock
		for i, r := range a.TryLockMany(ctx, keys, lease) {
			if r.Err != nil {
				t.Fatalf("TryLockMany %q: %v", keys[i], r.Err)
			}
			locks = append(locks, r.Lock)
		}
		return locks
	}

	// Leases of a minute shortened to ttl: another owner gets each key
	// once ttl has passed, which shows the new lease is ttl from then.
	short := []string{"short-0", "short-1", "short-2"}
	for i, err := range a.ExtendMany(ctx, lockAll(short, time.Minute), ttl) {
		if err != nil {
			t.Fatalf("ExtendMany %q: %v", short[i], err)
		}
	}
	for _, k := range short {
		if err := waitForLock(t, b, k, ttl).Unlock(ctx); err != nil {
			t.Fatal(err)
		}
	}

	keys := []string{"held-0", "held-1", "held-2", "held-3"}
	locks := lockAll(keys, time.Minute)
	single, err := a.TryLock(ctx, "single", time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	lapsed, err := a.TryLock(ctx, "lapsed", ttl)
	if err != nil {
		t.Fatal(err)
	}
	locks = append(locks, single, lapsed)
	keys = append(keys, "single", "lapsed")
	taken := waitForLock(t, b, "lapsed", ttl)
	check := func(op string, errs []error) {
		t.Helper()
		if len(errs) != len(locks) {
			t.Fatalf("%s of %d locks returned %d results", op, len(locks), len(errs))
		}
		for i, err := range errs {
			if keys[i] == "lapsed" {
				if !errors.Is(err, store.ErrNotHeld) {
					t.Fatalf("%s of a lapsed lock taken over: %v, want ErrNotHeld", op, err)
				}
			} else if err != nil {
				t.Fatalf("%s %q: %v", op, keys[i], err)
			}
		}
	}
	check("ExtendMany", a.ExtendMany(ctx, locks, time.Hour))
	for _, k := range keys[:len(keys)-1] {
		if _, err := b.TryLock(ctx, k, time.Minute); !errors.Is(err, store.ErrLocked) {
			t.Fatalf("%s: TryLock of an extended lease: %v, want ErrLocked", k, err)
		}
	}
	check("UnlockMany", a.UnlockMany(ctx, locks))
	if _, err := a.TryLock(ctx, "lapsed", time.Minute); !errors.Is(err, store.ErrLocked) {
		t.Fatalf("the lapsed owner's UnlockMany released the new owner's lock: TryLock = %v", err)
	}
	for i, err := range a.UnlockMany(ctx, locks) {
		if !errors.Is(err, store.ErrNotHeld) {
			t.Fatalf("second UnlockMany %q: %v, want ErrNotHeld", keys[i], err)
		}
	}
	for i, err := range a.ExtendMany(ctx, locks, time.Minute) {
		if !errors.Is(err, store.ErrNotHeld) {
			t.Fatalf("ExtendMany %q after UnlockMany: %v, want ErrNotHeld", keys[i], err)
		}
	}
	if err := taken.Unlock(ctx); err != nil {
		t.Fatalf("new owner's Unlock: %v", err)
	}
}

// bulkCancelledContext: every bulk call on a cancelled context returns one
// result per key, each nil or wrapping context.Canceled, and the store works
// on a live context afterwards.
func (s suite) bulkCancelledContext(t *testing.T) {
	st := s.newStore(t)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	keys := []string{"a", "b", "c"}
	check := func(op string, errs ...error) {
		t.Helper()
		if len(errs) != len(keys) {
			t.Fatalf("%s of %d keys returned %d results", op, len(keys), len(errs))
		}
		for _, err := range errs {
			if err != nil && !errors.Is(err, context.Canceled) {
				t.Fatalf("%s on a cancelled context: %v, want nil or an error wrapping context.Canceled", op, err)
			}
		}
	}
	if bv, ok := st.(store.BulkVersioned[Value]); ok {
		var errs []error
		for _, r := range bv.GetVersions(ctx, keys) {
			errs = append(errs, r.Err)
		}
		check("GetVersions", errs...)
		writes := make([]store.ConditionalWrite[Value], len(keys))
		for i, k := range keys {
			writes[i] = store.ConditionalWrite[Value]{Key: k, Entry: entry(Value{Name: "v"}, s.now())}
		}
		check("WriteIf", bv.WriteIf(ctx, writes)...)
		// The store still works on a live context.
		reads := bv.GetVersions(context.Background(), keys)
		for i, k := range keys {
			if reads[i].Err != nil {
				t.Fatalf("GetVersions(%q) after cancelled calls: %v", k, reads[i].Err)
			}
			writes[i].Version = reads[i].Version
		}
		for i, err := range bv.WriteIf(context.Background(), writes) {
			if err != nil {
				t.Fatalf("WriteIf(%q) after cancelled calls: %v", keys[i], err)
			}
		}
	}
	if bl, ok := st.(store.BulkLocker); ok {
		var errs []error
		var taken []store.Lock
		for _, r := range bl.TryLockMany(ctx, keys, time.Minute) {
			errs = append(errs, r.Err)
			if r.Err == nil {
				taken = append(taken, r.Lock)
			}
		}
		check("TryLockMany", errs...)
		var live []store.Lock
		for i, r := range bl.TryLockMany(context.Background(), keys, time.Minute) {
			switch {
			case r.Err == nil:
				live = append(live, r.Lock)
			case !errors.Is(r.Err, store.ErrLocked) || len(taken) == 0:
				t.Fatalf("TryLockMany(%q) after cancelled calls: %v", keys[i], r.Err)
			}
		}
		live = append(live, taken...)
		if len(live) != len(keys) {
			t.Fatalf("%d of %d keys locked", len(live), len(keys))
		}
		check("ExtendMany", bl.ExtendMany(ctx, live, time.Minute)...)
		check("UnlockMany", bl.UnlockMany(ctx, live)...)
		for i, err := range bl.UnlockMany(context.Background(), live) {
			// A cancelled UnlockMany may or may not have released the lock.
			if err != nil && !errors.Is(err, store.ErrNotHeld) {
				t.Fatalf("UnlockMany(%q) after cancelled calls: %v", keys[i], err)
			}
		}
	}
}

// bulkFailingServer: with the backend broken between the steps of a batch
// (versions read and locks taken, then the server stops), every bulk call
// returns, within its context, an error for each key: not a conflict, not
// a lock held by another, not a lock lost, as nothing is known; and
// nothing panics.
func (s suite) bulkFailingServer(t *testing.T) {
	st := s.newStore(t)
	bv, versioned := st.(store.BulkVersioned[Value])
	bl, locks := st.(store.BulkLocker)
	ctx := context.Background()
	now := s.now()
	keys := make([]string, 40)
	for i := range keys {
		keys[i] = fmt.Sprintf("failing-%d", i)
		if i%2 == 0 {
			mustSet(t, st, keys[i], entry(Value{N: int64(i)}, now))
		}
	}
	var reads []store.VersionedRead[Value]
	if versioned {
		reads = bv.GetVersions(ctx, keys)
		for i, r := range reads {
			if r.Err != nil {
				t.Fatalf("GetVersions(%q) before the failure: %v", keys[i], r.Err)
			}
		}
	}
	var held []store.Lock
	if locks {
		for i, r := range bl.TryLockMany(ctx, keys, time.Minute) {
			if r.Err != nil {
				t.Fatalf("TryLockMany(%q) before the failure: %v", keys[i], r.Err)
			}
			held = append(held, r.Lock)
		}
	}

	s.opts.Break(t)

	const within = 2 * time.Second
	// call runs op on a context of within, and fails the test if op has not
	// returned long after that: a call that outlives its context hangs.
	call := func(name string, op func(ctx context.Context) []error) {
		t.Helper()
		cctx, cancel := context.WithTimeout(context.Background(), within)
		defer cancel()
		done := make(chan []error, 1)
		go func() { done <- op(cctx) }()
		var errs []error
		select {
		case errs = <-done:
		case <-time.After(within + 10*time.Second):
			t.Fatalf("%s on a failing server did not return within 10s after its context ended", name)
		}
		if len(errs) != len(keys) {
			t.Fatalf("%s of %d keys on a failing server returned %d results", name, len(keys), len(errs))
		}
		for i, err := range errs {
			switch {
			case err == nil:
				t.Fatalf("%s(%q) on a failing server returned no error", name, keys[i])
			case errors.Is(err, store.ErrConflict), errors.Is(err, store.ErrLocked), errors.Is(err, store.ErrNotHeld):
				t.Fatalf("%s(%q) on a failing server: %v, a verdict where nothing is known", name, keys[i], err)
			}
		}
	}
	if versioned {
		call("WriteIf", func(ctx context.Context) []error {
			writes := make([]store.ConditionalWrite[Value], len(keys))
			for i, k := range keys {
				writes[i] = store.ConditionalWrite[Value]{Key: k, Version: reads[i].Version, Delete: i%3 == 0, Entry: entry(Value{Name: "late"}, now)}
			}
			return bv.WriteIf(ctx, writes)
		})
		found := 0
		call("GetVersions", func(ctx context.Context) []error {
			var errs []error
			for _, r := range bv.GetVersions(ctx, keys) {
				if r.Found {
					found++
				}
				errs = append(errs, r.Err)
			}
			return errs
		})
		if found > 0 {
			t.Fatalf("GetVersions on a failing server found %d entries along with errors", found)
		}
	}
	if locks {
		call("ExtendMany", func(ctx context.Context) []error { return bl.ExtendMany(ctx, held, time.Minute) })
		call("UnlockMany", func(ctx context.Context) []error { return bl.UnlockMany(ctx, held) })
		call("TryLockMany", func(ctx context.Context) []error {
			var errs []error
			for _, r := range bl.TryLockMany(ctx, keys, time.Minute) {
				errs = append(errs, r.Err)
			}
			return errs
		})
	}
}
