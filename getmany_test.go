package herd_test

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/herdcache/herd"
	"github.com/herdcache/herd/flight"
	"github.com/herdcache/herd/store"
	"github.com/herdcache/herd/store/memory"
)

// batchSource is a batch loader whose answers a test controls: the value of
// key is "v:"+key, keys that start with "absent" are not found, keys that
// start with "fail" fail the call, and a call waits for gate when it is set.
type batchSource struct {
	mu       sync.Mutex
	calls    [][]string
	gate     chan struct{}
	running  atomic.Int32
	peak     atomic.Int32
	setTTL   map[string]time.Duration // SetKeyTTL per key
	panicker string                   // a call with this key panics
}

var errSource = errors.New("source down")

func (s *batchSource) load(ctx context.Context, keys []string) (map[string]string, error) {
	n := s.running.Add(1)
	defer s.running.Add(-1)
	for p := s.peak.Load(); n > p && !s.peak.CompareAndSwap(p, n); p = s.peak.Load() {
	}
	s.mu.Lock()
	s.calls = append(s.calls, slices.Clone(keys))
	gate := s.gate
	s.mu.Unlock()
	if gate != nil {
		<-gate
	}
	out := make(map[string]string, len(keys))
	for _, k := range keys {
		switch {
		case k == s.panicker:
			panic("boom in " + k)
		case strings.HasPrefix(k, "fail"):
			return nil, errSource
		case strings.HasPrefix(k, "absent"):
			continue
		}
		if d, ok := s.setTTL[k]; ok {
			herd.SetKeyTTL(ctx, k, d)
		}
		out[k] = "v:" + k
	}
	return out, nil
}

// block makes the following calls wait until the returned function is called.
func (s *batchSource) block() (release func()) {
	g := make(chan struct{})
	s.mu.Lock()
	s.gate = g
	s.mu.Unlock()
	return func() {
		s.mu.Lock()
		s.gate = nil
		s.mu.Unlock()
		close(g)
	}
}

func (s *batchSource) callKeys() [][]string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.calls)
}

// perKeyStore is a store without bulk reads or versions: GetMany reads it
// one key at a time and writes back with plain Set and Delete.
type perKeyStore struct {
	store.Store[string]
	gets atomic.Int32
}

func (s *perKeyStore) Get(ctx context.Context, key string) (store.Entry[string], bool, error) {
	s.gets.Add(1)
	return s.Store.Get(ctx, key)
}

