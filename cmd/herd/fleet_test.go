package main

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// fleetRun is the JSON of a fleet run, as much of it as the tests read.
type fleetRun struct {
	Config struct {
		Store      string  `json:"store"`
		AllowanceS float64 `json:"allowance_s"`
	} `json:"config"`
	Setups []struct {
		Name   string  `json:"name"`
		Reads  uint64  `json:"reads"`
		Errors uint64  `json:"errors"`
		Writes uint64  `json:"writes"`
		Stale  uint64  `json:"stale_after_write"`
		Long   float64 `json:"longest_stale_ms"`
		Outage *struct {
			Fault   string `json:"fault"`
			Windows []struct {
				Name   string `json:"name"`
				Reads  uint64 `json:"reads"`
				Errors uint64 `json:"errors"`
				Hits   uint64 `json:"hits"`
				Loads  uint64 `json:"loads"`
				Writes uint64 `json:"writes"`
				Stale  uint64 `json:"stale"`
			} `json:"windows"`
		} `json:"outage"`
	} `json:"setups"`
	OutageLines []string `json:"outage_verdict"`
	OutageNote  string   `json:"outage_note"`
}

// checkFleetOutage checks the outage phases of a fleet run over a server:
// memory per instance has none; the far tier alone and the two-level store
// each read through the three windows, and wrote before and after the
// cut; while the far tier is cut, the far tier alone answers nothing from
// the store, but for reads under way at the cut.
func checkFleetOutage(t *testing.T, r *fleetRun, fault string) {
	t.Helper()
	if r.Setups[0].Outage != nil {
		t.Errorf("memory per instance has an outage phase: %+v", r.Setups[0].Outage)
	}
	want := []string{"far tier up", "far tier cut", "far tier back"}
	for _, s := range r.Setups[1:] {
		o := s.Outage
		if o == nil {
			t.Errorf("%s: no outage phase", s.Name)
			continue
		}
		t.Logf("%s: %+v", s.Name, *o)
		if o.Fault != fault || len(o.Windows) != len(want) {
			t.Errorf("%s: fault %s, %d windows; want %s, %d", s.Name, o.Fault, len(o.Windows), fault, len(want))
			continue
		}
		for i, w := range o.Windows {
			if w.Name != want[i] || w.Reads+w.Errors == 0 {
				t.Errorf("%s, window %d: %+v; want %q, with reads", s.Name, i, w, want[i])
			}
		}
		up, cut, back := o.Windows[0], o.Windows[1], o.Windows[2]
		if up.Writes == 0 || back.Writes == 0 {
			t.Errorf("%s: writes %d up, %d back; want some in each", s.Name, up.Writes, back.Writes)
		}
		// A read under way at the cut may still be answered by the
		// store; the others cannot be.
		if s.Name == "far tier only" && (cut.Loads == 0 || cut.Hits > cut.Loads/100) {
			t.Errorf("far tier only, cut: %d hits, %d loads; want loads, with the far tier unreachable", cut.Hits, cut.Loads)
		}
	}
	if len(r.OutageLines) != 2 || r.OutageNote != "" {
		t.Errorf("outage verdict %q, note %q", r.OutageLines, r.OutageNote)
	}
}

// runFleetScenario runs the fleet scenario over the store at url (memory for
// none) with the extra args, and checks what any fleet must show: every
// setup read and wrote; memory per instance served values older than a
// write completed more than the allowance before; the far tier alone and
// the two-level store served none.
//
// The allowance is the stream's delivery time granted to a write. The
// tests give it 250ms, not the command's 50ms: on loopback a change reaches
// the other instances in well under a millisecond, but under -race, beside
// the other tests of the module on a 2-core machine, a goroutine can wait
// tens of milliseconds for a processor, and such a wait would be counted
// against the two-level store. Memory per instance serves the old value
// for up to the TTL (5s), far beyond 250ms, so the test still separates the
// setups.
func runFleetScenario(t *testing.T, url string, args ...string) fleetRun {
	t.Helper()
	args = append([]string{"--fleet", "--duration", "6s", "--keys", "50", "--allowance", "250ms", "--json"}, args...)
	if url != "memory" {
		args = append(args, "--store", url)
	}
	var out, errs bytes.Buffer
	if code := run(args, &out, &errs); code != exitOK {
		t.Fatalf("exit %d, stderr:\n%s\nstdout:\n%s", code, errs.String(), out.String())
	}
	var r fleetRun
	if err := json.Unmarshal(out.Bytes(), &r); err != nil {
		t.Fatalf("%v in:\n%s", err, out.String())
	}
	t.Logf("%+v", r)
	if r.Config.AllowanceS != 0.25 {
		t.Errorf("allowance %vs, want 0.25s", r.Config.AllowanceS)
	}
	want := []string{"memory per instance", "far tier only", "two-level"}
	if len(r.Setups) != len(want) {
		t.Fatalf("%d setups, want %d:\n%s", len(r.Setups), len(want), out.String())
	}
	for i, s := range r.Setups {
		if s.Name != want[i] {
			t.Errorf("setup %d is %q, want %q", i, s.Name, want[i])
		}
		if s.Reads == 0 || s.Writes == 0 {
			t.Errorf("%s: %d reads, %d writes", s.Name, s.Reads, s.Writes)
		}
		if s.Errors > s.Reads/100 {
			t.Errorf("%s: %d of %d reads failed", s.Name, s.Errors, s.Reads)
		}
	}
	if mem := r.Setups[0]; mem.Stale == 0 || mem.Long <= 250 {
		t.Errorf("memory per instance: %d stale reads after a write, longest %vms; want some, beyond the allowance", mem.Stale, mem.Long)
	}
	for _, s := range r.Setups[1:] {
		if s.Stale != 0 || s.Long > 250 {
			t.Errorf("%s: %d stale reads after a write, longest %vms after it; want none beyond the 250ms allowance", s.Name, s.Stale, s.Long)
		}
	}
	return r
}

