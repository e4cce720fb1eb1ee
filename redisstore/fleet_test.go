package redisstore_test

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/herdcache/herd"
	"github.com/herdcache/herd/redisstore"
	"github.com/herdcache/herd/store"
	"github.com/herdcache/herd/store/storetest"
)

// fleet returns n caches over srv, each with a client and a store of its
// own, all of one prefix and with WithLocker on their store: the instances
// of a service. The last store is for reading Redis directly.
func fleet(t *testing.T, srv *redisServer, n int, lease time.Duration, opts ...herd.Option) ([]*herd.Cache[string], *redisstore.Store[string]) {
	t.Helper()
	newStore := func() *redisstore.Store[string] {
		return redisstore.New[string](srv.client(t), redisstore.Prefix(prefixOf(t)), redisstore.WithLogger(discard()))
	}
	var caches []*herd.Cache[string]
	for range n {
		s := newStore()
		c := herd.New[string](s, append([]herd.Option{herd.WithLocker(s, lease), herd.WithLogger(discard())}, opts...)...)
		t.Cleanup(func() { _ = c.Close(context.Background()) })
		caches = append(caches, c)
	}
	return caches, newStore()
}

// A Set, and a Delete, on B while A's load of the key is in flight win on
// every instance: A's callers get A's loaded value, A's write-back is
// refused, and the store keeps B's write.
func TestFleetWritesDuringALoadWin(t *testing.T) {
	for _, op := range []string{"Set", "Delete"} {
		t.Run(op, func(t *testing.T) {
			srv := startRedis(t)
			ctx := context.Background()
			caches, _ := fleet(t, srv, 3, 5*time.Second, herd.TTL(time.Hour))
			a, b := caches[0], caches[1]
			if op == "Delete" { // something to delete
				if err := b.Set(ctx, "k", "before"); err != nil {
					t.Fatal(err)
				}
				if err := a.Delete(ctx, "k"); err != nil {
					t.Fatal(err)
				}
			}
			entered, release := make(chan struct{}), make(chan struct{})
			got := make(chan string, 1)
			go func() {
				v, err := a.Get(ctx, "k", func(context.Context, string) (string, error) {
					close(entered)
					<-release
					return "A's load", nil
				})
				if err != nil {
					v = err.Error()
				}
				got <- v
			}()
			<-entered
			var err error
			if op == "Set" {
				err = b.Set(ctx, "k", "B's write")
			} else {
				err = b.Delete(ctx, "k")
			}
			if err != nil {
				t.Fatal(err)
			}
			close(release)
			if v := <-got; v != "A's load" {
				t.Fatalf("A's caller got %q, want its loaded value", v)
			}
			waitFor(t, "A's write-back to be refused", func() bool { return a.Stats().WriteConflicts > 0 })
			want := "B's write"
			if op == "Delete" {
				want = "loaded after the delete"
			}
			// A's load unlocks the key after its refused write-back; a Get
			// on A until then joins that load and gets its published value,
			// as any caller arriving during a load does.
			waitFor(t, "A's load to end", func() bool {
				v, err := a.Get(ctx, "k", func(context.Context, string) (string, error) { return "loaded after the delete", nil })
				return err == nil && v == want
			})
			for i, c := range caches {
				v, err := c.Get(ctx, "k", func(context.Context, string) (string, error) { return "loaded after the delete", nil })
				if err != nil || v != want {
					t.Fatalf("instance %d: Get = %q, %v; want %q", i, v, err, want)
				}
			}
		})
	}
}

// The server dies while B's callers wait for A's value: they get a value
// (their own load) within their deadline.
func TestFleetServerDiesWhileWaiting(t *testing.T) {
	srv := startRedis(t)
	ctx := context.Background()
	caches, _ := fleet(t, srv, 2, 10*time.Second, herd.TTL(time.Hour), herd.StoreTimeout(200*time.Millisecond))
	a, b := caches[0], caches[1]
	entered, release := make(chan struct{}), make(chan struct{})
	defer close(release)
	go func() {
		_, _ = a.Get(ctx, "k", func(context.Context, string) (string, error) {
			close(entered)
			<-release
			return "A's load", nil
		})
	}()
	<-entered
	const callers = 10
	results := make(chan error, callers)
	for range callers {
		go func() {
			cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
			defer cancel()
			v, err := b.Get(cctx, "k", func(context.Context, string) (string, error) { return "B's load", nil })
			if err == nil && v != "B's load" {
				err = fmt.Errorf("got %q", v)
			}
			results <- err
		}()
	}
	waitFor(t, "B's callers to wait for A's lock", func() bool { return b.Stats().LockWaits > 0 })
	srv.stop()
	for range callers {
		if err := <-results; err != nil {
			t.Errorf("B's caller: %v", err)
		}
	}
}

