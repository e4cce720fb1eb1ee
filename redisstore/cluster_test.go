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

func clusterClient(t *testing.T, srv *redisServer) *redis.ClusterClient {
	t.Helper()
	c := redis.NewClusterClient(&redis.ClusterOptions{
		Addrs:                 []string{srv.addr()},
		ContextTimeoutEnabled: true,
		DialTimeout:           time.Second,
		ReadTimeout:           time.Second,
		WriteTimeout:          time.Second,
	})
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
