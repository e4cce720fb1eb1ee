package redisstore_test

import (
	"context"
	"net"
	"testing"

	"github.com/redis/go-redis/v9"

	"github.com/herdcache/herd/internal/herdtest"
	"github.com/herdcache/herd/redisstore"
	"github.com/herdcache/herd/store"
	"github.com/herdcache/herd/store/storetest"
)

// The two-level suite over one server: each far store on a client of its
// own through a proxy of its own, which the suite's Cut cuts. Redis keeps
// no record to replay: the stream reports a Gap after a cut.
func TestTwoLevel(t *testing.T) {
	srv := startRedis(t)
	var ps herdtest.Proxied[store.Store[storetest.Value]]
	storetest.RunTwoLevel(t, storetest.TwoLevelOptions{Cut: ps.Cut}, func(t *testing.T) store.Store[storetest.Value] {
		p := herdtest.NewProxy(t, srv.addr())
		s := redisstore.New[storetest.Value](newClient(t, p.Addr()), redisstore.Prefix(prefixOf(t)), redisstore.WithLogger(discard()), withGob)
		t.Cleanup(func() { _ = s.Close(context.Background()) })
		ps.Add(s, p)
		return s
	})
}

// The two-level suite over a Cluster of three masters: each far store's
// client dials every master through a proxy of its own (its Dialer maps
// the masters' addresses to its proxies), and the suite's Cut cuts all
// three.
func TestClusterTwoLevel(t *testing.T) {
	srvs := startCluster3(t)
	var ps herdtest.Proxied[store.Store[storetest.Value]]
	storetest.RunTwoLevel(t, storetest.TwoLevelOptions{Cut: ps.Cut}, func(t *testing.T) store.Store[storetest.Value] {
		via := make(map[string]string, len(srvs))
		proxies := make([]*herdtest.Proxy, len(srvs))
		for i, srv := range srvs {
			proxies[i] = herdtest.NewProxy(t, srv.addr())
			via[srv.addr()] = proxies[i].Addr()
		}
		var d net.Dialer
		c := clusterClient(t, srvs[0], func(o *redis.ClusterOptions) {
			o.Dialer = func(ctx context.Context, network, addr string) (net.Conn, error) {
				if p, ok := via[addr]; ok {
					addr = p
				}
				return d.DialContext(ctx, network, addr)
			}
		})
		s := redisstore.New[storetest.Value](c, redisstore.Prefix(prefixOf(t)), redisstore.WithLogger(discard()), withGob)
		t.Cleanup(func() { _ = s.Close(context.Background()) })
		ps.Add(s, proxies...)
		return s
	})
}
