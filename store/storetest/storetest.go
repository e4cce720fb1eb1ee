// Package storetest is the conformance suite of herd's stores: every
// [store.Store] implementation passes [Run], so that the cache can rely on the
// same behaviour from memory, Redis, NATS or the two-level store; every
// shared store passes [RunFleet], the scenarios of a fleet of caches over
// it; and every shared store with a change stream passes [RunTwoLevel], the
// scenarios of a fleet of two-level stores (store/tiered) over it.
//
// A store's own test calls Run (or [RunWith] to adjust sizes and lease
// times to the backend) with a function that returns a store for a subtest:
//
//	func TestConformance(t *testing.T) {
//		storetest.Run(t, func(t *testing.T) store.Store[storetest.Value] {
//			return newClient(t) // a client of the subtest's backend
//		})
//	}
//
// # Guarantees
//
// A store that passes Run has been checked for the round trip of every
// field, misses, deletes, expiry at KeepUntil, concurrent writers, cancelled
// contexts, large values and odd keys; and, for each optional capability the
// store has, its contract: lock exclusion, foreign unlock and lease expiry
// ([store.Locker]); conditional writes refused after another client's write
// and exactly one winner among concurrent writers ([store.Versioned]);
// delivery of every kind of write to a watch on another client, with
// versions, and Down, Up, Gap or All across a cut of the stream
// ([store.ChangeStream]); bulk reads ([store.BulkGetter]); bulk version
// reads and conditional writes with partial conflicts
// ([store.BulkVersioned]); bulk locks with some keys held by another owner
// and a lease taken over ([store.BulkLocker]); and, when the backend's test
// says how to break its server ([Options].Break), bulk calls on a server
// that fails between the steps of a batch.
//
// A store that passes RunFleet has been checked under two and three herd
// caches, in each scenario whose capabilities it has: cold misses coalesce
// across the fleet, writes win over loads in flight on other instances, the
// keys of a holder that dies are taken over, and a holder that loses its
// lease does not overwrite its successor.
//
// A store that passes RunTwoLevel has been checked as the far tier of two
// and three two-level stores, each over a client of its own: a write
// through one instance, or by a plain client, reaches the near tiers of the
// others, and no instance reads an older value after a newer one; the
// writer reads its own writes from its near tier, with no far read, and
// keeps them through their echoes until another instance writes; and
// concurrent writers on every instance leave every near tier agreeing
// with the far store. When the backend's test says how to cut one client
// ([TwoLevelOptions].Cut), it has also been checked across a cut: the cut
// instance serves its near copies without a far read, and once restored,
// after a replay (Up) or a revalidation in bulk (Gap), it reads the keys
// changed and deleted meanwhile as the far store holds them, and serves the
// others from its near tier: no flush, and no far read but for the keys
// changed meanwhile (after a Gap, the deleted ones only: the revalidation
// read the others in bulk).
//
// # Costs
//
// Run's lock tests wait for leases to expire, about [Options].LockTTL each
// (100ms by default); its other subtests wait only for what the store
// delivers. RunFleet's scenarios take real time, about two lock TTLs each
// ([FleetOptions].LockTTL, 500ms by default): a backend's server runs on its
// own clock. RunTwoLevel's scenarios wait only for what the stream
// delivers: about a second each on a local server (a few on a cluster), and at most
// [TwoLevelOptions].Within (20s by default) for each delivery before they
// fail.
//
// # Errors
//
// The suite reports what a store gets wrong as failures of the subtest that
// found it, named after the rule it checks ("Lock/Exclusion",
// "Versioned/Concurrent", ...), so that a failure says which part of the
// contract broke.
//
// # Lifecycle
//
// Each subtest gets a new, empty store; within a subtest, every call of
// newStore must return a client of the same backend (for an in-process
// store, the same store), as the tests of shared behaviour use several.
// Under Run, closing what newStore returns is the caller's (with
// t.Cleanup); under RunFleet, each cache's Close closes its store, so that
// for an in-process store the caches share, newStore returns a view of it
// whose Close does nothing; under RunTwoLevel, closing what newFar returns
// is the caller's again, and the suite closes the two-level stores it
// builds over them first (a two-level store never closes its far store).
// [Options].Break, if given, is called once, in the last subtest of Run,
// and nothing of the suite uses the backend after it.
package storetest

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/herdcache/herd/store"
)

