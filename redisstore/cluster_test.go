package redisstore_test

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/herdcache/herd/redisstore"
	"github.com/herdcache/herd/store"
	"github.com/herdcache/herd/store/storetest"
)

// startCluster starts a one-node Redis Cluster that serves every slot.
func startCluster(t *testing.T) *redisServer {
	t.Helper()
	srv := startRedis(t, "--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf")
	c := srv.client(t)
	ctx := context.Background()
	if err := c.Do(ctx, "CLUSTER", "ADDSLOTSRANGE", 0, 16383).Err(); err != nil {
		t.Fatalf("CLUSTER ADDSLOTSRANGE: %v", err)
	}
	waitFor(t, "the cluster to be ready", func() bool {
		info, err := c.ClusterInfo(ctx).Result()
		return err == nil && strings.Contains(info, "cluster_state:ok")
	})
	return srv
}

// startCluster3 starts a Cluster of three masters, each serving a third of
// the slots, and waits until every node sees it whole.
func startCluster3(t *testing.T) []*redisServer {
	t.Helper()
	ctx := context.Background()
	var srvs []*redisServer
	for i, slots := range [][2]int{{0, 5460}, {5461, 10922}, {10923, 16383}} {
		srv := startRedis(t, "--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf")
		c := srv.client(t)
		if err := c.Do(ctx, "CLUSTER", "ADDSLOTSRANGE", slots[0], slots[1]).Err(); err != nil {
			t.Fatalf("CLUSTER ADDSLOTSRANGE on node %d: %v", i, err)
		}
		if i > 0 {
			if err := c.ClusterMeet(ctx, "127.0.0.1", strconv.Itoa(srvs[0].port)).Err(); err != nil {
				t.Fatalf("CLUSTER MEET: %v", err)
			}
		}
		srvs = append(srvs, srv)
	}
	for _, srv := range srvs {
		c := srv.client(t)
		waitFor(t, "the three-master cluster to be ready", func() bool {
			info, err := c.ClusterInfo(ctx).Result()
			return err == nil && strings.Contains(info, "cluster_state:ok") && strings.Contains(info, "cluster_known_nodes:3")
		})
	}
	return srvs
}

func clusterClient(t *testing.T, srv *redisServer, adjust ...func(*redis.ClusterOptions)) *redis.ClusterClient {
	t.Helper()
	opts := &redis.ClusterOptions{
		Addrs:                 []string{srv.addr()},
		ContextTimeoutEnabled: true,
		DialTimeout:           time.Second,
		ReadTimeout:           time.Second,
		WriteTimeout:          time.Second,
	}
	for _, f := range adjust {
		f(opts)
	}
	c := redis.NewClusterClient(opts)
	t.Cleanup(func() {
		if err := c.Close(); err != nil {
			t.Errorf("close cluster client: %v", err)
		}
	})
	return c
}

// On Cluster, the lock script's two keys share a slot (else Redis refuses
// it with CROSSSLOT), and GetMany spans slots.
func TestClusterConformance(t *testing.T) {
	srv := startCluster(t)
	storetest.RunWith(t, storetest.Options{Break: func(*testing.T) { srv.stop() }}, func(t *testing.T) store.Store[storetest.Value] {
		s := redisstore.New[storetest.Value](clusterClient(t, srv), redisstore.Prefix(prefixOf(t)), withGob)
		return s
	})
}

func TestClusterGetMany(t *testing.T) {
	srv := startCluster(t)
	ctx := context.Background()
	s := redisstore.New[storetest.Value](clusterClient(t, srv), redisstore.Prefix("p"), withGob)
	keys := storetest.OddKeys(1000)
	for i := range 200 {
		keys = append(keys, fmt.Sprintf("many:%d", i), fmt.Sprintf("{many}:%d", i))
	}
	for i, k := range keys {
		if err := s.Set(ctx, k, store.Entry[storetest.Value]{Value: storetest.Value{Name: k, N: int64(i)}}); err != nil {
			t.Fatal(err)
		}
	}
	got, err := s.GetMany(ctx, append(keys, "absent"))
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != len(keys) {
		t.Fatalf("GetMany returned %d entries, want %d", len(got), len(keys))
	}
	for i, k := range keys {
		if e := got[k]; e.Value.Name != k || e.Value.N != int64(i) {
			t.Fatalf("GetMany(%q) = %+v", k, e.Value)
		}
	}
}