// B holds the lock and has its value when the server stops taking writes
// (CLIENT PAUSE WRITE: B's write-back and its Unlock hang), and when the
// server dies: B's callers get the value within their deadline.
func TestFleetServerFailsAsALockIsReleased(t *testing.T) {
	for _, fault := range []string{"pause", "kill"} {
		t.Run(fault, func(t *testing.T) {
			srv := startRedis(t)
			c := srv.client(t)
			ctx := context.Background()
			caches, _ := fleet(t, srv, 2, 10*time.Second, herd.TTL(time.Hour), herd.StoreTimeout(200*time.Millisecond))
			b := caches[1]
			const callers = 10
			results := make(chan error, callers)
			start := make(chan struct{})
			for range callers {
				go func() {
					<-start
					cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
					defer cancel()
					v, err := b.Get(cctx, "k", func(context.Context, string) (string, error) {
						if fault == "pause" {
							if err := c.Do(ctx, "CLIENT", "PAUSE", 10000, "WRITE").Err(); err != nil {
								return "", err
							}
						} else {
							srv.stop()
						}
						return "B's load", nil
					})
					if err == nil && v != "B's load" {
						err = fmt.Errorf("got %q", v)
					}
					results <- err
				}()
			}
			close(start)
			for range callers {
				if err := <-results; err != nil {
					t.Errorf("B's caller: %v", err)
				}
			}
			if fault == "pause" {
				if err := c.Do(ctx, "CLIENT", "UNPAUSE").Err(); err != nil {
					t.Fatal(err)
				}
			}
		})
	}
}

// A loader three times slower than the lock's lease, with the key expiring
// all the time: across three instances, one loader runs at a time, and the
// value in Redis never goes back to one whose load began earlier.
func TestFleetSlowLoaderOneAtATime(t *testing.T) {
	srv := startRedis(t)
	const lease = 600 * time.Millisecond
	caches, direct := fleet(t, srv, 3, lease, herd.TTL(100*time.Millisecond), herd.LoadTimeout(10*time.Second),
		herd.WithObserver(herd.ObserverFunc(func(e herd.Event) {
			if e.Kind == herd.EventStoreError {
				t.Logf("store error: %v", e.Err)
			}
		})))
	var running, most, started atomic.Int64
	load := func(ctx context.Context, _ string) (string, error) {
		maxInto(&most, running.Add(1))
		defer running.Add(-1)
		seq := started.Add(1)
		select {
		case <-time.After(3 * lease):
		case <-ctx.Done():
			return "", ctx.Err()
		}
		return fmt.Sprintf("%06d", seq), nil // sorts as the loads began
	}
	ctx := context.Background()
	stop := make(chan struct{})
	var wg sync.WaitGroup
	var backwards atomic.Value
	wg.Go(func() {
		last := ""
		for {
			select {
			case <-stop:
				return
			default:
			}
			e, ok, err := direct.Get(ctx, "k")
			if err == nil && ok {
				if e.Value < last {
					backwards.CompareAndSwap(nil, fmt.Sprintf("%s after %s", e.Value, last))
				}
				last = max(last, e.Value)
			}
		}
	})
	var fails atomic.Int64
	for _, c := range caches {
		for range 3 {
			wg.Go(func() {
				for {
					select {
					case <-stop:
						return
					default:
					}
					cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
					if _, err := c.Get(cctx, "k", load); err != nil {
						fails.Add(1)
					}
					cancel()
				}
			})
		}
	}
	waitFor(t, "four loads", func() bool { return started.Load() >= 4 })
	close(stop)
	wg.Wait()
	var conflicts uint64
	for _, c := range caches {
		conflicts += c.Stats().WriteConflicts
	}
	t.Logf("%d loads, at most %d at once, %d refused write-backs, %d failed Gets", started.Load(), most.Load(), conflicts, fails.Load())
	if m := most.Load(); m != 1 {
		t.Errorf("%d loaders ran at once across the fleet, want 1", m)
	}
	if b := backwards.Load(); b != nil {
		t.Errorf("the store went back: %v", b)
	}
	if n := fails.Load(); n != 0 {
		t.Errorf("%d Gets failed", n)
	}
}

// maxInto raises m to n if n is larger.
func maxInto(m *atomic.Int64, n int64) {
	for {
		cur := m.Load()
		if n <= cur || m.CompareAndSwap(cur, n) {
			return
		}
	}
}

// The fleet scenarios of storetest, over one server and over a Cluster of
// three masters.
func TestFleetSuite(t *testing.T) {
	srv := startRedis(t)
	storetest.RunFleet(t, storetest.FleetOptions{}, func(t *testing.T) store.Store[storetest.Value] {
		return newStore(t, srv, withGob)
	})
}

func TestClusterFleetSuite(t *testing.T) {
	srvs := startCluster3(t)
	storetest.RunFleet(t, storetest.FleetOptions{}, func(t *testing.T) store.Store[storetest.Value] {
		return redisstore.New[storetest.Value](clusterClient(t, srvs[0]), redisstore.Prefix(prefixOf(t)), withGob, redisstore.WithLogger(discard()))
	})
}
