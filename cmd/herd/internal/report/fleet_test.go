package report

import (
	"bytes"
	"encoding/json"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/herdcache/herd/cmd/herd/internal/fleet"
)

func fleetResult() *fleet.Result {
	c := fleet.Defaults
	c.StoreName = "redis://127.0.0.1:6379/0"
	return &fleet.Result{Config: c, Elapsed: 15 * time.Second, Setups: []fleet.Setup{
		{Name: fleet.MemoryPerInstance, Reads: 30_000, PerSec: 6000, P50: 1500 * time.Nanosecond, P99: 90 * time.Microsecond, Writes: 250, Stale: 4176, Delivered: 95, Longest: 4840 * time.Millisecond},
		{Name: fleet.FarOnly, Reads: 29_000, PerSec: 5800, P50: 194 * time.Microsecond, P99: 4300 * time.Microsecond, Writes: 249},
		{Name: fleet.TwoLevel, Reads: 30_000, PerSec: 6000, P50: 1800 * time.Nanosecond, P99: 1300 * time.Microsecond, Writes: 250, Delivered: 2, Longest: 38 * time.Microsecond},
	}}
}

// The fleet table names the far tier and the allowance, has a row per
// setup, and sums up the staleness and the cost of each setup.
func TestFleetTable(t *testing.T) {
	var b bytes.Buffer
	if err := FleetTable(&b, fleetResult()); err != nil {
		t.Fatal(err)
	}
	out := b.String()
	flat := strings.ReplaceAll(out, "\n", " ") // the prose wraps
	for _, want := range []string{
		"far tier: redis://127.0.0.1:6379/0; delivery allowance 50ms",
		"\nmemory per instance    6,000  1.5µs   90µs       0             0     250              4,176                95          4.84s\n",
		"\ntwo-level              6,000  1.8µs  1.3ms       0             0     250                  0                 2           38µs\n",
		"memory per instance: 4,176 stale reads after a write, for up to 4.84s",
		"two-level: 0 beyond 50ms, an older value read at most 38µs after a write had completed.",
		"1.0× the reads per second; p50 1.8µs against 194µs (1/108 of the far tier's), p99 1.3ms against 4.3ms.",
	} {
		if !strings.Contains(out, want) && !strings.Contains(flat, want) {
			t.Errorf("the table lacks %q:\n%s", want, out)
		}
	}
	for l := range strings.SplitSeq(out, "\n") {
		if !strings.HasPrefix(l, "setup ") && !strings.HasPrefix(l, "memory per instance ") &&
			!strings.HasPrefix(l, "far tier only ") && !strings.HasPrefix(l, "two-level ") &&
			!strings.HasPrefix(l, "fleet: ") && len([]rune(l)) > lineWidth {
			t.Errorf("a line of %d columns: %q", len([]rune(l)), l)
		}
	}
}

func TestFleetJSON(t *testing.T) {
	var b bytes.Buffer
	if err := FleetJSON(&b, fleetResult()); err != nil {
		t.Fatal(err)
	}
	var got struct {
		Config struct {
			Store      string  `json:"store"`
			AllowanceS float64 `json:"allowance_s"`
		} `json:"config"`
		Setups []struct {
			Name      string  `json:"name"`
			Stale     uint64  `json:"stale_after_write"`
			LongestMS float64 `json:"longest_stale_ms"`
		} `json:"setups"`
		Verdict []string `json:"verdict"`
	}
	if err := json.Unmarshal(b.Bytes(), &got); err != nil {
		t.Fatal(err)
	}
	if got.Config.Store != "redis://127.0.0.1:6379/0" || got.Config.AllowanceS != 0.05 || len(got.Setups) != 3 ||
		got.Setups[0].Stale != 4176 || got.Setups[2].LongestMS != 0.038 || len(got.Verdict) != 2 {
		t.Errorf("%+v", got)
	}
}

func TestFleetHTML(t *testing.T) {
	var b bytes.Buffer
	r := fleetResult()
	r.Config.Command = "herd --fleet"
	if err := FleetHTML(&b, r); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"<td>two-level</td>", "<td>4,176</td>", "stale after write", "delivery allowance 50ms",
		"<h2>Stale reads after a write</h2>", "<h2>Read latency</h2>", ">two-level</text>", ">p99 ",
		"Made by <code>herd --fleet</code>",
	} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("the page lacks %q", want)
		}
	}
	if n := strings.Count(b.String(), `role="img"`); n != 2 {
		t.Errorf("%d charts, want 2", n)
	}
	// A bar per setup and measure, as long as its value on the axis.
	bars := regexp.MustCompile(`<rect x="170.0" y="[^"]*" width="([^"]*)" height="14.0" fill="[^"]*"><title>([^<]*)</title>`).
		FindAllStringSubmatch(b.String(), -1)
	if len(bars) != 4*len(fleetResult().Setups) {
		t.Fatalf("%d bars: %q", len(bars), bars)
	}
	for _, m := range bars {
		if strings.HasPrefix(m[2], "0 ") != (m[1] == "0.0") {
			t.Errorf("bar %q is %s px long", m[2], m[1])
		}
	}
}