// A Ring of two servers: GetMany finds keys on both shards, and the suite
// passes, the failing server last.
func TestRing(t *testing.T) {
	a, b := startRedis(t), startRedis(t)
	newRing := func(t *testing.T) *redis.Ring {
		r := redis.NewRing(&redis.RingOptions{
			Addrs:                 map[string]string{"a": a.addr(), "b": b.addr()},
			ContextTimeoutEnabled: true,
			DialTimeout:           time.Second,
			ReadTimeout:           time.Second,
			WriteTimeout:          time.Second,
		})
		t.Cleanup(func() {
			if err := r.Close(); err != nil {
				t.Errorf("close ring: %v", err)
			}
		})
		return r
	}
	t.Run("GetMany", func(t *testing.T) {
		ctx := context.Background()
		s := redisstore.New[storetest.Value](newRing(t), redisstore.Prefix("p"), withGob)
		var keys []string
		for i := range 200 {
			k := fmt.Sprintf("many:%d", i)
			keys = append(keys, k)
			if err := s.Set(ctx, k, store.Entry[storetest.Value]{Value: storetest.Value{Name: k, N: int64(i)}}); err != nil {
				t.Fatal(err)
			}
		}
		onA := a.client(t).DBSize(ctx).Val()
		onB := b.client(t).DBSize(ctx).Val()
		if onA == 0 || onB == 0 {
			t.Fatalf("keys on the two shards: %d and %d; want both used", onA, onB)
		}
		got, err := s.GetMany(ctx, append(keys, "absent"))
		if err != nil {
			t.Fatal(err)
		}
		if len(got) != len(keys) {
			t.Fatalf("GetMany returned %d entries, want %d", len(got), len(keys))
		}
		for i, k := range keys {
			if e := got[k]; e.Value.N != int64(i) {
				t.Fatalf("GetMany(%q) = %+v", k, e.Value)
			}
		}
	})
	// Last: it stops both shards.
	t.Run("Conformance", func(t *testing.T) {
		storetest.RunWith(t, storetest.Options{Break: func(*testing.T) { a.stop(); b.stop() }}, func(t *testing.T) store.Store[storetest.Value] {
			s := redisstore.New[storetest.Value](newRing(t), redisstore.Prefix(prefixOf(t)), withGob)
			return s
		})
	})
}

// GetMany on a Cluster with one master down returns the entries of the
// slots that answered, with an error.
func TestClusterGetManyPartial(t *testing.T) {
	srvs := startCluster3(t)
	ctx := context.Background()
	s := redisstore.New[storetest.Value](clusterClient(t, srvs[0]), redisstore.Prefix("p"), redisstore.WithLogger(discard()))
	var keys []string
	onDown := 0
	for i := range 300 {
		k := fmt.Sprintf("key-%d", i)
		keys = append(keys, k)
		if err := s.Set(ctx, k, store.Entry[storetest.Value]{Value: storetest.Value{N: int64(i)}}); err != nil {
			t.Fatal(err)
		}
		if clusterSlot(t, srvs[0], s.Key(k))*3/16384 == 2 {
			onDown++
		}
	}
	srvs[2].stop()
	got, err := s.GetMany(ctx, append(keys, keys...))
	if err == nil {
		t.Fatal("GetMany with a master down returned no error")
	}
	if got == nil || len(got) != len(keys)-onDown {
		t.Fatalf("GetMany with a master down returned %d entries, want the %d of the masters up", len(got), len(keys)-onDown)
	}
	for k, e := range got {
		if fmt.Sprintf("key-%d", e.Value.N) != k {
			t.Fatalf("GetMany(%q) = %+v", k, e.Value)
		}
	}
}

