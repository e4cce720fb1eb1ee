package redisstore_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/herdcache/herd"
	"github.com/herdcache/herd/redisstore"
	"github.com/herdcache/herd/store"
	"github.com/herdcache/herd/store/storetest"
)

// silentListener returns the address of a loopback server that accepts
// connections, reads what it is sent and never answers.
func silentListener(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var (
		wg    sync.WaitGroup
		mu    sync.Mutex
		conns []net.Conn
	)
	wg.Go(func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
			wg.Go(func() {
				buf := make([]byte, 4096)
				for {
					if _, err := c.Read(buf); err != nil {
						return
					}
				}
			})
		}
	})
	t.Cleanup(func() {
		_ = l.Close()
		mu.Lock()
		for _, c := range conns {
			_ = c.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
	return l.Addr().String()
}

// A server that accepts and never answers costs a caller its deadline, no
// more.
func TestSilentServerCostsTheDeadline(t *testing.T) {
	addr := silentListener(t)
	// The client's own timeouts are far longer than the deadline: only the
	// context can end these calls in time.
	client := newClient(t, addr, func(o *redis.Options) { o.ReadTimeout, o.WriteTimeout = time.Minute, time.Minute })
	s := redisstore.New[storetest.Value](client, redisstore.Prefix("p"))
	const deadline = 200 * time.Millisecond
	const slack = 800 * time.Millisecond
	check := func(op string, call func(ctx context.Context) error) {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), deadline)
		defer cancel()
		start := time.Now()
		err := call(ctx)
		took := time.Since(start)
		if err == nil {
			t.Errorf("%s on a silent server returned no error", op)
		}
		if took > deadline+slack {
			t.Errorf("%s on a silent server took %v with a %v deadline", op, took, deadline)
		}
	}
	check("Get", func(ctx context.Context) error { _, _, err := s.Get(ctx, "k"); return err })
	check("Set", func(ctx context.Context) error { return s.Set(ctx, "k", store.Entry[storetest.Value]{}) })
	check("Delete", func(ctx context.Context) error { return s.Delete(ctx, "k") })
	check("GetMany", func(ctx context.Context) error { _, err := s.GetMany(ctx, []string{"a", "b"}); return err })
	check("TryLock", func(ctx context.Context) error { _, err := s.TryLock(ctx, "k", time.Second); return err })
	check("GetVersion", func(ctx context.Context) error { _, _, _, err := s.GetVersion(ctx, "k"); return err })
	check("SetIf", func(ctx context.Context) error { return s.SetIf(ctx, "k", store.Entry[storetest.Value]{}, 0) })
	check("Watch", func(ctx context.Context) error { _, err := s.Watch(ctx, func(store.Change) {}); return err })

	// Through a cache: the caller gets its loaded value or its context's
	// error, by its deadline.
	cache := herd.New[storetest.Value](s, herd.TTL(time.Minute), herd.StoreTimeout(deadline), herd.WithLogger(discard()))
	defer func() { _ = cache.Close(context.Background()) }()
	check("cache.Get", func(ctx context.Context) error {
		_, err := cache.Get(ctx, "k", func(context.Context, string) (storetest.Value, error) { return storetest.Value{Name: "v"}, nil })
		if err == nil {
			return errors.New("no error") // the store read used the whole deadline
		}
		return err
	})
}