// On the default in-memory store the fleet scenario needs no server: the
// far tier is a memory store the instances share. It writes the same
// results as an HTML page.
func TestFleetOnMemory(t *testing.T) {
	page := filepath.Join(t.TempDir(), "fleet.html")
	r := runFleetScenario(t, "memory", "--html", page)
	if !strings.Contains(r.OutageNote, "not run: the far tier is a memory store in this process") || len(r.OutageLines) != 0 {
		t.Errorf("outage note %q, lines %q", r.OutageNote, r.OutageLines)
	}
	if r.Config.Store != "memory" {
		t.Errorf("store %q, want memory", r.Config.Store)
	}
	html, err := os.ReadFile(page)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"<table>", "<td>two-level</td>", "stale after write", "delivery allowance 250ms"} {
		if !strings.Contains(string(html), want) {
			t.Errorf("the page lacks %q", want)
		}
	}
}

// Over a real Redis, three instances each with a connection of their own:
// the two-level store follows the server's client tracking; each setup
// over Redis then reads through a second in which Redis hangs; and the run
// removes the keys it wrote.
func TestFleetOverRedis(t *testing.T) {
	url := startRedis(t)
	r := runFleetScenario(t, url, "--store-outage", "1s")
	checkFleetOutage(t, &r, "hang")
	assertNoRedisKeys(t, url)
}

// Over a real NATS JetStream: the two-level store follows a watch of the
// bucket; each setup over NATS then reads through a second in which the
// server refuses connections; and the run deletes the buckets it made.
func TestFleetOverNATS(t *testing.T) {
	url := startNATS(t)
	r := runFleetScenario(t, url, "--store-outage", "1s", "--store-fault", "refuse")
	checkFleetOutage(t, &r, "refuse")
	nc, err := nats.Connect(url)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	for name := range js.KeyValueStoreNames(context.Background()).Name() {
		t.Errorf("the run left bucket %q behind", name)
	}
}

// The fleet's own flags need --fleet, and the source's outage does not
// apply to it: one line on stderr and exit status 2.
func TestFleetBadArguments(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--writes", "10"}, "--writes needs --fleet"},
		{[]string{"--allowance", "10ms"}, "--allowance needs --fleet"},
		{[]string{"--fleet", "--outage", "1s"}, "--outage does not apply to --fleet"},
		{[]string{"--fleet", "--store-outage", "1s"}, "--store-outage and --store-fault need a --store server"},
		{[]string{"--fleet", "--writes", "0"}, "--writes must be between 1 and"},
		{[]string{"--fleet", "--allowance", "0s"}, "--allowance must be positive"},
		{[]string{"--fleet", "--instances", "0"}, "--instances must be between 1 and"},
		{[]string{"--fleet", "--store", "redis://127.0.0.1:" + closedPort + "/0"}, "is unreachable"},
	} {
		var stdout, stderr bytes.Buffer
		code := run(tc.args, &stdout, &stderr)
		msg := stderr.String()
		if code != exitUsage || stdout.Len() != 0 || !strings.HasPrefix(msg, "herd: ") ||
			!strings.Contains(msg, tc.want) || strings.Count(msg, "\n") != 1 {
			t.Errorf("%q: exit %d, stdout %q, stderr %q; want 2 and one line containing %q", tc.args, code, stdout.String(), msg, tc.want)
		}
	}
}
