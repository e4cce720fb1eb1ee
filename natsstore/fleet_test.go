package natsstore_test

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/herdcache/herd"
	"github.com/herdcache/herd/natsstore"
	"github.com/herdcache/herd/store"
	"github.com/herdcache/herd/store/storetest"
)

// member is one instance of a fleet: a cache over its own connection to the
// shared bucket, through a proxy of its own, so that its connection alone
// can fail.
type member struct {
	cache *herd.Cache[string]
	store *natsstore.Store[string]
	proxy proxy
	js    jetstream.JetStream
}

// newFleet starts n instances on bucket, each a herd.Cache with the store as
// its Locker for lockTTL, and closes them when the test ends.
func newFleet(t *testing.T, srv *natsServer, bucket string, n int, lockTTL time.Duration, opts ...herd.Option) []*member {
	t.Helper()
	fleet := make([]*member, n)
	for i := range fleet {
		p := startProxy(t, "127.0.0.1:"+strconv.Itoa(srv.port))
		_, js := connect(t, p.url())
		s := newStore[string](t, js, bucket)
		c := herd.New[string](s, append([]herd.Option{
			herd.TTL(time.Minute), herd.StoreTimeout(time.Second), herd.WithLocker(s, lockTTL),
		}, opts...)...)
		t.Cleanup(func() { _ = c.Close(context.Background()) })
		fleet[i] = &member{cache: c, store: s, proxy: p, js: js}
	}
	return fleet
}

// neverLoad fails the test if a Get that should be answered by the store
// loads instead.
func neverLoad(t *testing.T) herd.Loader[string] {
	return func(context.Context, string) (string, error) {
		t.Error("loader called where the store holds the value")
		return "", errors.New("unexpected load")
	}
}

// A loader three times slower than the lock TTL, asked for by every
// instance again and again: the holder keeps its lease while it loads, so
// one loader runs at a time across the fleet, and the store never goes back
// to an older value.
func TestFleetSlowLoaderOneAtATime(t *testing.T) {
	srv := startServer(t)
	const lockTTL = time.Second
	fleet := newFleet(t, srv, "slow", 3, lockTTL, herd.TTL(time.Second))
	var (
		running, most atomic.Int32
		loads         atomic.Int64
	)
	load := func(ctx context.Context, key string) (string, error) {
		n := running.Add(1)
		defer running.Add(-1)
		for {
			m := most.Load()
			if n <= m || most.CompareAndSwap(m, n) {
				break
			}
		}
		seq := loads.Add(1)
		select {
		case <-time.After(3 * lockTTL):
		case <-ctx.Done():
			return "", ctx.Err()
		}
		return strconv.FormatInt(seq, 10), nil
	}
	// A reader of the store: the value's number never decreases.
	stop, watched := make(chan struct{}), make(chan error, 1)
	go func() {
		var last int64
		for {
			select {
			case <-stop:
				watched <- nil
				return
			case <-time.After(20 * time.Millisecond):
			}
			e, ok, err := fleet[0].store.Get(context.Background(), "k")
			if err != nil || !ok {
				continue
			}
			n, _ := strconv.ParseInt(e.Value, 10, 64)
			if n < last {
				watched <- fmt.Errorf("the store went back from load %d to load %d", last, n)
				return
			}
			last = n
		}
	}()
	var wg sync.WaitGroup
	for round := range 3 {
		for _, m := range fleet {
			for range 5 {
				wg.Go(func() {
					ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
					defer cancel()
					if _, err := m.cache.Get(ctx, "k", load); err != nil {
						t.Errorf("round %d: Get: %v", round, err)
					}
				})
			}
		}
		wg.Wait()
		waitFor(t, 10*time.Second, "the entry expires", func() bool {
			e, ok, err := fleet[0].store.Get(context.Background(), "k")
			return err == nil && (!ok || time.Now().After(e.ExpiresAt))
		})
	}
	close(stop)
	if err := <-watched; err != nil {
		t.Fatal(err)
	}
	t.Logf("%d loads of 3s under a 1s lease across 3 instances; at most %d at once", loads.Load(), most.Load())
	if loads.Load() < 3 {
		t.Fatalf("%d loads in 3 rounds of an expiring key, want at least 3", loads.Load())
	}
	if most.Load() != 1 {
		t.Fatalf("%d loaders ran at once across the fleet, want 1", most.Load())
	}
}