// The rules of each key, through GetMany (FetchMany) and through Get
// (Fetch, one key at a time): both entry points run the same load pipeline
// and must agree. Over a store with bulk reads and conditional writes, and
// one without.
func TestGetManyPerKeyRules(t *testing.T) {
	type want struct {
		value  string // "" when the key must be absent from the map
		status herd.Status
		err    error // for a key that fails
	}
	for _, tc := range []struct {
		name   string
		before func(t *testing.T, c *herd.Cache[string], src *batchSource) // in a bubble at t0; GetMany runs at t0+2m
		keys   []string
		want   map[string]want
		loaded []string // the keys the batch loader must be asked, in one call
	}{
		{
			name: "missing keys are loaded in one call",
			keys: []string{"a", "b", "c"},
			want: map[string]want{
				"a": {"v:a", herd.StatusLoaded, nil}, "b": {"v:b", herd.StatusLoaded, nil}, "c": {"v:c", herd.StatusLoaded, nil},
			},
			loaded: []string{"a", "b", "c"},
		},
		{
			name: "fresh keys are not loaded",
			before: func(t *testing.T, c *herd.Cache[string], _ *batchSource) {
				time.Sleep(90 * time.Second)
				set(t, c, "a", "set")
			},
			keys:   []string{"a", "b"},
			want:   map[string]want{"a": {"set", herd.StatusFresh, nil}, "b": {"v:b", herd.StatusLoaded, nil}},
			loaded: []string{"b"},
		},
		{
			name:   "a key left out of the map is not found, with no error",
			keys:   []string{"a", "absent"},
			want:   map[string]want{"a": {"v:a", herd.StatusLoaded, nil}, "absent": {}},
			loaded: []string{"a", "absent"},
		},
		{
			name: "a cached not found is not loaded again",
			before: func(t *testing.T, c *herd.Cache[string], src *batchSource) {
				if _, err := c.GetMany(context.Background(), []string{"absent"}, src.load); err != nil {
					t.Fatal(err)
				}
			},
			keys:   []string{"absent", "b"},
			want:   map[string]want{"absent": {}, "b": {"v:b", herd.StatusLoaded, nil}},
			loaded: []string{"b"},
		},
		{
			name: "a stale key is returned at once, then refreshed",
			before: func(t *testing.T, c *herd.Cache[string], _ *batchSource) {
				time.Sleep(50 * time.Second)
				set(t, c, "a", "old")
			},
			keys:   []string{"a"},
			want:   map[string]want{"a": {"old", herd.StatusStale, nil}},
			loaded: []string{"a"},
		},
		{
			name: "an expired key is loaded",
			before: func(t *testing.T, c *herd.Cache[string], _ *batchSource) {
				set(t, c, "a", "old")
				time.Sleep(time.Minute) // past its TTL at t0+2m
			},
			keys:   []string{"a"},
			want:   map[string]want{"a": {"v:a", herd.StatusLoaded, nil}},
			loaded: []string{"a"},
		},
		{
			name: "a failed key with an old entry gets it, stale-if-error",
			before: func(t *testing.T, c *herd.Cache[string], _ *batchSource) {
				set(t, c, "fail-old", "old")
			},
			keys:   []string{"fail-old", "fail-new"},
			want:   map[string]want{"fail-old": {"old", herd.StatusStaleOnError, nil}, "fail-new": {err: errSource}},
			loaded: []string{"fail-old", "fail-new"},
		},
	} {
		for _, tr := range []struct {
			bulk bool
			via  string
		}{{true, "FetchMany"}, {false, "FetchMany"}, {true, "Fetch"}, {false, "Fetch"}} {
			bulk := tr.bulk
			t.Run(fmt.Sprintf("%s/bulk=%v/%s", tc.name, bulk, tr.via), func(t *testing.T) {
				synctest.Test(t, func(t *testing.T) {
					opts := []herd.Option{
						herd.TTL(100 * time.Second), herd.RefreshAfter(time.Minute),
						herd.StaleIfError(time.Hour), herd.NegativeTTL(time.Hour),
					}
					c := cacheOver(t, bulk, opts...)
					src := &batchSource{}
					start := time.Now()
					if tc.before != nil {
						tc.before(t, c, src)
					}
					time.Sleep(2*time.Minute - time.Since(start))
					before := len(src.callKeys())

					var (
						got   map[string]herd.Result[string]
						kerrs herd.KeyErrors
					)
					if tr.via == "FetchMany" {
						var err error
						got, err = c.FetchMany(context.Background(), tc.keys, src.load)
						if err != nil && !errors.As(err, &kerrs) {
							t.Fatalf("FetchMany error %v is not a KeyErrors", err)
						}
					} else {
						got, kerrs = fetchEach(c, tc.keys, src)
					}
					for k, w := range tc.want {
						r, ok := got[k]
						switch {
						case w.err != nil:
							if ok || !errors.Is(kerrs[k], w.err) {
								t.Errorf("%q: got %+v, error %v; want error %v", k, r, kerrs[k], w.err)
							}
						case w.value == "":
							if ok || kerrs[k] != nil {
								t.Errorf("%q: got %+v, error %v; want it absent", k, r, kerrs[k])
							}
						case !ok || r.Value != w.value || r.Status != w.status:
							t.Errorf("%q: got %+v (present %v), error %v; want %q %v", k, r, ok, kerrs[k], w.value, w.status)
						}
					}
					if len(got)+len(kerrs) > len(tc.want) {
						t.Errorf("FetchMany returned %v, %v: more keys than asked", got, kerrs)
					}
					synctest.Wait() // background refreshes
					calls := src.callKeys()[before:]
					switch {
					case tc.loaded == nil && len(calls) != 0:
						t.Errorf("loader called with %v, want no call", calls)
					case tc.loaded != nil && tr.via == "FetchMany" && (len(calls) != 1 || !sameKeys(calls[0], tc.loaded)):
						t.Errorf("batch loader called with %v, want one call with %v", calls, tc.loaded)
					case tc.loaded != nil && tr.via == "Fetch" && (len(calls) != len(tc.loaded) || !sameKeys(slices.Concat(calls...), tc.loaded)):
						t.Errorf("loader called with %v, want one call for each of %v", calls, tc.loaded)
					}
				})
			})
		}
	}
}