// Value is the value type the suite stores: a struct with a string, a number
// and a byte slice, so that a codec's round trip of each is checked.
type Value struct {
	Name string `json:"name"`
	N    int64  `json:"n"`
	Blob []byte `json:"blob,omitempty"`
}

func (v Value) equal(w Value) bool {
	return v.Name == w.Name && v.N == w.N && string(v.Blob) == string(w.Blob)
}

// Options adjusts the suite to what a backend can do.
type Options struct {
	// LargeValue is the size of the blob in the large-value test.
	// Default: 256 KiB.
	LargeValue int
	// LongKey is the length of the longest key tried. Default: 4096.
	LongKey int
	// LockTTL is the lease used by the lock tests that wait for expiry; the
	// suite waits about that long. Default: 100ms.
	LockTTL time.Duration
	// Break, if set, makes the backend of the stores that newStore returns
	// for t fail for good: it stops the server (or every server). The
	// suite calls it once, in its last subtest, "Bulk/FailingServer", which
	// runs when the store implements [store.BulkVersioned] or
	// [store.BulkLocker], and then checks that every bulk call returns an
	// error for each key within its context, never a verdict (a conflict,
	// a lock held or lost), never a hang or a panic. Nothing of the suite
	// uses the backend after Break. Default: nil, and that subtest does not
	// run (an in-process store cannot fail).
	Break func(t *testing.T)
	// ChangeVersions says that the store's change stream reports the
	// version each change gave its key ([store.Change.Version]): the suite
	// then requires it on every change of a key. Whether set or not, a
	// version that a change reports must be the key's.
	ChangeVersions bool
	// Cut, when set, cuts the change stream of s, a store that newStore
	// returned, while the backend and the other stores go on (a proxy that
	// drops the store's connection, for example), and returns a function
	// that restores it. The suite then checks what a watch reports across
	// a cut: Down, then, once restored, Up after a replay of the changes
	// made during the cut, or a Gap or an All, before any later change.
	Cut func(t *testing.T, s store.Store[Value]) (restore func())
	// Resumes says that the store's stream replays, after a cut, every
	// change made while it was cut and then reports Up: the suite then
	// fails a Gap or an All across a cut.
	Resumes bool
}

func (o *Options) defaults() {
	if o.LargeValue == 0 {
		o.LargeValue = 256 << 10
	}
	if o.LongKey == 0 {
		o.LongKey = 4096
	}
	if o.LockTTL == 0 {
		o.LockTTL = 100 * time.Millisecond
	}
}

// Run runs the suite against the stores newStore returns; each subtest gets a
// new, empty store; within a subtest, every call must return a client of the
// same backend (for an in-process store, the same store), as the tests of
// shared behaviour use several. The lock tests run when the store implements
// [store.Locker], the conditional-write tests when it implements
// [store.Versioned], the change-stream tests when it implements
// [store.ChangeStream], the bulk-read tests when it implements
// [store.BulkGetter], and those of bulk versions, conditional writes and
// locks when it implements [store.BulkVersioned] and [store.BulkLocker].
func Run(t *testing.T, newStore func(t *testing.T) store.Store[Value]) {
	t.Helper()
	RunWith(t, Options{}, newStore)
}

