package single_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/herdcache/herd/store"
	"github.com/herdcache/herd/store/single"
	"github.com/herdcache/herd/store/storetest"
)

// oneKeyStore adapts the single store to the conformance suite, which writes
// several keys: each key gets a single.Store of its own, so the suite checks
// everything but the one-key rule, which the tests below check.
type oneKeyStore struct {
	mu sync.Mutex
	m  map[string]*single.Store[storetest.Value]
}

func (o *oneKeyStore) of(key string) *single.Store[storetest.Value] {
	o.mu.Lock()
	defer o.mu.Unlock()
	s, ok := o.m[key]
	if !ok {
		s = single.New[storetest.Value]()
		o.m[key] = s
	}
	return s
}

func (o *oneKeyStore) Get(ctx context.Context, key string) (store.Entry[storetest.Value], bool, error) {
	return o.of(key).Get(ctx, key)
}

func (o *oneKeyStore) Set(ctx context.Context, key string, e store.Entry[storetest.Value]) error {
	return o.of(key).Set(ctx, key, e)
}

func (o *oneKeyStore) Delete(ctx context.Context, key string) error {
	return o.of(key).Delete(ctx, key)
}

func TestConformance(t *testing.T) {
	storetest.Run(t, func(*testing.T) store.Store[storetest.Value] {
		return &oneKeyStore{m: make(map[string]*single.Store[storetest.Value])}
	})
}

func TestHoldsOneKey(t *testing.T) {
	var s single.Store[int] // zero value ready
	ctx := context.Background()
	_ = s.Set(ctx, "a", store.Entry[int]{Value: 1})
	if e, ok, _ := s.Get(ctx, "a"); !ok || e.Value != 1 {
		t.Fatalf("Get(a) = %v, %v", e, ok)
	}
	if _, ok, _ := s.Get(ctx, "b"); ok {
		t.Fatal("Get of another key hit")
	}
	_ = s.Set(ctx, "b", store.Entry[int]{Value: 2})
	if _, ok, _ := s.Get(ctx, "a"); ok {
		t.Fatal("the first key survived a Set of another")
	}
	_ = s.Delete(ctx, "a") // not held: no effect
	if e, ok, _ := s.Get(ctx, "b"); !ok || e.Value != 2 {
		t.Fatalf("Delete of a key not held dropped the one held: %v, %v", e, ok)
	}
	_ = s.Delete(ctx, "b")
	if _, ok, _ := s.Get(ctx, "b"); ok {
		t.Fatal("hit after Delete")
	}
}

func TestKeepUntil(t *testing.T) {
	s := single.New[int]()
	ctx := context.Background()
	_ = s.Set(ctx, "k", store.Entry[int]{Value: 1, KeepUntil: time.Now().Add(-time.Millisecond)})
	if _, ok, _ := s.Get(ctx, "k"); ok {
		t.Fatal("entry past its KeepUntil returned")
	}
}

func TestConcurrentUse(t *testing.T) {
	var s single.Store[int]
	ctx := context.Background()
	var wg sync.WaitGroup
	for w := range 8 {
		wg.Go(func() {
			key := string(rune('a' + w%2))
			for i := range 1000 {
				_ = s.Set(ctx, key, store.Entry[int]{Value: w*10_000 + i})
				if e, ok, _ := s.Get(ctx, key); ok && e.Value/10_000%2 != w%2 {
					t.Errorf("key %s returned writer %d's value", key, e.Value/10_000)
					return
				}
				_ = s.Delete(ctx, key)
			}
		})
	}
	wg.Wait()
}
