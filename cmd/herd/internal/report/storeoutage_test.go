package report

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/herdcache/herd"
	"github.com/herdcache/herd/cmd/herd/internal/proxy"
	"github.com/herdcache/herd/cmd/herd/internal/storeoutage"
)

// outageFixture is a hand-made store outage phase: cut at 2s, restored at
// 5s, the store marked down 1.2s after the cut and up 0.3s after the
// restore; the slowest Get before the mark took slowest.
func outageFixture(slowest time.Duration) *storeoutage.Result {
	r := &storeoutage.Result{
		Config: storeoutage.Config{
			Clients: 16, Interval: 10 * time.Millisecond, Instances: 1, Latency: 50 * time.Millisecond,
			TTL: 5 * time.Second, Timeout: 5 * time.Second, Fault: proxy.Hang, StoreName: "redis:local", Client: "go-redis",
		},
		StoreTimeout: time.Second, CutAt: 2 * time.Second, RestoredAt: 5 * time.Second,
		Downs: []time.Duration{3200 * time.Millisecond}, Ups: []time.Duration{5300 * time.Millisecond},
		Stats:  herd.Stats{StoreDowns: 1, StoreUps: 1, StoreSkipped: 2000},
		Bucket: time.Second,
		Windows: []storeoutage.Window{
			{Name: storeoutage.StoreUp, Gets: 3200, FromStore: 3000, Loaded: 200, P50: 300 * time.Microsecond, P99: 60 * time.Millisecond, Max: 70 * time.Millisecond},
			{Name: storeoutage.CutNotDown, Gets: 1900, Loaded: 1900, SlowGets: 1900, P50: time.Second, P99: slowest, Max: slowest, LoadMax: 60 * time.Millisecond},
			{Name: storeoutage.CutDown, Gets: 2900, Loaded: 2900, SlowGets: 2, P50: 50 * time.Millisecond, P99: 60 * time.Millisecond, Max: time.Second, Loads: 2500, LoadMax: 70 * time.Millisecond, StoreSkipped: 2000},
			{Name: storeoutage.StoreBack, Gets: 4800, FromStore: 4000, Loaded: 800, P50: 400 * time.Microsecond},
		},
	}
	for i := range 7 {
		r.Timeline = append(r.Timeline, storeoutage.Point{At: time.Duration(i) * time.Second, Gets: 1600, P50: time.Millisecond, P99: 50 * time.Millisecond, Max: time.Second, Loads: 100, FromStore: 1500})
	}
	return r
}

// The verdict says when the store was marked down and up, and whether the
// first callers paid at most one StoreTimeout and a load: 1.05s is within
// it, 3.05s is not.
func TestStoreOutageVerdict(t *testing.T) {
	within := strings.Join(StoreOutageVerdict(outageFixture(1050*time.Millisecond)), "\n")
	for _, want := range []string{
		"marked down once and up once", "first marked down 1.20s after the cut, up again 300ms after the server came back",
		"Before the mark, 1,900 Gets waited on the store (p50 1.00s); the first callers paid at most one StoreTimeout: the slowest took 1.05s",
		"Once marked down, Gets took p50 50ms, p99 60ms", "2,000 store calls skipped; 2 Gets slower",
		"After the server came back: 83.3% of the Gets answered from the store",
	} {
		if !strings.Contains(within, want) {
			t.Errorf("no %q in\n%s", want, within)
		}
	}
	past := strings.Join(StoreOutageVerdict(outageFixture(3050*time.Millisecond)), "\n")
	if !strings.Contains(past, "FIRST CALLERS PAID MORE THAN ONE StoreTimeout: the slowest took 3.05s") {
		t.Errorf("a 3.05s Get before the mark is not called out:\n%s", past)
	}
}

// The run's table, JSON and page carry the phase, or the note that says
// why it did not run.
func TestRunWithStoreOutage(t *testing.T) {
	run := &Run{Sim: fixture(), StoreOutage: outageFixture(time.Second)}
	var b bytes.Buffer
	if err := RunTable(&b, run); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"\nstore outage: 16 clients × 100 Gets/s through 1 herd cache with a lock (TTL 5s) over redis:local; Get deadline 5s",
		"the server hangs: ", "\ncut, until marked down ", "  1,900 ", "\nstore back ",
	} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("no %q in\n%s", want, b.String())
		}
	}
	b.Reset()
	if err := RunJSON(&b, run); err != nil {
		t.Fatal(err)
	}
	var doc struct {
		Setups      []json.RawMessage `json:"setups"`
		StoreOutage struct {
			Fault   string `json:"fault"`
			Windows []struct {
				Name string `json:"name"`
				Gets uint64 `json:"gets"`
			} `json:"windows"`
			StoreSkipped uint64 `json:"store_skipped"`
		} `json:"store_outage"`
	}
	if err := json.Unmarshal(b.Bytes(), &doc); err != nil {
		t.Fatal(err)
	}
	if len(doc.Setups) != 4 || doc.StoreOutage.Fault != "hang" || len(doc.StoreOutage.Windows) != 4 ||
		doc.StoreOutage.Windows[1].Gets != 1900 || doc.StoreOutage.StoreSkipped != 2000 {
		t.Errorf("JSON:\n%s", b.String())
	}
	b.Reset()
	if err := RunHTML(&b, run); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"<h1>The store's server unreachable</h1>", "Get latency through the store outage", "store calls skipped"} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("no %q in the page", want)
		}
	}

	note := &Run{Sim: fixture(), StoreOutageNote: "store outage phase: not run: no server."}
	b.Reset()
	if err := RunTable(&b, note); err != nil {
		t.Fatal(err)
	}
	if !strings.HasSuffix(b.String(), "\nstore outage phase: not run: no server.\n") {
		t.Errorf("no note at the end of\n%s", b.String())
	}
	b.Reset()
	if err := RunJSON(&b, note); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(b.String(), `"store_outage_note": "store outage phase: not run: no server."`) || strings.Contains(b.String(), `"store_outage":`) {
		t.Errorf("JSON:\n%s", b.String())
	}
}
