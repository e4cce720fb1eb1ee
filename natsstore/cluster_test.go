package natsstore_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/herdcache/herd/natsstore"
	"github.com/herdcache/herd/store"
	"github.com/herdcache/herd/store/storetest"
)

// A natsCluster is three embedded nats-servers clustered over loopback
// routes, with JetStream each in its own temporary directory: the smallest
// cluster that keeps a bucket of three replicas.
type natsCluster struct {
	srvs []*server.Server
	urls []string
}

// startCluster starts the three servers and waits until JetStream has a
// leader that every server follows. They are shut down at the end of the
// test.
func startCluster(t testing.TB) *natsCluster {
	t.Helper()
	const n = 3
	ports, routePorts := make([]int, n), make([]int, n)
	for i := range n {
		ports[i], routePorts[i] = freePort(t), freePort(t)
	}
	c := &natsCluster{}
	t.Cleanup(c.stop)
	for i := range n {
		var routes []*url.URL
		for j, p := range routePorts {
			if j != i {
				routes = append(routes, &url.URL{Scheme: "nats-route", Host: "127.0.0.1:" + strconv.Itoa(p)})
			}
		}
		srv, err := server.NewServer(&server.Options{
			ServerName: fmt.Sprintf("herd-%d", i), Host: "127.0.0.1", Port: ports[i],
			JetStream: true, StoreDir: t.TempDir(), NoLog: true, NoSigs: true,
			Cluster: server.ClusterOpts{Name: "herd", Host: "127.0.0.1", Port: routePorts[i]},
			Routes:  routes,
		})
		if err != nil {
			t.Fatal(err)
		}
		srv.Start()
		c.srvs = append(c.srvs, srv)
		c.urls = append(c.urls, "nats://127.0.0.1:"+strconv.Itoa(ports[i]))
		if !srv.ReadyForConnections(10 * time.Second) {
			t.Fatalf("nats-server %d not ready within 10s", i)
		}
	}
	deadline := time.Now().Add(20 * time.Second)
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for !c.ready() {
		if time.Now().After(deadline) {
			t.Fatal("the JetStream cluster has no leader that every server follows within 20s")
		}
		<-tick.C
	}
	return c
}

func (c *natsCluster) ready() bool {
	leader := false
	for _, s := range c.srvs {
		if !s.JetStreamIsCurrent() {
			return false
		}
		leader = leader || s.JetStreamIsLeader()
	}
	return leader
}

func (c *natsCluster) stop() {
	for _, s := range c.srvs {
		s.Shutdown()
	}
	for _, s := range c.srvs {
		s.WaitForShutdown()
	}
}

// url returns the URLs of every server, server i's first, so that a client
// connects to it and can reconnect to the others.
func (c *natsCluster) url(i int) string {
	i %= len(c.urls)
	return strings.Join(append([]string{c.urls[i]}, append(append([]string(nil), c.urls[:i]...), c.urls[i+1:]...)...), ",")
}

// newClusterStore opens a store on a bucket of three replicas through a new
// connection to server i, retrying while the cluster places the bucket.
func newClusterStore(t *testing.T, c *natsCluster, i int, bucket string) *natsstore.Store[storetest.Value] {
	t.Helper()
	_, js := connect(t, c.url(i))
	return clusterStoreOn(t, js, bucket)
}

// clusterStoreOn opens a store on a bucket of three replicas through js,
// retrying while the cluster places the bucket.
func clusterStoreOn(t *testing.T, js jetstream.JetStream, bucket string) *natsstore.Store[storetest.Value] {
	t.Helper()
	var (
		s   *natsstore.Store[storetest.Value]
		err error
	)
	deadline := time.Now().Add(20 * time.Second)
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		s, err = natsstore.New[storetest.Value](ctx, js, bucket, natsstore.Replicas(3),
			natsstore.WithCodec[storetest.Value](gobCodec[storetest.Value]{}), natsstore.WithLogger(slog.New(slog.DiscardHandler)))
		cancel()
		if err == nil || time.Now().After(deadline) {
			break
		}
		<-tick.C
	}
	if err != nil {
		t.Fatalf("bucket %q of three replicas: %v", bucket, err)
	}
	t.Cleanup(func() { _ = s.Close(context.Background()) })
	return s
}

