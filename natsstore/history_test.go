package natsstore_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/herdcache/herd/internal/fleetcheck"
	"github.com/herdcache/herd/internal/history"
	"github.com/herdcache/herd/natsstore"
	"github.com/herdcache/herd/store"
	"github.com/herdcache/herd/store/tiered"
)

// The bounds of the history tests (see fleetcheck's package documentation).
var historyBounds = fleetcheck.Loopback

// Three two-level instances over one bucket, each through a proxy of its
// own, read and write through herd caches and directly, with a plain KV
// client (through a proxy too) putting and deleting, while every
// connection is cut, the server freezes, one instance stalls, another is
// partitioned away, and the server restarts. The history of every call is
// checked: bounded staleness, read-your-writes, monotonic reads.
func TestTieredHistoryUnderFaults(t *testing.T) {
	srv := startServer(t)
	const bucket = "history"
	target := fmt.Sprintf("127.0.0.1:%d", srv.port)
	var (
		stores  []store.Store[string]
		proxies []proxy
	)
	for range 3 {
		p := startProxy(t, target)
		_, js := connect(t, p.url())
		far := newStore[string](t, js, bucket, natsstore.MarkerTTL(time.Second))
		s, err := tiered.NewVersioned[string](far, tiered.NearTTL(historyBounds.NearTTL))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = s.Close(context.Background()) }) // before the far store's
		stores, proxies = append(stores, s), append(proxies, p)
	}
	pp := startProxy(t, target)
	_, pjs := connect(t, pp.url())
	kv, err := pjs.KeyValue(context.Background(), bucket)
	if err != nil {
		t.Fatal(err)
	}
	// The store keeps key k under "d.k" and k escaped; the keys of the run
	// ("k0", "probe") need no escaping.
	plain := fleetcheck.PlainBytes(func(ctx context.Context, key string, data []byte) error {
		_, err := kv.Put(ctx, "d.k"+key, data)
		return err
	}, func(ctx context.Context, key string) error { return kv.Delete(ctx, "d.k"+key) })
	all := append([]proxy{pp}, proxies...)
	each := func(f func(proxy)) func() error {
		return func() error {
			for _, p := range all {
				f(p)
			}
			return nil
		}
	}
	faults := []fleetcheck.Fault{
		{
			What: "every connection cut", Instance: history.Everyone, Bound: historyBounds.Fault(),
			Inject: each(func(p proxy) { p.Cut(); p.Restore() }),
		},
		{
			What: "server frozen", Instance: history.Everyone, Bound: historyBounds.Fault(),
			Inject: each(func(p proxy) { p.Stall() }), Heal: each(func(p proxy) { p.Resume() }),
		},
		{
			What: "instance 1 stalled", Instance: 1, Bound: historyBounds.Fault(),
			Inject: wrap(proxies[1].Stall), Heal: wrap(proxies[1].Resume),
		},
		{
			What: "instance 2 partitioned", Instance: 2, Bound: historyBounds.Fault(),
			Inject: wrap(proxies[2].Cut), Heal: wrap(proxies[2].Restore),
		},
		{
			What: "server restarted", Instance: history.Everyone, Bound: historyBounds.Fault(),
			Inject: wrap(srv.stop), Heal: wrap(srv.start),
		},
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	res, err := fleetcheck.Run(ctx, fleetcheck.Config{
		Stores: stores, Plain: []fleetcheck.Plain{plain}, Faults: faults,
		PhaseCalls: 1000, ProbeWithin: historyBounds.ProbeWithin(), Check: historyBounds.Check(),
	})
	fleetcheck.Report(t, res, err)
}

// wrap turns a step of the test helpers into a fault's step.
func wrap(f func()) func() error { return func() error { f(); return nil } }
