package tiered_test

import (
	"context"
	"errors"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"go.uber.org/goleak"

	"github.com/herdcache/herd/store"
	"github.com/herdcache/herd/store/memory"
	"github.com/herdcache/herd/store/storetest"
	"github.com/herdcache/herd/store/tiered"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// fleets returns a newStore for storetest: within one test, every call
// returns a new tiered instance over the one far store of that test, as
// instances of a fleet share a server. With single, the far store hides its
// bulk capabilities, so that the tiered store's bulk calls make single ones.
func fleets(versioned, single bool) func(t *testing.T) store.Store[storetest.Value] {
	var (
		mu   sync.Mutex
		fars = make(map[*testing.T]*memory.Store[storetest.Value])
	)
	return func(t *testing.T) store.Store[storetest.Value] {
		t.Helper()
		mu.Lock()
		far, ok := fars[t]
		if !ok {
			far = memory.New[storetest.Value]()
			fars[t] = far
			t.Cleanup(func() {
				mu.Lock()
				delete(fars, t)
				mu.Unlock()
				if err := far.Close(context.Background()); err != nil {
					t.Error(err)
				}
			})
		}
		mu.Unlock()
		var (
			s   store.Store[storetest.Value]
			err error
		)
		switch {
		case versioned && single:
			s, err = tiered.NewVersioned[storetest.Value](singleFar{far, far, far})
		case versioned:
			s, err = tiered.NewVersioned[storetest.Value](far)
		case single:
			s, err = tiered.New[storetest.Value](singleFar{far, far, far})
		default:
			s, err = tiered.New[storetest.Value](far)
		}
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			if err := s.(interface{ Close(context.Context) error }).Close(context.Background()); err != nil {
				t.Error(err)
			}
		})
		return s
	}
}

func TestConformance(t *testing.T) {
	t.Run("Versioned", func(t *testing.T) { storetest.Run(t, fleets(true, false)) })
	t.Run("Plain", func(t *testing.T) { storetest.Run(t, fleets(false, false)) })
	t.Run("VersionedOverSingleCalls", func(t *testing.T) { storetest.Run(t, fleets(true, true)) })
	t.Run("PlainOverSingleCalls", func(t *testing.T) { storetest.Run(t, fleets(false, true)) })
}

// singleFar is a far store with versions, locks and a change stream, but
// none of the bulk capabilities.
type singleFar struct {
	store.Versioned[storetest.Value]
	store.Locker
	store.ChangeStream
}

func TestNewPanicsOnInvalidUse(t *testing.T) {
	far := memory.New[int]()
	defer far.Close(context.Background())
	for name, build := range map[string]func(){
		"nil far":          func() { _, _ = tiered.New[int](nil) },
		"nil versioned":    func() { _, _ = tiered.NewVersioned[int](nil) },
		"no change stream": func() { _, _ = tiered.New[int](plainStore{far}) },
		"NearTTL 0":        func() { _, _ = tiered.New[int](far, tiered.NearTTL(0)) },
		"NearTTL negative": func() { _, _ = tiered.New[int](far, tiered.NearTTL(-1)) },
		"WatchTimeout 0":   func() { _, _ = tiered.New[int](far, tiered.WatchTimeout(0)) },
		"NearMaxEntries 0": func() { _, _ = tiered.New[int](far, tiered.NearMaxEntries(0)) },
		"NearMaxWeight 0":  func() { _, _ = tiered.New[int](far, tiered.NearMaxWeight(0, func(string, int) uint32 { return 1 })) },
		"weigher type": func() {
			_, _ = tiered.New[int](far, tiered.NearMaxWeight(10, func(string, string) uint32 { return 1 }))
		},
		"weigher nil": func() { _, _ = tiered.New[int](far, tiered.NearMaxWeight[int](10, nil)) },
		"nil Context": func() {
			s, err := tiered.New[int](far)
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close(context.Background())
			//nolint:staticcheck // the nil context is the point
			_, _, _ = s.Get(nil, "k")
		},
	} {
		t.Run(name, func(t *testing.T) {
			defer func() {
				r := recover()
				if r == nil {
					t.Fatal("no panic")
				}
				if msg, ok := r.(string); !ok || len(msg) < len("tiered: ") || msg[:len("tiered: ")] != "tiered: " {
					t.Fatalf("panic %v does not name the package", r)
				}
			}()
			build()
		})
	}
}