// RunWith is [Run] with options.
func RunWith(t *testing.T, opts Options, newStore func(t *testing.T) store.Store[Value]) {
	t.Helper()
	opts.defaults()
	s := suite{opts: opts, newStore: newStore}
	t.Run("RoundTrip", s.roundTrip)
	t.Run("Miss", s.miss)
	t.Run("Overwrite", s.overwrite)
	t.Run("Delete", s.delete)
	t.Run("KeepUntil", s.keepUntil)
	t.Run("ConcurrentWriters", s.concurrentWriters)
	t.Run("CancelledContext", s.cancelledContext)
	t.Run("LargeValue", s.largeValue)
	t.Run("OddKeys", s.oddKeys)
	probe := newStore(t)
	if _, ok := probe.(store.Locker); ok {
		t.Run("Lock/Exclusion", s.lockExclusion)
		t.Run("Lock/ForeignUnlock", s.lockForeignUnlock)
		t.Run("Lock/Extend", s.lockExtend)
	}
	if _, ok := probe.(store.Versioned[Value]); ok {
		t.Run("Versioned/Accepted", s.versionedAccepted)
		t.Run("Versioned/Refused", s.versionedRefused)
		t.Run("Versioned/Concurrent", s.versionedConcurrent)
	}
	if _, ok := probe.(store.ChangeStream); ok {
		t.Run("Changes/Delivery", s.changesDelivery)
		if opts.Cut != nil {
			t.Run("Changes/Cut", s.changesCut)
		}
	}
	if _, ok := probe.(store.BulkGetter[Value]); ok {
		t.Run("Bulk/GetMany", s.bulkGet)
	}
	_, bv := probe.(store.BulkVersioned[Value])
	if bv {
		t.Run("Bulk/GetVersions", s.bulkGetVersions)
		t.Run("Bulk/WriteIf", s.bulkWriteIf)
		t.Run("Bulk/WriteIfConcurrent", s.bulkWriteIfConcurrent)
	}
	_, bl := probe.(store.BulkLocker)
	if bl {
		t.Run("Bulk/TryLockMany", s.bulkTryLockMany)
		t.Run("Bulk/LockExclusion", s.bulkLockExclusion)
		t.Run("Bulk/ExtendUnlockMany", s.bulkExtendUnlockMany)
	}
	if bv || bl {
		t.Run("Bulk/CancelledContext", s.bulkCancelledContext)
		if opts.Break != nil {
			t.Run("Bulk/FailingServer", s.bulkFailingServer) // last: it breaks the backend
		}
	}
}

type suite struct {
	opts     Options
	newStore func(t *testing.T) store.Store[Value]
}

// now is the suite's reference time, at millisecond precision, the coarsest
// that a backend may keep.
func (suite) now() time.Time { return time.Now().Truncate(time.Millisecond) }

func entry(v Value, now time.Time) store.Entry[Value] {
	return store.Entry[Value]{
		Value: v, StoredAt: now, RefreshAt: now.Add(time.Minute),
		ExpiresAt: now.Add(time.Hour), KeepUntil: now.Add(2 * time.Hour),
	}
}

func mustGet(t *testing.T, s store.Store[Value], key string) (store.Entry[Value], bool) {
	t.Helper()
	e, ok, err := s.Get(context.Background(), key)
	if err != nil {
		t.Fatalf("Get(%q): %v", key, err)
	}
	return e, ok
}

func mustSet(t *testing.T, s store.Store[Value], key string, e store.Entry[Value]) {
	t.Helper()
	if err := s.Set(context.Background(), key, e); err != nil {
		t.Fatalf("Set(%q): %v", key, err)
	}
}

func sameEntry(t *testing.T, got, want store.Entry[Value]) {
	t.Helper()
	if !got.Value.equal(want.Value) || got.NotFound != want.NotFound ||
		!got.StoredAt.Equal(want.StoredAt) || !got.RefreshAt.Equal(want.RefreshAt) ||
		!got.ExpiresAt.Equal(want.ExpiresAt) || !got.KeepUntil.Equal(want.KeepUntil) {
		t.Fatalf("entry changed in the store:\n got %+v\nwant %+v", got, want)
	}
}