// A Set or a Delete on instance B while instance A loads the key wins: A's
// callers get A's load, but A does not write it back over B's write, and
// every instance reads B's write afterwards.
func TestFleetWriteDuringLoadWins(t *testing.T) {
	for _, write := range []string{"Set", "Delete"} {
		t.Run(write, func(t *testing.T) {
			srv := startServer(t)
			fleet := newFleet(t, srv, "wins", 3, 10*time.Second)
			a, b := fleet[0], fleet[1]
			started, release := make(chan struct{}), make(chan struct{})
			got := make(chan string, 1)
			go func() {
				v, err := a.cache.Get(context.Background(), "k", func(context.Context, string) (string, error) {
					close(started)
					<-release
					return "from A's load", nil
				})
				if err != nil {
					t.Error(err)
				}
				got <- v
			}()
			<-started
			ctx := context.Background()
			switch write {
			case "Set":
				if err := b.cache.Set(ctx, "k", "from B"); err != nil {
					t.Fatal(err)
				}
			case "Delete":
				if err := b.cache.Delete(ctx, "k"); err != nil {
					t.Fatal(err)
				}
			}
			close(release)
			if v := <-got; v != "from A's load" {
				t.Fatalf("A's caller got %q, want its load's value", v)
			}
			// A's write-back runs after its callers got the value.
			waitFor(t, 10*time.Second, "A's write-back refused", func() bool { return a.cache.Stats().WriteConflicts == 1 })
			if write == "Set" {
				// A's load unlocks the key after its refused write-back; a
				// Get on A until then joins that load and gets its published
				// value, as any caller arriving during a load does.
				waitFor(t, 10*time.Second, "A's load to end", func() bool {
					v, err := a.cache.Get(ctx, "k", neverLoad(t))
					return err == nil && v == "from B"
				})
			}
			for i, m := range fleet {
				switch write {
				case "Set":
					if v, err := m.cache.Get(ctx, "k", neverLoad(t)); err != nil || v != "from B" {
						t.Fatalf("instance %d after B's Set: %q, %v; want B's value", i, v, err)
					}
				case "Delete":
					if _, ok, err := m.store.Get(ctx, "k"); err != nil || ok {
						t.Fatalf("instance %d after B's Delete: found %v, %v; want nothing", i, ok, err)
					}
				}
			}
		})
	}
}

// The server dies while instance B waits for instance A's value: B stops
// waiting as soon as the store fails, loads, and its callers get a value
// within their deadline.
func TestFleetServerDiesWhileWaitingForHolder(t *testing.T) {
	srv := startServer(t)
	fleet := newFleet(t, srv, "dies", 2, 10*time.Second)
	a, b := fleet[0], fleet[1]
	started, release := make(chan struct{}), make(chan struct{})
	aDone := make(chan struct{})
	go func() {
		defer close(aDone)
		_, _ = a.cache.Get(context.Background(), "k", func(context.Context, string) (string, error) {
			close(started)
			<-release
			return "from A", nil
		})
	}()
	<-started
	const callers = 20
	results := make(chan error, callers)
	for range callers {
		go func() {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			v, err := b.cache.Get(ctx, "k", func(context.Context, string) (string, error) { return "from B", nil })
			if err == nil && v != "from B" {
				err = fmt.Errorf("got %q, want B's own load", v)
			}
			results <- err
		}()
	}
	// B waits for A's value. (The lock wait is counted at once; its event
	// reaches observers only once B's load has an outcome.)
	waitFor(t, 30*time.Second, "B's callers to wait for A's lock", func() bool { return b.cache.Stats().LockWaits > 0 })
	srv.stop()
	for range callers {
		if err := <-results; err != nil {
			t.Errorf("B's caller with the server gone: %v", err)
		}
	}
	close(release)
	<-aDone
}

