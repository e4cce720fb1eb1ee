package redisstore_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/herdcache/herd"
	"github.com/herdcache/herd/redisstore"
)

// coldGetMany runs a GetMany of 100 cold keys through a cache over s, waits
// for its write-backs (Close waits for the loads in flight), and returns
// the round trips counted meanwhile.
func coldGetMany(t *testing.T, s *redisstore.Store[string], trips *roundTrips, locked bool, prefix string) (map[string]int, string) {
	t.Helper()
	opts := []herd.Option{herd.TTL(time.Hour), herd.WithLogger(discard())}
	if locked {
		opts = append(opts, herd.WithLocker(s, 10*time.Second))
	}
	c := herd.New[string](noClose{s}, opts...)
	load := func(_ context.Context, keys []string) (map[string]string, error) {
		out := make(map[string]string, len(keys))
		for _, k := range keys {
			out[k] = "v:" + k
		}
		return out, nil
	}
	// The servers learn the scripts on a batch of other keys first: a
	// server that does not know a script costs a step a round trip more,
	// once.
	if _, err := c.GetMany(context.Background(), keysN(prefix+"-warm", 100), load); err != nil {
		t.Fatal(err)
	}
	if err := c.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	trips.take()
	c = herd.New[string](noClose{s}, opts...)
	keys := keysN(prefix, 100)
	got, err := c.GetMany(context.Background(), keys, load)
	if err != nil || len(got) != len(keys) {
		t.Fatalf("GetMany = %d values, %v", len(got), err)
	}
	if err := c.Close(context.Background()); err != nil { // the write-backs are done
		t.Fatal(err)
	}
	if st := c.Stats(); st.StoreErrors != 0 || st.WriteConflicts != 0 {
		t.Fatalf("stats %+v: the batch's store calls failed", st)
	}
	return trips.take()
}

// noClose keeps a cache's Close from closing the store shared by the
// caches of a test.
type noClose struct{ *redisstore.Store[string] }

func (noClose) Close(context.Context) error { return nil }

// A cold GetMany of 100 keys over one Redis costs a few round trips in
// all, write-backs included: the bulk read, the version read and the
// conditional write (at most 5), and with WithLocker the locks and their
// release too (at most 8).
func TestGetManyRoundTrips(t *testing.T) {
	for _, locked := range []bool{false, true} {
		t.Run(fmt.Sprintf("locked=%v", locked), func(t *testing.T) {
			srv := startRedis(t)
			var trips roundTrips
			client := srv.client(t)
			client.AddHook(trips.hook(srv.addr()))
			s := redisstore.New[string](client, redisstore.Prefix(prefixOf(t)), redisstore.WithLogger(discard()))
			by, sent := coldGetMany(t, s, &trips, locked, "cold")
			limit := map[bool]int{false: 5, true: 8}[locked]
			t.Logf("cold GetMany of 100 keys, locked=%v: %d round trips:%s", locked, by[srv.addr()], sent)
			if n := by[srv.addr()]; n > limit {
				t.Fatalf("%d round trips, want at most %d:%s", n, limit, sent)
			}
		})
	}
}

// The same on a Cluster of three masters, counted per master.
func TestClusterGetManyRoundTrips(t *testing.T) {
	srvs := startCluster3(t)
	for _, locked := range []bool{false, true} {
		t.Run(fmt.Sprintf("locked=%v", locked), func(t *testing.T) {
			var trips roundTrips
			c := clusterClient(t, srvs[0])
			c.OnNewNode(func(node *redis.Client) { node.AddHook(trips.hook(node.Options().Addr)) })
			s := redisstore.New[string](c, redisstore.Prefix(fmt.Sprintf("trips%v", locked)), redisstore.WithLogger(discard()))
			by, sent := coldGetMany(t, s, &trips, locked, "cold")
			limit := map[bool]int{false: 5, true: 8}[locked]
			t.Logf("cold GetMany of 100 keys on 3 masters, locked=%v: %v:%s", locked, by, sent)
			if len(by) != len(srvs) {
				t.Fatalf("round trips to %d masters, want %d:%s", len(by), len(srvs), sent)
			}
			for addr, n := range by {
				if n > limit {
					t.Fatalf("%d round trips to %s, want at most %d per master:%s", n, addr, limit, sent)
				}
			}
		})
	}
}
