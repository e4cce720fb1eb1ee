package natsstore_test

import (
	"fmt"
	"strings"
	"testing"

	"github.com/nats-io/nats.go"

	"github.com/herdcache/herd/internal/herdtest"
	"github.com/herdcache/herd/natsstore"
	"github.com/herdcache/herd/store"
	"github.com/herdcache/herd/store/storetest"
)

// The two-level suite over one server: each far store on a connection of
// its own through a proxy of its own, which the suite's Cut cuts. The
// bucket's stream resumes from where a watch left off: Up after a replay.
func TestTwoLevel(t *testing.T) {
	srv := startServer(t)
	var (
		buckets bucketsByTest
		ps      herdtest.Proxied[store.Store[storetest.Value]]
	)
	storetest.RunTwoLevel(t, storetest.TwoLevelOptions{Cut: ps.Cut, Resumes: true}, func(t *testing.T) store.Store[storetest.Value] {
		b, _ := buckets.of(t, "twolevel")
		p := startProxy(t, fmt.Sprintf("127.0.0.1:%d", srv.port))
		_, js := connect(t, p.url())
		s := newStore[storetest.Value](t, js, b, natsstore.WithCodec[storetest.Value](gobCodec[storetest.Value]{}))
		ps.Add(s, p.Proxy)
		return s
	})
}

// The two-level suite over a three-node cluster, the bucket at three
// replicas: each far store's connection reaches the servers through
// proxies of its own, the next server first, and ignores the servers that
// the cluster announces, so that the suite's Cut cuts it from all three.
func TestClusterTwoLevel(t *testing.T) {
	c := startCluster(t)
	var (
		buckets bucketsByTest
		ps      herdtest.Proxied[store.Store[storetest.Value]]
	)
	storetest.RunTwoLevel(t, storetest.TwoLevelOptions{Cut: ps.Cut, Resumes: true}, func(t *testing.T) store.Store[storetest.Value] {
		b, i := buckets.of(t, "ctwolevel")
		proxies := make([]*herdtest.Proxy, len(c.urls))
		urls := make([]string, len(c.urls))
		for j := range c.urls {
			k := (i + j) % len(c.urls)
			p := startProxy(t, strings.TrimPrefix(c.urls[k], "nats://"))
			proxies[j], urls[j] = p.Proxy, p.url()
		}
		_, js := connect(t, strings.Join(urls, ","), nats.IgnoreDiscoveredServers(), nats.DontRandomize())
		s := clusterStoreOn(t, js, b)
		ps.Add(s, proxies...)
		return s
	})
}
