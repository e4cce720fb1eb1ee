package herdprom_test

import (
	"context"
	"fmt"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/herdcache/herd"
	"github.com/herdcache/herd/autorefresh"
	"github.com/herdcache/herd/herdprom"
	"github.com/herdcache/herd/store/memory"
)

func ExampleNewCollector() {
	ctx := context.Background()
	m := herdprom.NewCollector("users")
	users := herd.New(memory.New[string](), herd.WithObserver(m)) // the load-latency histogram
	defer users.Close(ctx)
	m.Watch(users) // every Stats counter, read at scrape time

	reg := prometheus.NewRegistry()
	reg.MustRegister(m) // or prometheus.MustRegister(m), for the default registry

	_ = users.Set(ctx, "user:1", "Ada")
	load := func(ctx context.Context, id string) (string, error) { return "Grace", nil }
	_, _ = users.Get(ctx, "user:1", load) // a hit
	_, _ = users.Get(ctx, "user:2", load) // a miss and a load

	families, _ := reg.Gather()
	for _, f := range families {
		switch name := f.GetName(); name {
		case "herd_hits_total", "herd_misses_total", "herd_loads_total":
			m := f.GetMetric()[0]
			fmt.Printf("%s{cache=%q} %v\n", name, m.GetLabel()[0].GetValue(), m.GetCounter().GetValue())
		case herdprom.LoadDurationName:
			for _, m := range f.GetMetric() {
				if n := m.GetHistogram().GetSampleCount(); n > 0 {
					fmt.Printf("%s_count{result=%q} %d\n", name, m.GetLabel()[1].GetValue(), n)
				}
			}
		}
	}
	// Output:
	// herd_hits_total{cache="users"} 1
	// herd_load_duration_seconds_count{result="ok"} 1
	// herd_loads_total{cache="users"} 1
	// herd_misses_total{cache="users"} 1
}

// Several caches, and observers of your own, at once.
func ExampleCollector_Observe() {
	ctx := context.Background()
	reg := prometheus.NewRegistry()
	users, sessions := herdprom.NewCollector("users"), herdprom.NewCollector("sessions")
	reg.MustRegister(users, sessions)

	var loads int
	mine := herd.ObserverFunc(func(e herd.Event) {
		if e.Kind == herd.EventLoad {
			loads++
		}
	})
	userCache := herd.New(memory.New[string](), herd.WithObserver(herd.Observers(users, mine)))
	defer userCache.Close(ctx)
	users.Watch(userCache)
	sessionCache := herd.New(memory.New[string](), herd.WithObserver(sessions))
	defer sessionCache.Close(ctx)
	sessions.Watch(sessionCache)

	_, _ = userCache.Get(ctx, "user:1", func(context.Context, string) (string, error) { return "Ada", nil })
	families, _ := reg.Gather()
	for _, f := range families {
		if f.GetName() == "herd_loads_total" {
			for _, m := range f.GetMetric() {
				fmt.Printf("%s{cache=%q} %v\n", f.GetName(), m.GetLabel()[0].GetValue(), m.GetCounter().GetValue())
			}
		}
	}
	fmt.Println("loads seen by my observer:", loads)
	// Output:
	// herd_loads_total{cache="sessions"} 0
	// herd_loads_total{cache="users"} 1
	// loads seen by my observer: 1
}

func ExampleNewAutorefreshCollector() {
	sync := func(ctx context.Context, batch []autorefresh.Item[string, string]) ([]autorefresh.Result[string, string], error) {
		return nil, nil // every item unchanged
	}
	jobs := autorefresh.New(sync)
	defer jobs.Close(context.Background())
	_, _, _ = jobs.GetOrCreate("job:1", "queued")
	_, _, _ = jobs.GetOrCreate("job:1", "queued")

	reg := prometheus.NewRegistry()
	reg.MustRegister(herdprom.NewAutorefreshCollector("jobs", jobs))
	families, _ := reg.Gather()
	for _, f := range families {
		m := f.GetMetric()[0]
		switch name := f.GetName(); name {
		case "herd_autorefresh_created_total", "herd_autorefresh_hits_total":
			fmt.Printf("%s{cache=%q} %v\n", name, m.GetLabel()[0].GetValue(), m.GetCounter().GetValue())
		case "herd_autorefresh_items":
			fmt.Printf("%s{cache=%q} %v\n", name, m.GetLabel()[0].GetValue(), m.GetGauge().GetValue())
		}
	}
	// Output:
	// herd_autorefresh_created_total{cache="jobs"} 1
	// herd_autorefresh_hits_total{cache="jobs"} 1
	// herd_autorefresh_items{cache="jobs"} 1
}