// fetchEach is FetchMany done with one Fetch per key, with src's batch
// loader asked for one key at a time: a key not found is left out, a
// failed key is in the KeyErrors.
func fetchEach(c *herd.Cache[string], keys []string, src *batchSource) (map[string]herd.Result[string], herd.KeyErrors) {
	load := func(ctx context.Context, key string) (string, error) {
		vals, err := src.load(ctx, []string{key})
		if err != nil {
			return "", err
		}
		v, ok := vals[key]
		if !ok {
			return "", herd.ErrNotFound
		}
		return v, nil
	}
	got := make(map[string]herd.Result[string])
	var kerrs herd.KeyErrors
	for _, k := range keys {
		r, err := c.Fetch(context.Background(), k, load)
		switch {
		case err == nil:
			got[k] = r
		case errors.Is(err, herd.ErrNotFound):
		default:
			if kerrs == nil {
				kerrs = make(herd.KeyErrors)
			}
			kerrs[k] = err
		}
	}
	return got, kerrs
}

// cacheOver returns a cache over a memory store, which has bulk reads and
// conditional writes, or over a store that has neither.
func cacheOver(t *testing.T, bulk bool, opts ...herd.Option) *herd.Cache[string] {
	t.Helper()
	if bulk {
		caches, _ := fleet(t, 1, opts...)
		return caches[0]
	}
	mem := memory.New[string]()
	c := herd.New[string](&perKeyStore{Store: mem}, append([]herd.Option{herd.WithLogger(discard)}, opts...)...)
	t.Cleanup(func() {
		if err := c.Close(context.Background()); err != nil {
			t.Errorf("Close: %v", err)
		}
		_ = mem.Close(context.Background())
	})
	return c
}

func set(t *testing.T, c *herd.Cache[string], key, v string) {
	t.Helper()
	if err := c.Set(context.Background(), key, v); err != nil {
		t.Fatal(err)
	}
}

func sameKeys(a, b []string) bool {
	a, b = slices.Clone(a), slices.Clone(b)
	slices.Sort(a)
	slices.Sort(b)
	return slices.Equal(a, b)
}

// Stale keys are served at once and refreshed in the background in one
// batch call, not one call per key.
func TestGetManyRefreshesStaleKeysInBatches(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c := cacheOver(t, true, herd.RefreshAfter(time.Minute))
		src := &batchSource{}
		keys := make([]string, 10)
		for i := range keys {
			keys[i] = fmt.Sprint("k", i)
			set(t, c, keys[i], "old")
		}
		time.Sleep(2 * time.Minute)
		release := src.block()
		got, err := c.FetchMany(context.Background(), keys, src.load)
		if err != nil || len(got) != 10 {
			t.Fatalf("FetchMany = %v, %v", got, err)
		}
		for k, r := range got {
			if r.Value != "old" || r.Status != herd.StatusStale {
				t.Fatalf("%q: %+v, want the stale value", k, r)
			}
		}
		// A second read while the refresh runs queues nothing more.
		if _, err := c.GetMany(context.Background(), keys, src.load); err != nil {
			t.Fatal(err)
		}
		release()
		synctest.Wait()
		if calls := src.callKeys(); len(calls) != 1 || !sameKeys(calls[0], keys) {
			t.Fatalf("batch loader calls %v, want one with the 10 keys", calls)
		}
		got, _ = c.FetchMany(context.Background(), keys, src.load)
		for k, r := range got {
			if r.Value != "v:"+k || r.Status != herd.StatusFresh {
				t.Fatalf("%q after the refresh: %+v", k, r)
			}
		}
		st := c.Stats()
		if st.RefreshesQueued != 10 || st.StaleHits != 20 || st.BatchLoads != 1 || st.BatchKeys != 10 {
			t.Fatalf("stats %+v", st)
		}
	})
}