// The server stops answering (stalled) or dies while instance B stores its
// value and releases its lock: B's callers, all waiting for B's load, get
// the value within their deadline all the same; the write-back and the
// unlock do not hold it back.
func TestFleetServerDiesWhileReleasingLock(t *testing.T) {
	for _, how := range []string{"stalled", "stopped"} {
		t.Run(how, func(t *testing.T) {
			srv := startServer(t)
			const callers = 20
			missed := make(chan struct{}, callers)
			onMiss := herd.WithObserver(herd.ObserverFunc(func(e herd.Event) {
				if e.Kind == herd.EventMiss {
					missed <- struct{}{}
				}
			}))
			fleet := newFleet(t, srv, "release", 2, 10*time.Second, onMiss)
			b := fleet[1]
			var once sync.Once
			load := func(context.Context, string) (string, error) {
				once.Do(func() {
					for range callers { // every caller waits for a load
						select {
						case <-missed:
						case <-time.After(10 * time.Second):
							t.Error("callers did not all wait for the load")
							return
						}
					}
					// The server goes as the load ends, before its write-back
					// and unlock.
					if how == "stalled" {
						b.proxy.Stall()
					} else {
						srv.stop()
					}
				})
				return "loaded", nil
			}
			results := make(chan error, callers)
			for range callers {
				go func() {
					ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
					defer cancel()
					v, err := b.cache.Get(ctx, "k", load)
					if err == nil && v != "loaded" {
						err = fmt.Errorf("got %q", v)
					}
					results <- err
				}()
			}
			for range callers {
				if err := <-results; err != nil {
					t.Errorf("B's caller: %v", err)
				}
			}
			b.proxy.Resume()
		})
	}
}

// The cold-key stampede over a fleet: 3 instances × 300 callers of one cold
// key, one load.
func TestFleetStampedeOneLoad(t *testing.T) {
	srv := startServer(t)
	fleet := newFleet(t, srv, "stampede", 3, 10*time.Second)
	var loads atomic.Int32
	load := func(context.Context, string) (string, error) {
		loads.Add(1)
		<-time.After(200 * time.Millisecond) // a slow source
		return "v", nil
	}
	var wg sync.WaitGroup
	start := make(chan struct{})
	for _, m := range fleet {
		for range 300 {
			wg.Go(func() {
				<-start
				ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
				defer cancel()
				if v, err := m.cache.Get(ctx, "cold", load); err != nil || v != "v" {
					t.Errorf("Get = %q, %v", v, err)
				}
			})
		}
	}
	close(start)
	wg.Wait()
	if n := loads.Load(); n != 1 {
		t.Fatalf("loader ran %d times for 900 callers over 3 instances, want 1", n)
	}
}

// bucketsByTest gives the stores of one subtest one bucket, as the
// processes of a fleet share one.
type bucketsByTest struct {
	mu      sync.Mutex
	buckets map[string]string
	next    int
}

func (b *bucketsByTest) of(t *testing.T, prefix string) (bucket string, i int) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.buckets == nil {
		b.buckets = map[string]string{}
	}
	bucket, ok := b.buckets[t.Name()]
	if !ok {
		bucket = fmt.Sprintf("%s-%d", prefix, len(b.buckets))
		b.buckets[t.Name()] = bucket
	}
	i = b.next
	b.next++
	return bucket, i
}

// The fleet scenarios of storetest, over one server and over a three-node
// JetStream cluster with the bucket at three replicas, each store on a
// connection of its own.
func TestFleetSuite(t *testing.T) {
	srv := startServer(t)
	var buckets bucketsByTest
	storetest.RunFleet(t, storetest.FleetOptions{LockTTL: time.Second}, func(t *testing.T) store.Store[storetest.Value] {
		b, _ := buckets.of(t, "fleet")
		_, js := connect(t, srv.url())
		return newStore[storetest.Value](t, js, b, natsstore.WithCodec[storetest.Value](gobCodec[storetest.Value]{}))
	})
}

func TestClusterFleetSuite(t *testing.T) {
	c := startCluster(t)
	var buckets bucketsByTest
	storetest.RunFleet(t, storetest.FleetOptions{LockTTL: time.Second}, func(t *testing.T) store.Store[storetest.Value] {
		b, i := buckets.of(t, "cfleet")
		return newClusterStore(t, c, i, b)
	})
}