// Killing redis-server under 200 callers of a cache: every call returns
// within its context, falling back to the loader; once the server is back
// on the same port, the same cache uses it again.
func TestServerKilledUnderLoad(t *testing.T) {
	srv := startRedis(t)
	s := redisstore.New[storetest.Value](srv.client(t), redisstore.Prefix("p"))
	cache := herd.New[storetest.Value](s, herd.TTL(time.Hour), herd.StoreTimeout(200*time.Millisecond), herd.WithLogger(discard()))
	defer func() { _ = cache.Close(context.Background()) }()

	var loads atomic.Int64
	load := func(_ context.Context, key string) (storetest.Value, error) {
		loads.Add(1)
		return storetest.Value{Name: key}, nil
	}
	const (
		callers = 200
		// Generous: the bound under test is the context, and a loaded CI
		// machine under -race can stall goroutines for a while.
		deadline = 5 * time.Second
		slack    = time.Second
	)
	var (
		stop          = make(chan struct{})
		calls         atomic.Int64
		errs          atomic.Int64
		late          atomic.Int64
		killed        atomic.Bool
		lateAfterKill atomic.Int64
		maxTook       atomic.Int64
		firstErr      atomic.Value
		wg            sync.WaitGroup
	)
	for i := range callers {
		wg.Go(func() {
			for n := 0; ; n++ {
				select {
				case <-stop:
					return
				default:
				}
				key := fmt.Sprintf("key-%d", (i+n)%20)
				ctx, cancel := context.WithTimeout(context.Background(), deadline)
				start := time.Now()
				v, err := cache.Get(ctx, key, load)
				took := time.Since(start)
				cancel()
				calls.Add(1)
				if took > deadline+slack {
					late.Add(1)
					if killed.Load() {
						lateAfterKill.Add(1)
					}
				}
				for {
					m := maxTook.Load()
					if int64(took) <= m || maxTook.CompareAndSwap(m, int64(took)) {
						break
					}
				}
				switch {
				case err != nil:
					errs.Add(1)
					firstErr.CompareAndSwap(nil, err)
				case v.Name != key:
					t.Errorf("Get(%q) = %+v", key, v)
				}
			}
		})
	}
	waitFor(t, "200 callers to make 2000 calls", func() bool { return calls.Load() >= 2000 })
	srv.stop()
	killed.Store(true)
	killedAt, loadsAtKill := calls.Load(), loads.Load()
	waitFor(t, "2000 more calls with the server down", func() bool { return calls.Load() >= killedAt+2000 })
	loadsWhileDown := loads.Load() - loadsAtKill
	close(stop)
	wg.Wait()
	t.Logf("%d calls; server killed after %d; %d loads while it was down; %d errors (first: %v); %d past deadline+%v; slowest %v",
		calls.Load(), killedAt, loadsWhileDown, errs.Load(), firstErr.Load(), late.Load(), slack, time.Duration(maxTook.Load()))
	t.Logf("late after kill: %d", lateAfterKill.Load())
	if late.Load() != 0 {
		t.Errorf("%d calls returned later than their %v deadline + %v", late.Load(), deadline, slack)
	}
	if loadsWhileDown == 0 {
		t.Error("no caller fell back to the loader while the server was down")
	}
	if errs.Load() != 0 {
		t.Errorf("%d calls failed (first: %v); a store that fails should cost a load, not an error", errs.Load(), firstErr.Load())
	}

	// Back on the same port, empty: a value set through Redis by another
	// client reaches the same cache.
	srv.start()
	other := redisstore.New[storetest.Value](srv.client(t), redisstore.Prefix("p"))
	ctx := context.Background()
	if err := other.Set(ctx, "after", store.Entry[storetest.Value]{Value: storetest.Value{Name: "from redis"}}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the cache to read Redis again", func() bool {
		v, err := cache.Get(ctx, "after", func(context.Context, string) (storetest.Value, error) {
			return storetest.Value{}, errors.New("not loaded: Redis has it")
		})
		return err == nil && v.Name == "from redis"
	})
}

// waitFor polls cond every 10ms for up to 30s.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.After(30 * time.Second)
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for !cond() {
		select {
		case <-tick.C:
		case <-deadline:
			t.Fatalf("gave up waiting for %s after 30s", what)
		}
	}
}

// countingStore counts the reads of a store.
type countingStore struct {
	*redisstore.Store[string]
	reads *atomic.Int64
}

func (s countingStore) Get(ctx context.Context, key string) (store.Entry[string], bool, error) {
	defer s.reads.Add(1)
	return s.Store.Get(ctx, key)
}

// Three caches, three clients, one Redis, WithLocker: 300 callers each on
// one cold key, and the loader runs once across all three.
//
// The loader returns 50ms after every caller has read the store and missed.
// It must: herd.Cache does not read the store again once it holds the lock,
// so a caller that missed before the holder stored its value, and reaches
// the lock after the holder released it, loads a second time (on two CPUs
// under -race, where 900 reads take longer than 50ms, about one run in two).
func TestLockerMakesOneLoadAcrossInstances(t *testing.T) {
	srv := startRedis(t)
	const perCache = 300
	var reads atomic.Int64
	var caches []*herd.Cache[string]
	for range 3 {
		s := redisstore.New[string](srv.client(t), redisstore.Prefix("fleet"))
		c := herd.New[string](countingStore{s, &reads}, herd.TTL(time.Minute), herd.LoadTimeout(15*time.Second), herd.WithLocker(s, 5*time.Second), herd.WithLogger(discard()))
		caches = append(caches, c)
		defer func() { _ = c.Close(context.Background()) }()
	}
	var loads atomic.Int32
	load := func(ctx context.Context, _ string) (string, error) {
		loads.Add(1)
		// Not waitFor: this runs on the cache's goroutine, not the test's.
		tick := time.NewTicker(time.Millisecond)
		defer tick.Stop()
		for reads.Load() < 3*perCache {
			select {
			case <-tick.C:
			case <-ctx.Done():
				return "", ctx.Err()
			}
		}
		select {
		case <-time.After(50 * time.Millisecond):
		case <-ctx.Done():
			return "", ctx.Err()
		}
		return "v", nil
	}
	var wg sync.WaitGroup
	start := make(chan struct{})
	for _, c := range caches {
		for range perCache {
			wg.Go(func() {
				<-start
				ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
				defer cancel()
				if v, err := c.Get(ctx, "cold", load); err != nil || v != "v" {
					t.Errorf("Get = %q, %v", v, err)
				}
			})
		}
	}
	close(start)
	wg.Wait()
	var lockWaits uint64
	for _, c := range caches {
		lockWaits += c.Stats().LockWaits
	}
	t.Logf("%d callers over 3 caches: %d loads, %d lock waits", 3*perCache, loads.Load(), lockWaits)
	if n := loads.Load(); n != 1 {
		t.Fatalf("the loader ran %d times across three caches, want 1", n)
	}
}