// More keys than MaxBatch are split into calls of at most MaxBatch keys, at
// most MaxConcurrentBatches at once; an error fails only its own call's keys.
func TestGetManyChunks(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c := cacheOver(t, true)
		src := &batchSource{}
		var keys []string
		for i := range 250 {
			keys = append(keys, fmt.Sprintf("k%03d", i))
		}
		keys[120] = "fail" // fails the second call: keys 100 to 199
		release := src.block()
		type res struct {
			got map[string]string
			err error
		}
		done := make(chan res)
		go func() {
			got, err := c.GetMany(context.Background(), keys, src.load, herd.MaxBatch(100), herd.MaxConcurrentBatches(2))
			done <- res{got, err}
		}()
		synctest.Wait()
		if n := len(src.callKeys()); n != 2 {
			t.Fatalf("%d calls running, want 2 (MaxConcurrentBatches)", n)
		}
		release()
		r := <-done
		var kerrs herd.KeyErrors
		if !errors.As(r.err, &kerrs) || len(kerrs) != 100 || !errors.Is(r.err, errSource) {
			t.Fatalf("GetMany error %v, want the 100 keys of the failed call", r.err)
		}
		if len(r.got) != 150 {
			t.Fatalf("GetMany returned %d values, want 150", len(r.got))
		}
		for i, k := range keys {
			_, failed := kerrs[k]
			if failed != (i >= 100 && i < 200) {
				t.Fatalf("key %d %q failed=%v", i, k, failed)
			}
		}
		calls := src.callKeys()
		if len(calls) != 3 || src.peak.Load() != 2 {
			t.Fatalf("%d calls, %d at once; want 3, 2", len(calls), src.peak.Load())
		}
		for _, call := range calls {
			if len(call) > 100 {
				t.Fatalf("a call of %d keys, want at most 100", len(call))
			}
		}
		if st := c.Stats(); st.BatchLoads != 3 || st.BatchKeys != 250 || st.BatchLoadErrors != 1 || st.Misses != 250 {
			t.Fatalf("stats %+v", st)
		}
	})
}

// Keys in flight are joined, both ways: GetMany joins a Get's load, and a
// Get joins a GetMany's batch.
func TestGetManyJoinsLoadsInFlight(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c := cacheOver(t, true)
		src := &batchSource{}
		one := &source{value: "get"}
		releaseGet := one.block()
		go func() { _, _ = c.Get(context.Background(), "a", one.load) }()
		synctest.Wait()

		releaseBatch := src.block()
		done := make(chan map[string]string)
		go func() {
			got, err := c.GetMany(context.Background(), []string{"a", "b", "c"}, src.load)
			if err != nil {
				t.Errorf("GetMany: %v", err)
			}
			done <- got
		}()
		synctest.Wait()
		// A Get of a key of the batch joins it.
		getB := make(chan string)
		go func() {
			v, err := c.Get(context.Background(), "b", one.load)
			if err != nil {
				t.Errorf("Get(b): %v", err)
			}
			getB <- v
		}()
		synctest.Wait()
		releaseGet()
		releaseBatch()
		got := <-done
		if want := map[string]string{"a": "get:a", "b": "v:b", "c": "v:c"}; !maps.Equal(got, want) {
			t.Fatalf("GetMany = %v, want %v", got, want)
		}
		if v := <-getB; v != "v:b" {
			t.Fatalf("Get(b) = %q, want the batch's value", v)
		}
		if calls := src.callKeys(); len(calls) != 1 || !sameKeys(calls[0], []string{"b", "c"}) {
			t.Fatalf("batch calls %v, want one with b and c", calls)
		}
		if n := one.calls.Load(); n != 1 {
			t.Fatalf("%d loader calls, want the one of a", n)
		}
		if st := c.Stats(); st.SharedWaits != 2 {
			t.Fatalf("SharedWaits = %d, want 2 (a in GetMany, b in Get)", st.SharedWaits)
		}
	})
}

