package herd_test

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/herdcache/herd"
	"github.com/herdcache/herd/store"
	"github.com/herdcache/herd/store/memory"
)

// downStore is a remote store whose backend a test takes down and brings
// back: down, every call fails at once with an error wrapping
// store.ErrUnavailable (hang: waits for its context instead, as a server
// that stopped answering). It counts the calls that reach it.
type downStore struct {
	*memory.Store[string]
	down, hang atomic.Bool
	calls      atomic.Int32
}

var errBackendDown = fmt.Errorf("backend: connection refused: %w", store.ErrUnavailable)

func (s *downStore) fail(ctx context.Context) error {
	s.calls.Add(1)
	if !s.down.Load() {
		return nil
	}
	if s.hang.Load() {
		<-ctx.Done()
		return ctx.Err()
	}
	return errBackendDown
}

func (s *downStore) Get(ctx context.Context, key string) (store.Entry[string], bool, error) {
	if err := s.fail(ctx); err != nil {
		return store.Entry[string]{}, false, err
	}
	return s.Store.Get(ctx, key)
}

func (s *downStore) GetVersion(ctx context.Context, key string) (store.Entry[string], store.Version, bool, error) {
	if err := s.fail(ctx); err != nil {
		return store.Entry[string]{}, 0, false, err
	}
	return s.Store.GetVersion(ctx, key)
}

func (s *downStore) SetIf(ctx context.Context, key string, e store.Entry[string], v store.Version) error {
	if err := s.fail(ctx); err != nil {
		return err
	}
	return s.Store.SetIf(ctx, key, e, v)
}

func (s *downStore) Set(ctx context.Context, key string, e store.Entry[string]) error {
	if err := s.fail(ctx); err != nil {
		return err
	}
	return s.Store.Set(ctx, key, e)
}

func (s *downStore) TryLock(ctx context.Context, key string, ttl time.Duration) (store.Lock, error) {
	if err := s.fail(ctx); err != nil {
		return nil, err
	}
	return s.Store.TryLock(ctx, key, ttl)
}

// A store that goes down costs the first caller its failed call and a load;
// the callers after it load without calling the store at all, but for one
// probe per window; once a probe is answered, the store is used again.
// Through a store that fails at once and one that hangs until StoreTimeout.
func TestStoreDownIsSkipped(t *testing.T) {
	for _, hang := range []bool{false, true} {
		t.Run(map[bool]string{false: "refused", true: "hanging"}[hang], func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				s := &downStore{Store: memory.New[string]()}
				c := herd.New[string](s, herd.TTL(time.Hour), herd.StoreTimeout(time.Second),
					herd.StoreBackoff(time.Second, 4*time.Second), herd.WithLocker(s, 10*time.Second), herd.WithLogger(discard))
				defer c.Close(context.Background())
				ctx := context.Background()
				s.down.Store(true)
				s.hang.Store(hang)

				start := time.Now()
				if v, err := c.Get(ctx, "a", constLoader("v")); err != nil || v != "v" {
					t.Fatalf("first Get = %q, %v", v, err)
				}
				first := time.Since(start)
				if s.calls.Load() != 1 {
					t.Fatalf("the first Get made %d store calls, want 1 (its read): the version read, the lock and the write-back are skipped", s.calls.Load())
				}
				if want := map[bool]time.Duration{false: 0, true: time.Second}[hang]; first != want {
					t.Fatalf("the first Get took %v, want %v", first, want)
				}
				for i := range 20 {
					key := fmt.Sprintf("k%d", i)
					start := time.Now()
					if v, err := c.Get(ctx, key, constLoader("v")); err != nil || v != "v" {
						t.Fatalf("Get = %q, %v", v, err)
					}
					if d := time.Since(start); d != 0 {
						t.Fatalf("a Get while the store is down took %v, want no wait", d)
					}
				}
				if n := s.calls.Load(); n != 1 {
					t.Fatalf("%d store calls while down within the window, want none after the first", n)
				}
				st := c.Stats()
				if st.StoreDowns != 1 || st.StoreSkipped == 0 || st.StoreErrors != 1 {
					t.Fatalf("stats %+v, want 1 down, 1 store error (the first call) and the rest skipped", st)
				}

				time.Sleep(time.Second) // the window passes: the next call probes
				s.down.Store(false)
				if _, err := c.Get(ctx, "b", constLoader("v")); err != nil {
					t.Fatal(err)
				}
				synctest.Wait()
				if st := c.Stats(); st.StoreUps != 1 {
					t.Fatalf("stats %+v, want the store back up after the probe", st)
				}
				before := s.calls.Load()
				if _, err := c.Get(ctx, "c", constLoader("v")); err != nil {
					t.Fatal(err)
				}
				synctest.Wait()
				if n := s.calls.Load() - before; n < 3 {
					t.Fatalf("a load once the store is back made %d store calls, want its read, lock, version read and write-back", n)
				}
			})
		})
	}
}

// A Set while the store is down fails at once with an error wrapping
// store.ErrUnavailable, without waiting for the store.
func TestSetWhileStoreDown(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := &downStore{Store: memory.New[string]()}
		c := herd.New[string](s, herd.StoreBackoff(time.Minute, time.Minute), herd.WithLogger(discard))
		defer c.Close(context.Background())
		s.down.Store(true)
		s.hang.Store(true)
		if _, err := c.Get(context.Background(), "a", constLoader("v")); err != nil {
			t.Fatal(err)
		}
		start := time.Now()
		err := c.Set(context.Background(), "a", "w")
		if !errors.Is(err, store.ErrUnavailable) || time.Since(start) != 0 {
			t.Fatalf("Set while down = %v after %v, want an error wrapping store.ErrUnavailable at once", err, time.Since(start))
		}
	})
}