func (s suite) roundTrip(t *testing.T) {
	st := s.newStore(t)
	now := s.now()
	for key, want := range map[string]store.Entry[Value]{
		"value":      entry(Value{Name: "Ada", N: -42, Blob: []byte{0, 1, 2, 255}}, now),
		"not-found":  {NotFound: true, StoredAt: now, ExpiresAt: now.Add(time.Minute), KeepUntil: now.Add(time.Minute)},
		"zero-times": {Value: Value{Name: "forever"}},
		"zero-value": {StoredAt: now, KeepUntil: now.Add(time.Hour)},
	} {
		mustSet(t, st, key, want)
		got, ok := mustGet(t, st, key)
		if !ok {
			t.Fatalf("Get(%q) missed right after Set", key)
		}
		sameEntry(t, got, want)
	}
}

func (s suite) miss(t *testing.T) {
	st := s.newStore(t)
	if e, ok := mustGet(t, st, "absent"); ok {
		t.Fatalf("Get of a key never set returned %+v", e)
	}
}

func (s suite) overwrite(t *testing.T) {
	st := s.newStore(t)
	now := s.now()
	mustSet(t, st, "k", entry(Value{Name: "one"}, now))
	want := entry(Value{Name: "two", N: 2}, now.Add(time.Second))
	mustSet(t, st, "k", want)
	got, ok := mustGet(t, st, "k")
	if !ok {
		t.Fatal("miss after overwrite")
	}
	sameEntry(t, got, want)
}

func (s suite) delete(t *testing.T) {
	st := s.newStore(t)
	ctx := context.Background()
	mustSet(t, st, "k", entry(Value{Name: "v"}, s.now()))
	mustSet(t, st, "other", entry(Value{Name: "o"}, s.now()))
	if err := st.Delete(ctx, "k"); err != nil {
		t.Fatal(err)
	}
	if _, ok := mustGet(t, st, "k"); ok {
		t.Fatal("Get hit after Delete")
	}
	if _, ok := mustGet(t, st, "other"); !ok {
		t.Fatal("Delete of one key removed another")
	}
	if err := st.Delete(ctx, "never-set"); err != nil {
		t.Fatalf("Delete of a missing key: %v", err)
	}
}

func (s suite) keepUntil(t *testing.T) {
	st := s.newStore(t)
	now := s.now()
	past := store.Entry[Value]{Value: Value{Name: "gone"}, StoredAt: now.Add(-time.Hour), ExpiresAt: now.Add(-time.Minute), KeepUntil: now.Add(-time.Second)}
	mustSet(t, st, "past", past)
	if e, ok := mustGet(t, st, "past"); ok {
		t.Fatalf("an entry whose KeepUntil had passed was returned: %+v", e)
	}
	// Past ExpiresAt but within KeepUntil: still there for stale-if-error.
	stale := store.Entry[Value]{Value: Value{Name: "stale"}, StoredAt: now.Add(-time.Hour), ExpiresAt: now.Add(-time.Minute), KeepUntil: now.Add(time.Hour)}
	mustSet(t, st, "stale", stale)
	got, ok := mustGet(t, st, "stale")
	if !ok {
		t.Fatal("an expired entry within its KeepUntil was dropped")
	}
	sameEntry(t, got, stale)
}