// New fails, with the far store's error, when the change stream cannot be
// started.
func TestNewFailsWithoutAStream(t *testing.T) {
	far := memory.New[int]()
	if err := far.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	s, err := tiered.New[int](far)
	if !errors.Is(err, memory.ErrClosed) || s != nil {
		t.Fatalf("New over a closed far store: %v, %v; want an error wrapping memory.ErrClosed", s, err)
	}
}

// plainStore is a far store with no capability but its three methods.
type plainStore struct{ m *memory.Store[int] }

func (p plainStore) Get(ctx context.Context, key string) (store.Entry[int], bool, error) {
	return p.m.Get(ctx, key)
}

func (p plainStore) Set(ctx context.Context, key string, e store.Entry[int]) error {
	return p.m.Set(ctx, key, e)
}
func (p plainStore) Delete(ctx context.Context, key string) error { return p.m.Delete(ctx, key) }

// streamOnly is a far store with a change stream and nothing else.
type streamOnly struct{ plainStore }

func (s streamOnly) Watch(ctx context.Context, fn func(store.Change)) (store.Watch, error) {
	return s.m.Watch(ctx, fn)
}

// Over a far store without locks or bulk reads, TryLock says so and
// GetMany reads key by key.
func TestFarWithoutCapabilities(t *testing.T) {
	far := memory.New[int]()
	defer far.Close(context.Background())
	s, err := tiered.New[int](streamOnly{plainStore{far}})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close(context.Background())
	ctx := context.Background()
	if _, err := s.TryLock(ctx, "k", 1); !errors.Is(err, tiered.ErrNoLocker) {
		t.Fatalf("TryLock over a far store without locks: %v, want ErrNoLocker", err)
	}
	_ = far.Set(ctx, "a", store.Entry[int]{Value: 1})
	_ = far.Set(ctx, "b", store.Entry[int]{Value: 2})
	got, err := s.GetMany(ctx, []string{"a", "b", "c", "a"})
	if err != nil || len(got) != 2 || got["a"].Value != 1 || got["b"].Value != 2 {
		t.Fatalf("GetMany = %v, %v", got, err)
	}
}

// Peek lends the near copy, times and flags included, and misses when the
// near tier has no live copy, whatever the far tier holds.
func TestPeekReadsOnlyTheNearTier(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		far := memory.New[int]()
		defer far.Close(context.Background())
		s, err := tiered.New[int](far, tiered.NearTTL(time.Minute))
		if err != nil {
			t.Fatal(err)
		}
		ctx := context.Background()
		now := time.Now()
		want := store.Entry[int]{Value: 7, StoredAt: now, RefreshAt: now.Add(time.Second), ExpiresAt: now.Add(time.Hour), KeepUntil: now.Add(2 * time.Hour)}
		_ = far.Set(ctx, "far-only", want)
		synctest.Wait()
		if _, _, ok := tiered.PeekNear(s, "far-only"); ok {
			t.Fatal("Peek read the far tier")
		}
		if err := s.Set(ctx, "k", want); err != nil {
			t.Fatal(err)
		}
		e, at, ok := tiered.PeekNear(s, "k")
		got := e.Entry()
		if !ok || got.Value != 7 || got.NotFound || !got.StoredAt.Equal(want.StoredAt) || !got.RefreshAt.Equal(want.RefreshAt) ||
			!got.ExpiresAt.Equal(want.ExpiresAt) || !got.KeepUntil.Equal(want.KeepUntil) || at != now.UnixNano() {
			t.Fatalf("Peek = %+v, %d, %v; want the near copy of %+v found at %d", e, at, ok, want, now.UnixNano())
		}
		_ = far.Set(ctx, "k", store.Entry[int]{Value: 8, NotFound: true})
		synctest.Wait()
		if _, _, ok := tiered.PeekNear(s, "k"); ok {
			t.Fatal("Peek hit after a change dropped the near copy")
		}
		if got, ok, _ := s.Get(ctx, "k"); !ok || !got.NotFound {
			t.Fatalf("Get = %+v, %v", got, ok)
		}
		if e, _, ok := tiered.PeekNear(s, "k"); !ok || !e.NotFound() {
			t.Fatalf("Peek after a fill = %+v, %v; want the not-found entry", e, ok)
		}
		time.Sleep(time.Minute)
		if _, _, ok := tiered.PeekNear(s, "k"); ok {
			t.Fatal("Peek hit past NearTTL")
		}
		_ = s.Set(ctx, "k", want)
		if err := s.Close(ctx); err != nil {
			t.Fatal(err)
		}
		if _, _, ok := tiered.PeekNear(s, "k"); ok {
			t.Fatal("Peek hit after Close")
		}
	})
}