// startCluster6 starts a Cluster of three masters, each serving a third of
// the slots, and a replica of each, with a node timeout of one second, and
// waits until every node sees it whole and every replica is in sync.
func startCluster6(t *testing.T) (masters, replicas []*redisServer) {
	t.Helper()
	ctx := context.Background()
	args := []string{
		"--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf", "--cluster-node-timeout", "1000",
		"--repl-diskless-sync-delay", "0", // a replica syncs at once, not after 5s
	}
	for i, slots := range [][2]int{{0, 5460}, {5461, 10922}, {10923, 16383}} {
		srv := startRedis(t, args...)
		if err := srv.client(t).Do(ctx, "CLUSTER", "ADDSLOTSRANGE", slots[0], slots[1]).Err(); err != nil {
			t.Fatalf("CLUSTER ADDSLOTSRANGE on master %d: %v", i, err)
		}
		masters = append(masters, srv)
	}
	for range 3 {
		replicas = append(replicas, startRedis(t, args...))
	}
	for _, srv := range append(masters[1:], replicas...) {
		if err := srv.client(t).ClusterMeet(ctx, "127.0.0.1", strconv.Itoa(masters[0].port)).Err(); err != nil {
			t.Fatalf("CLUSTER MEET: %v", err)
		}
	}
	for _, srv := range append(masters, replicas...) {
		c := srv.client(t)
		waitFor(t, "six nodes known", func() bool {
			info, err := c.ClusterInfo(ctx).Result()
			return err == nil && strings.Contains(info, "cluster_known_nodes:6")
		})
	}
	for i, r := range replicas {
		id, err := masters[i].client(t).Do(ctx, "CLUSTER", "MYID").Text()
		if err != nil {
			t.Fatal(err)
		}
		c := r.client(t)
		waitFor(t, "the replica to take its master", func() bool {
			return c.Do(ctx, "CLUSTER", "REPLICATE", id).Err() == nil
		})
		waitFor(t, "the replica in sync", func() bool {
			info, err := c.Info(ctx, "replication").Result()
			return err == nil && strings.Contains(info, "master_link_status:up")
		})
	}
	for _, srv := range append(masters, replicas...) {
		c := srv.client(t)
		waitFor(t, "the six-node cluster to be ready", func() bool {
			info, err := c.ClusterInfo(ctx).Result()
			return err == nil && strings.Contains(info, "cluster_state:ok")
		})
	}
	return masters, replicas
}

// A master killed and its replica promoted (CLUSTER FAILOVER TAKEOVER):
// the watch reports Down when it loses the master, reloads the slot map
// (the client's own, so the store's writes reach the new master too),
// follows the new master and reports Gap, and the changes of the lost
// slots' keys arrive again. It logs how long after the promotion the Gap
// and the first change came; the target is 2s.
func TestClusterFailoverFollowed(t *testing.T) {
	masters, replicas := startCluster6(t)
	ctx := context.Background()
	s := redisstore.New[storetest.Value](clusterClient(t, masters[0]), redisstore.Prefix("p"), redisstore.WithLogger(discard()))
	r := watchStore(t, s)
	var key string
	for i := 0; key == ""; i++ {
		if k := fmt.Sprintf("key-%d", i); clusterSlot(t, masters[0], s.Key(k))*3/16384 == 1 {
			key = k
		}
	}
	r.awaitWrites(t, 0, key, func() error { return s.Set(ctx, key, value("v")) })

	from := r.mark()
	masters[1].stop()
	down := r.await(t, from, changeDown)
	promoted := replicas[1].client(t)
	if err := promoted.Do(ctx, "CLUSTER", "FAILOVER", "TAKEOVER").Err(); err != nil {
		t.Fatalf("CLUSTER FAILOVER TAKEOVER: %v", err)
	}
	waitFor(t, "the replica promoted", func() bool {
		role, err := promoted.Do(ctx, "ROLE").Slice()
		return err == nil && len(role) > 0 && role[0] == "master"
	})
	at := time.Now()
	gap := r.await(t, down, changeGap)
	gapAfter := time.Since(at)
	r.awaitWrites(t, gap, key, func() error { return s.Set(ctx, key, value("after")) })
	t.Logf("after the promotion: Gap in %v, the lost slots' first change in %v", gapAfter.Round(time.Millisecond), time.Since(at).Round(time.Millisecond))
	if n := promoted.Exists(ctx, s.Key(key)).Val(); n != 1 {
		t.Fatalf("key %q is not on the promoted master", key)
	}
}
