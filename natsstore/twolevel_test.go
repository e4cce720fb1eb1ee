package natsstore_test

import (
	"fmt"
	"strings"
	"sync"
	"testing"

	"github.com/nats-io/nats.go"

	"github.com/herdcache/herd/natsstore"
	"github.com/herdcache/herd/store"
	"github.com/herdcache/herd/store/storetest"
)

// proxied remembers the proxies through which each store of a test reaches
// its servers, so that the suite's Cut cuts that store alone.
type proxied struct {
	mu      sync.Mutex
	proxies map[store.Store[storetest.Value]][]proxy
}

func (p *proxied) add(s store.Store[storetest.Value], ps ...proxy) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.proxies == nil {
		p.proxies = make(map[store.Store[storetest.Value]][]proxy)
	}
	p.proxies[s] = ps
}

// cut cuts every proxy of s and returns what restores them.
func (p *proxied) cut(_ *testing.T, s store.Store[storetest.Value]) func() {
	p.mu.Lock()
	ps := p.proxies[s]
	p.mu.Unlock()
	for _, x := range ps {
		x.Cut()
	}
	return func() {
		for _, x := range ps {
			x.Restore()
		}
	}
}

// The two-level suite over one server: each far store on a connection of
// its own through a proxy of its own, which the suite's Cut cuts. The
// bucket's stream resumes from where a watch left off: Up after a replay.
func TestTwoLevel(t *testing.T) {
	srv := startServer(t)
	var (
		buckets bucketsByTest
		ps      proxied
	)
	storetest.RunTwoLevel(t, storetest.TwoLevelOptions{Cut: ps.cut, Resumes: true}, func(t *testing.T) store.Store[storetest.Value] {
		b, _ := buckets.of(t, "twolevel")
		p := startProxy(t, fmt.Sprintf("127.0.0.1:%d", srv.port))
		_, js := connect(t, p.url())
		s := newStore[storetest.Value](t, js, b, natsstore.WithCodec[storetest.Value](gobCodec[storetest.Value]{}))
		ps.add(s, p)
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
		ps      proxied
	)
	storetest.RunTwoLevel(t, storetest.TwoLevelOptions{Cut: ps.cut, Resumes: true}, func(t *testing.T) store.Store[storetest.Value] {
		b, i := buckets.of(t, "ctwolevel")
		proxies := make([]proxy, len(c.urls))
		urls := make([]string, len(c.urls))
		for j := range c.urls {
			k := (i + j) % len(c.urls)
			proxies[j] = startProxy(t, strings.TrimPrefix(c.urls[k], "nats://"))
			urls[j] = proxies[j].url()
		}
		_, js := connect(t, strings.Join(urls, ","), nats.IgnoreDiscoveredServers(), nats.DontRandomize())
		s := clusterStoreOn(t, js, b)
		ps.add(s, proxies...)
		return s
	})
}
