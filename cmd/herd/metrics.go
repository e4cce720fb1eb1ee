package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/herdcache/herd"
	"github.com/herdcache/herd/herdprom"
	"github.com/herdcache/herd/store"
)

// checkMetricsAddr checks the --metrics-addr flag: empty, or host:port and
// not with --fleet, whose caches it does not export.
func checkMetricsAddr(addr string, fleet bool) error {
	if addr == "" {
		return nil
	}
	if fleet {
		return errors.New("--metrics-addr: not available with --fleet")
	}
	if _, _, err := net.SplitHostPort(addr); err != nil {
		return fmt.Errorf("--metrics-addr: want host:port, such as 127.0.0.1:9090 or :9090, got %q", addr)
	}
	return nil
}

// metricsServer serves the Prometheus metrics of the run's herd caches at
// /metrics while the run lasts.
type metricsServer struct {
	reg  *prometheus.Registry
	srv  *http.Server
	addr net.Addr
	done chan struct{}
}

// serveMetrics listens on addr and serves /metrics until stop is called.
func serveMetrics(addr string) (*metricsServer, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, err
	}
	m := &metricsServer{reg: prometheus.NewRegistry(), addr: ln.Addr(), done: make(chan struct{})}
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{}))
	m.srv = &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go func() {
		defer close(m.done)
		_ = m.srv.Serve(ln) // returns http.ErrServerClosed after Shutdown
	}()
	return m, nil
}

// URL is where the metrics are served.
func (m *metricsServer) URL() string {
	return "http://" + m.addr.String() + "/metrics"
}

// newCache builds a herd cache of the simulation, called name (such as
// "swr/0"), whose metrics the server exports under the label cache=name.
func (m *metricsServer) newCache(name string, s store.Store[string], opts ...herd.Option) *herd.Cache[string] {
	col := herdprom.NewCollector(name)
	c := herd.New(s, append(opts, herd.WithObserver(col))...)
	col.Watch(c)
	// A name is registered once per run: a second setup of the same name
	// keeps the first one's metrics.
	if err := m.reg.Register(col); err != nil {
		var are prometheus.AlreadyRegisteredError
		if !errors.As(err, &are) {
			panic(fmt.Sprintf("herd: register the metrics of %s: %v", name, err))
		}
	}
	return c
}

// stop stops the server, waiting at most a second for scrapes in flight.
func (m *metricsServer) stop(stderr io.Writer) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	if err := m.srv.Shutdown(ctx); err != nil {
		_ = m.srv.Close()
		fmt.Fprintf(stderr, "herd: --metrics-addr: %v\n", err)
	}
	<-m.done
}