func (s suite) concurrentWriters(t *testing.T) {
	st := s.newStore(t)
	now := s.now()
	const writers, rounds = 16, 50
	var wg sync.WaitGroup
	errs := make(chan error, writers)
	for w := range writers {
		wg.Go(func() {
			for r := range rounds {
				v := Value{Name: fmt.Sprintf("w%d", w), N: int64(r), Blob: []byte(strings.Repeat(string(rune('a'+w)), 100))}
				if err := st.Set(context.Background(), "shared", entry(v, now)); err != nil {
					errs <- err
					return
				}
				if err := st.Set(context.Background(), fmt.Sprintf("own-%d", w), entry(v, now)); err != nil {
					errs <- err
					return
				}
				if _, _, err := st.Get(context.Background(), "shared"); err != nil {
					errs <- err
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	got, ok := mustGet(t, st, "shared")
	if !ok {
		t.Fatal("shared key missing after concurrent writes")
	}
	// Whichever writer won, its value must be whole, not a mix of two.
	var winner int
	if _, err := fmt.Sscanf(got.Value.Name, "w%d", &winner); err != nil {
		t.Fatalf("shared key holds %+v", got.Value)
	}
	if string(got.Value.Blob) != strings.Repeat(string(rune('a'+winner)), 100) {
		t.Fatalf("torn value after concurrent writes: %+v", got.Value)
	}
	for w := range writers {
		got, ok := mustGet(t, st, fmt.Sprintf("own-%d", w))
		if !ok || got.Value.N != rounds-1 || got.Value.Name != fmt.Sprintf("w%d", w) {
			t.Fatalf("writer %d's own key holds %+v, want its last write", w, got.Value)
		}
	}
}

func (s suite) cancelledContext(t *testing.T) {
	st := s.newStore(t)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	check := func(op string, err error) {
		t.Helper()
		if err != nil && !errors.Is(err, context.Canceled) {
			t.Fatalf("%s on a cancelled context: %v, want nil or an error wrapping context.Canceled", op, err)
		}
	}
	_, _, err := st.Get(ctx, "k")
	check("Get", err)
	check("Set", st.Set(ctx, "k", entry(Value{Name: "v"}, s.now())))
	check("Delete", st.Delete(ctx, "k"))
	// The store still works on a live context.
	mustSet(t, st, "k", entry(Value{Name: "after"}, s.now()))
	if got, ok := mustGet(t, st, "k"); !ok || got.Value.Name != "after" {
		t.Fatalf("store broken after cancelled calls: %+v, %v", got, ok)
	}
}

func (s suite) largeValue(t *testing.T) {
	st := s.newStore(t)
	blob := make([]byte, s.opts.LargeValue)
	for i := range blob {
		blob[i] = byte(i * 7)
	}
	want := entry(Value{Name: "large", Blob: blob}, s.now())
	mustSet(t, st, "large", want)
	got, ok := mustGet(t, st, "large")
	if !ok {
		t.Fatal("large value missing")
	}
	sameEntry(t, got, want)
}

// OddKeys returns keys that trip naive key encodings: empty, whitespace,
// control bytes, glob and hash-tag characters, separators, invalid UTF-8,
// pairs that a lossy escaping would map to one key, and a very long one.
func OddKeys(longKey int) []string {
	return []string{
		"", " ", "a b", "line\nbreak", "tab\t", "\x00", "nul\x00byte",
		"*", "a*b", "?", "[x]", "{tag}", "{tag}:1", "a/b", "a.b", "a_b", "a-b", "a=b",
		"a..b", ".a", "a.", "_", "__", "%", "%2F", "~", "=", "é", "日本", "\xff\xfe",
		"user:42", "user:42 ", "USER:42", strings.Repeat("k", longKey),
	}
}

func (s suite) oddKeys(t *testing.T) {
	st := s.newStore(t)
	keys := OddKeys(s.opts.LongKey)
	now := s.now()
	for i, k := range keys {
		mustSet(t, st, k, entry(Value{Name: k, N: int64(i)}, now))
	}
	for i, k := range keys {
		got, ok := mustGet(t, st, k)
		if !ok {
			t.Fatalf("key %q (index %d) missing", k, i)
		}
		// N tells which key's value came back. Name is checked only where
		// it is valid UTF-8: a JSON codec replaces invalid bytes in values,
		// which says nothing about the store's keys.
		if got.Value.N != int64(i) {
			t.Fatalf("key %q read back the value of key %q: two keys collided", k, keys[got.Value.N])
		}
		if utf8.ValidString(k) && got.Value.Name != k {
			t.Fatalf("key %q read back the name %q", k, got.Value.Name)
		}
	}
}