// A Set or Delete that lands while a batch loads the key wins, in this
// process and from another instance over the same store.
func TestGetManyWritesWin(t *testing.T) {
	for _, tc := range []struct {
		name  string
		other bool // the write comes from another instance
		write func(c *herd.Cache[string]) error
		want  string // "" for no entry
	}{
		{"set", false, func(c *herd.Cache[string]) error { return c.Set(context.Background(), "a", "set") }, "set"},
		{"delete", false, func(c *herd.Cache[string]) error { return c.Delete(context.Background(), "a") }, ""},
		{"set elsewhere", true, func(c *herd.Cache[string]) error { return c.Set(context.Background(), "a", "set") }, "set"},
		{"delete elsewhere", true, func(c *herd.Cache[string]) error { return c.Delete(context.Background(), "a") }, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				caches, mem := fleet(t, 2)
				a, writer := caches[0], caches[0]
				if tc.other {
					writer = caches[1]
				}
				src := &batchSource{}
				release := src.block()
				done := make(chan map[string]string)
				go func() {
					got, _ := a.GetMany(context.Background(), []string{"a", "b"}, src.load)
					done <- got
				}()
				synctest.Wait()
				if err := tc.write(writer); err != nil {
					t.Fatal(err)
				}
				release()
				if got := <-done; got["a"] != "v:a" || got["b"] != "v:b" {
					t.Fatalf("GetMany = %v: its callers get the loaded values", got)
				}
				synctest.Wait()
				e, ok, _ := mem.Get(context.Background(), "a")
				switch {
				case tc.want == "" && ok:
					t.Fatalf("the batch wrote %q over the Delete", e.Value)
				case tc.want != "" && (!ok || e.Value != tc.want):
					t.Fatalf("store holds %q (present %v), want %q", e.Value, ok, tc.want)
				}
				if e, ok, _ := mem.Get(context.Background(), "b"); !ok || e.Value != "v:b" {
					t.Fatalf("b not written back: %+v %v", e, ok)
				}
				if tc.other && a.Stats().WriteConflicts != 1 {
					t.Fatalf("WriteConflicts = %d, want 1", a.Stats().WriteConflicts)
				}
			})
		})
	}
}

// A batch loader that panics or calls runtime.Goexit fails every key of its
// call, and only those; nothing is cached, and the cache goes on.
func TestGetManyLoaderPanic(t *testing.T) {
	for _, name := range []string{"panic", "goexit"} {
		t.Run(name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				c := cacheOver(t, true, herd.StaleIfError(time.Hour))
				load := func(ctx context.Context, keys []string) (map[string]string, error) {
					if slices.Contains(keys, "bad") {
						if name == "panic" {
							panic("boom")
						}
						runtime.Goexit()
					}
					return map[string]string{keys[0]: "ok"}, nil
				}
				// Calls [good bad] and [bad2]: the first fails, the second not.
				got, err := c.GetMany(context.Background(), []string{"good", "bad", "bad2"}, load, herd.MaxBatch(2))
				var kerrs herd.KeyErrors
				if !errors.As(err, &kerrs) || len(kerrs) != 2 || len(got) != 1 || got["bad2"] != "ok" {
					t.Fatalf("GetMany = %v, %v", got, err)
				}
				for k, err := range kerrs {
					var pe *flight.PanicError
					if name == "panic" && !errors.As(err, &pe) {
						t.Fatalf("%q: %v, want a *flight.PanicError", k, err)
					}
					if name == "goexit" && !errors.Is(err, flight.ErrGoexit) {
						t.Fatalf("%q: %v, want flight.ErrGoexit", k, err)
					}
				}
				if _, ok := kerrs["bad"]; !ok {
					t.Fatalf("errors %v miss the key of the failing call", kerrs)
				}
				got, err = c.GetMany(context.Background(), []string{"bad"}, func(context.Context, []string) (map[string]string, error) {
					return map[string]string{"bad": "fixed"}, nil
				})
				if err != nil || got["bad"] != "fixed" {
					t.Fatalf("next GetMany = %v, %v", got, err)
				}
			})
		})
	}
}

