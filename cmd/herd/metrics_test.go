package main

import (
	"bytes"
	"context"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/herdcache/herd/store/memory"
)

// scrape gets url and parses the text format.
func scrape(ctx context.Context, url string) (map[string]*dto.MetricFamily, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, http.NoBody)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Accept", "text/plain; version=0.0.4")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	parser := expfmt.NewTextParser(model.UTF8Validation)
	return parser.TextToMetricFamilies(resp.Body)
}

// counter returns the value of the counter name{cache=cache}.
func counter(families map[string]*dto.MetricFamily, name, cache string) (float64, bool) {
	for _, m := range families[name].GetMetric() {
		for _, l := range m.GetLabel() {
			if l.GetName() == "cache" && l.GetValue() == cache {
				return m.GetCounter().GetValue(), true
			}
		}
	}
	return 0, false
}

// The server exports the metrics of the caches built through it.
func TestMetricsServer(t *testing.T) {
	m, err := serveMetrics("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer m.stop(t.Output())
	ctx := t.Context()
	c := m.newCache("swr/0", memory.New[string]())
	defer func() { _ = c.Close(context.Background()) }()
	if _, err := c.Get(ctx, "k", func(context.Context, string) (string, error) { return "v", nil }); err != nil {
		t.Fatal(err)
	}
	families, err := scrape(ctx, m.URL())
	if err != nil {
		t.Fatal(err)
	}
	if v, ok := counter(families, "herd_loads_total", "swr/0"); !ok || v != 1 {
		t.Fatalf("herd_loads_total{cache=\"swr/0\"} = %v (found: %v), want 1", v, ok)
	}
	if _, ok := families["herd_load_duration_seconds"]; !ok {
		t.Fatal("no herd_load_duration_seconds")
	}
}

// syncBuffer is a buffer that the command's goroutines may write to while
// the test reads it.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// With --metrics-addr, the command serves the metrics of its herd caches
// while the simulation runs. It runs on real time, for a second, as the
// server is a real one.
func TestRunServesMetrics(t *testing.T) {
	var stdout, stderr syncBuffer
	done := make(chan int)
	args := []string{
		"--duration", "1s", "--clients", "2", "--keys", "10", "--outage", "0",
		"--json", "--metrics-addr", "127.0.0.1:0",
	}
	go func() { done <- runContext(t.Context(), args, &stdout, &stderr) }()
	want := []string{"ttl/0", "swr/0"}
	found := map[string]bool{}
	poll := time.NewTicker(20 * time.Millisecond)
	defer poll.Stop()
	for len(found) < len(want) {
		select {
		case code := <-done:
			t.Fatalf("the run ended (exit %d) before its metrics were seen: %v found; stderr %q", code, found, stderr.String())
		case <-poll.C:
		}
		_, url, ok := strings.Cut(stderr.String(), "serving metrics on ")
		if !ok {
			continue
		}
		url, _, _ = strings.Cut(url, "\n")
		families, err := scrape(t.Context(), url)
		if err != nil {
			continue // not serving yet
		}
		for _, cache := range want {
			if v, ok := counter(families, "herd_loads_total", cache); ok && v > 0 {
				found[cache] = true
			}
		}
	}
	// A loaded machine may fall behind the clients' schedule; the metrics
	// were served all the same.
	if code := <-done; code != exitOK && code != exitBehind {
		t.Fatalf("exit %d, stderr %q", code, stderr.String())
	}
}

func TestMetricsAddrErrors(t *testing.T) {
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	for _, tc := range []struct {
		addr, want string
	}{
		{"9090", `--metrics-addr: want host:port, such as 127.0.0.1:9090 or :9090, got "9090"`},
		{busy.Addr().String(), "--metrics-addr: listen tcp " + busy.Addr().String() + ": bind: address already in use"},
		{"127.0.0.1:0 --fleet", "--metrics-addr: not available with --fleet"},
	} {
		var stdout, stderr bytes.Buffer
		args := append([]string{"--duration", "1s", "--metrics-addr"}, strings.Fields(tc.addr)...)
		code := runContext(t.Context(), args, &stdout, &stderr)
		if code != exitUsage || !strings.Contains(stderr.String(), tc.want) {
			t.Errorf("--metrics-addr %s: exit %d, stderr %q; want exit %d and %q", tc.addr, code, stderr.String(), exitUsage, tc.want)
		}
	}
}