// The conformance suite on a bucket of three replicas, each store of a
// subtest on its own connection to the next server, and the failing server
// last: every server shut down.
func TestClusterConformance(t *testing.T) {
	c := startCluster(t)
	var (
		mu      sync.Mutex
		buckets = map[string]string{}
		next    int
	)
	opts := storetest.Options{LockTTL: time.Second, Break: func(*testing.T) { c.stop() }}
	storetest.RunWith(t, opts, func(t *testing.T) store.Store[storetest.Value] {
		mu.Lock()
		b, ok := buckets[t.Name()]
		if !ok {
			b = fmt.Sprintf("cluster-%d", len(buckets))
			buckets[t.Name()] = b
		}
		i := next
		next++
		mu.Unlock()
		return newClusterStore(t, c, i, b)
	})
}

// Bug: on a three-node cluster, a write refused because another write of
// the same subject was being replicated came back as JetStream API error
// 10164 ("wrong last sequence", the clustered form), and the store reported
// lock contention and conditional-write conflicts as failures instead of
// ErrLocked and ErrConflict. Three stores, one on each server, contend for
// locks and conditional writes, one key at a time and in batches:
// contention is never a failure, and each key has exactly one winner.
func TestRegressionClusterContentionIsNotAFailure(t *testing.T) {
	c := startCluster(t)
	stores := []*natsstore.Store[storetest.Value]{
		newClusterStore(t, c, 0, "contention"), newClusterStore(t, c, 1, "contention"), newClusterStore(t, c, 2, "contention"),
	}
	ctx := context.Background()
	const rounds, perStore = 5, 6
	for round := range rounds {
		keys := []string{fmt.Sprintf("a-%d", round), fmt.Sprintf("b-%d", round)}
		reads := stores[0].GetVersions(ctx, keys)
		var (
			wg          sync.WaitGroup
			mu          sync.Mutex
			locks, sets = make([]int, len(keys)), make([]int, len(keys))
			failures    []error
		)
		outcome := func(won *int, err error, lost error) {
			mu.Lock()
			defer mu.Unlock()
			switch {
			case err == nil:
				*won++
			case !errors.Is(err, lost):
				failures = append(failures, err)
			}
		}
		start := make(chan struct{})
		for i, s := range stores {
			for g := range perStore {
				wg.Go(func() {
					<-start
					k := keys[g%len(keys)]
					switch g % 3 {
					case 0:
						_, err := s.TryLock(ctx, k, time.Minute)
						outcome(&locks[g%len(keys)], err, store.ErrLocked)
					case 1:
						for j, r := range s.TryLockMany(ctx, keys, time.Minute) {
							outcome(&locks[j], r.Err, store.ErrLocked)
						}
					default:
						v := storetest.Value{Name: fmt.Sprintf("store %d, writer %d", i, g)}
						outcome(&sets[g%len(keys)], s.SetIf(ctx, k, store.Entry[storetest.Value]{Value: v}, reads[g%len(keys)].Version), store.ErrConflict)
						writes := make([]store.ConditionalWrite[storetest.Value], len(keys))
						for j, key := range keys {
							writes[j] = store.ConditionalWrite[storetest.Value]{Key: key, Version: reads[j].Version, Entry: store.Entry[storetest.Value]{Value: v}}
						}
						for j, err := range s.WriteIf(ctx, writes) {
							outcome(&sets[j], err, store.ErrConflict)
						}
					}
				})
			}
		}
		close(start)
		wg.Wait()
		if len(failures) > 0 {
			t.Fatalf("round %d: contention reported as failures: %v", round, failures)
		}
		for j, k := range keys {
			if locks[j] != 1 || sets[j] != 1 {
				t.Fatalf("round %d, key %q: %d lock owners and %d conditional writers won, want 1 and 1", round, k, locks[j], sets[j])
			}
		}
	}
}