// Each caller waits on its own context; the batch goes on and fills the
// cache.
func TestGetManyCallerLeaves(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c := cacheOver(t, true)
		src := &batchSource{}
		release := src.block()
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error)
		go func() {
			got, err := c.GetMany(ctx, []string{"a", "b"}, src.load)
			if got != nil {
				t.Errorf("GetMany returned %v after its context ended", got)
			}
			done <- err
		}()
		synctest.Wait()
		cancel()
		if err := <-done; !errors.Is(err, context.Canceled) {
			t.Fatalf("GetMany = %v, want context.Canceled", err)
		}
		release()
		synctest.Wait()
		got, err := c.FetchMany(context.Background(), []string{"a", "b"}, src.load)
		if err != nil || got["a"].Status != herd.StatusFresh || got["b"].Value != "v:b" {
			t.Fatalf("FetchMany after the batch = %v, %v", got, err)
		}
		if n := len(src.callKeys()); n != 1 {
			t.Fatalf("%d batch calls, want 1", n)
		}
	})
}

// Duplicates are asked once, no keys cost nothing, and 10,000 keys go in
// calls of MaxBatch.
func TestGetManyKeySets(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c := cacheOver(t, true)
		src := &batchSource{}
		got, err := c.GetMany(context.Background(), nil, src.load)
		if err != nil || got == nil || len(got) != 0 {
			t.Fatalf("GetMany(nil) = %v, %v; want an empty map", got, err)
		}
		got, err = c.GetMany(context.Background(), []string{"a", "b", "a", "a", "b"}, src.load)
		if err != nil || len(got) != 2 {
			t.Fatalf("GetMany with duplicates = %v, %v", got, err)
		}
		if calls := src.callKeys(); len(calls) != 1 || len(calls[0]) != 2 {
			t.Fatalf("calls %v, want one with a and b", calls)
		}
		keys := make([]string, 10_000)
		for i := range keys {
			keys[i] = fmt.Sprint("many", i)
		}
		got, err = c.GetMany(context.Background(), keys, src.load, herd.MaxBatch(1000), herd.MaxConcurrentBatches(3))
		if err != nil || len(got) != 10_000 || got["many9999"] != "v:many9999" {
			t.Fatalf("GetMany of 10,000 keys: %d values, %v", len(got), err)
		}
		if n := len(src.callKeys()); n != 11 || src.peak.Load() > 3 {
			t.Fatalf("%d calls (%d at once), want 1+10 (at most 3)", n, src.peak.Load())
		}
		got, err = c.GetMany(context.Background(), keys, src.load)
		if err != nil || len(got) != 10_000 || len(src.callKeys()) != 11 {
			t.Fatalf("second GetMany: %d values, %v, %d calls", len(got), err, len(src.callKeys()))
		}
	})
}

// SetKeyTTL gives one key of a batch its own lifetime, SetTTL every key.
func TestGetManySetKeyTTL(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		caches, mem := fleet(t, 1, herd.TTL(time.Hour))
		c := caches[0]
		load := func(ctx context.Context, keys []string) (map[string]string, error) {
			herd.SetTTL(ctx, 2*time.Hour)
			herd.SetKeyTTL(ctx, "short", time.Minute)
			herd.SetKeyTTL(ctx, "none", 0)
			out := map[string]string{}
			for _, k := range keys {
				out[k] = k
			}
			return out, nil
		}
		if got, err := c.GetMany(context.Background(), []string{"short", "long", "none"}, load); err != nil || len(got) != 3 {
			t.Fatalf("GetMany = %v, %v", got, err)
		}
		synctest.Wait()
		now := time.Now()
		for k, want := range map[string]time.Duration{"short": time.Minute, "long": 2 * time.Hour} {
			e, ok, _ := mem.Get(context.Background(), k)
			if !ok || !e.ExpiresAt.Equal(now.Add(want)) {
				t.Fatalf("%q: %+v, want it to expire in %v", k, e, want)
			}
		}
		if _, ok, _ := mem.Get(context.Background(), "none"); ok {
			t.Fatal("a key with SetKeyTTL 0 was cached")
		}
		if herd.SetKeyTTL(context.Background(), "k", time.Minute) {
			t.Fatal("SetKeyTTL outside a batch loader reported true")
		}
	})
}

