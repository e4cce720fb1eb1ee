package redisstore_test

import (
	"context"
	"syscall"
	"testing"
	"time"

	"github.com/herdcache/herd/internal/fleetcheck"
	"github.com/herdcache/herd/internal/herdtest"
	"github.com/herdcache/herd/internal/history"
	"github.com/herdcache/herd/redisstore"
	"github.com/herdcache/herd/store"
	"github.com/herdcache/herd/store/tiered"
)

// The bounds of the history tests (see fleetcheck's package documentation).
var historyBounds = fleetcheck.Loopback

// Three two-level instances over one server, each through a proxy of its
// own, read and write through herd caches and directly, with a plain Redis
// client writing and deleting too, while the tracking and data connections
// are killed, the server freezes, one instance stalls, another is
// partitioned away, and the server restarts empty. The history of every call
// is checked: bounded staleness, read-your-writes, monotonic reads.
func TestTieredHistoryUnderFaults(t *testing.T) {
	srv := startRedis(t)
	admin, plainClient := srv.client(t), srv.client(t)
	prefix := prefixOf(t)
	var (
		stores  []store.Store[string]
		proxies []*herdtest.Proxy
	)
	for range 3 {
		p := herdtest.NewProxy(t, srv.addr())
		far := redisstore.New[string](newClient(t, p.Addr()), redisstore.Prefix(prefix), redisstore.WithLogger(discard()))
		t.Cleanup(func() { _ = far.Close(context.Background()) })
		s, err := tiered.NewVersioned[string](far, tiered.NearTTL(historyBounds.NearTTL))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = s.Close(context.Background()) })
		stores, proxies = append(stores, s), append(proxies, p)
	}
	keyOf := redisstore.New[string](plainClient, redisstore.Prefix(prefix)).Key
	plain := fleetcheck.PlainBytes(func(ctx context.Context, key string, data []byte) error {
		return plainClient.Set(ctx, keyOf(key), data, 0).Err()
	}, func(ctx context.Context, key string) error { return plainClient.Del(ctx, keyOf(key)).Err() })
	kill := func(kind string) func() error {
		return func() error { return admin.ClientKillByFilter(context.Background(), "TYPE", kind).Err() }
	}
	signal := func(sig syscall.Signal) func() error {
		return func() error { return srv.cmd.Process.Signal(sig) }
	}
	t.Cleanup(func() { // a test that failed while the server was frozen
		if srv.cmd != nil {
			_ = signal(syscall.SIGCONT)()
		}
	})
	faults := []fleetcheck.Fault{
		{What: "tracking connections killed", Instance: history.Everyone, Bound: historyBounds.Fault(), Inject: kill("pubsub")},
		// The streams go on: nothing excuses a stale read.
		{What: "data connections killed", Instance: history.Everyone, Inject: kill("normal")},
		{
			What: "server frozen", Instance: history.Everyone, Bound: historyBounds.Fault(),
			Inject: signal(syscall.SIGSTOP), Heal: signal(syscall.SIGCONT),
		},
		{What: "instance 1 stalled", Instance: 1, Bound: historyBounds.Fault(), Inject: wrap(proxies[1].Stall), Heal: wrap(proxies[1].Resume)},
		{What: "instance 2 partitioned", Instance: 2, Bound: historyBounds.Fault(), Inject: wrap(proxies[2].Cut), Heal: wrap(proxies[2].Restore)},
		{
			What: "server restarted empty", Instance: history.Everyone, Bound: historyBounds.Fault(), Wipes: true,
			Inject: wrap(srv.stop), Heal: wrap(srv.start),
		},
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	res, err := fleetcheck.Run(ctx, fleetcheck.Config{
		Stores: stores, Plain: []fleetcheck.Plain{plain}, Faults: faults,
		PhaseCalls: 2000, ProbeWithin: historyBounds.ProbeWithin(), Check: historyBounds.Check(),
	})
	fleetcheck.Report(t, res, err)
}

// wrap turns a step of the test helpers into a fault's step.
func wrap(f func()) func() error { return func() error { f(); return nil } }