// GetMany after Close returns ErrClosed, and Close waits for a batch in
// flight.
func TestGetManyClose(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		caches, _ := fleet(t, 1)
		c := caches[0]
		src := &batchSource{}
		release := src.block()
		go func() { _, _ = c.GetMany(context.Background(), []string{"a"}, src.load) }()
		synctest.Wait()
		closed := make(chan error)
		go func() { closed <- c.Close(context.Background()) }()
		synctest.Wait()
		select {
		case err := <-closed:
			t.Fatalf("Close returned %v with a batch in flight", err)
		default:
		}
		release()
		if err := <-closed; err != nil {
			t.Fatal(err)
		}
		if _, err := c.GetMany(context.Background(), []string{"a"}, src.load); !errors.Is(err, herd.ErrClosed) {
			t.Fatalf("GetMany after Close = %v", err)
		}
	})
}

// Invalid batch options panic with a message naming the option.
func TestInvalidBatchOptionsPanic(t *testing.T) {
	c, _ := newCache(t)
	load := (&batchSource{}).load
	for name, opt := range map[string]herd.BatchOption{
		"MaxBatch":             herd.MaxBatch(0),
		"MaxConcurrentBatches": herd.MaxConcurrentBatches(-1),
		"MaxWait":              herd.MaxWait(0),
	} {
		func() {
			defer func() {
				if r := recover(); r == nil || !strings.Contains(fmt.Sprint(r), name) {
					t.Errorf("%s: panic %v, want one naming it", name, r)
				}
			}()
			_, _ = c.GetMany(context.Background(), []string{"k"}, load, opt)
		}()
	}
}

// hookedStore runs a hook, once, after a bulk read has missed and before
// GetMany goes on with what it read.
type hookedStore struct {
	*memory.Store[string]
	hook func()
}

func (s *hookedStore) GetMany(ctx context.Context, keys []string) (map[string]store.Entry[string], error) {
	m, err := s.Store.GetMany(ctx, keys)
	if h := s.hook; h != nil {
		s.hook = nil
		h()
	}
	return m, err
}

// A key whose load lands between GetMany's bulk read (a miss) and its claim
// of the key is not loaded again: the batch load reads the key's version
// before its loader runs, finds the value, and answers with it.
func TestRegressionGetManyReloadsAKeyStoredMeanwhile(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		mem := memory.New[string]()
		s := &hookedStore{Store: mem}
		c := herd.New[string](s, herd.WithLogger(discard), herd.TTL(time.Hour))
		defer func() {
			_ = c.Close(context.Background())
			_ = mem.Close(context.Background())
		}()
		one := &source{value: "get"}
		s.hook = func() {
			if _, err := c.Get(context.Background(), "a", one.load); err != nil {
				t.Error(err)
			}
			synctest.Wait() // its write-back has landed and its call is over
		}
		src := &batchSource{}
		got, err := c.GetMany(context.Background(), []string{"a", "b"}, src.load)
		if err != nil || got["a"] != "get:a" || got["b"] != "v:b" {
			t.Fatalf("GetMany = %v, %v", got, err)
		}
		if calls := src.callKeys(); len(calls) != 1 || !slices.Equal(calls[0], []string{"b"}) {
			t.Fatalf("batch calls %v, want one with b alone", calls)
		}
	})
}
