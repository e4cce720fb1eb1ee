package main

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// The long run, in a synctest bubble where its 30 seconds take no real
// time: one setup, a table of the resources sampled, a verdict that
// nothing grew, a page with a chart per resource, and JSON with every
// sample.
func TestSoak(t *testing.T) {
	page := filepath.Join(t.TempDir(), "soak.html")
	args := []string{"--soak", "--duration", "30s", "--sample", "500ms", "--clients", "8", "--keys", "50", "--instances", "3"}
	code, stdout, stderr := runInBubble(t, background, append(args, "--html", page)...)
	if code != exitOK {
		t.Fatalf("exit %d, stderr %q, stdout:\n%s", code, stderr, stdout)
	}
	flat := strings.ReplaceAll(stdout, "\n", " ") // the prose wraps
	for _, want := range []string{
		"herd (SWR+SIE) ", "source: 50ms median latency, 1% errors, no outage",
		"long run: herd (SWR+SIE) for 30s, the process and the store sampled every 500ms (60 samples)",
		" resource ", " live heap ", " goroutines ", " store keys ", "3 instances of each: herd's share the memory store and a lock ",
		" no resource grew over the second half of the run (15s): no leak seen.",
	} {
		if !strings.Contains(flat, want) {
			t.Errorf("no %q in\n%s", want, stdout)
		}
	}
	if strings.Contains(stdout, "no cache") || strings.Contains(stdout, " GROWING\n") || strings.Contains(stdout, "GROWING:") {
		t.Errorf("stdout:\n%s", stdout)
	}
	html, err := os.ReadFile(page)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"<h2>Live heap (MiB): flat over the second half</h2>", "<h2>Goroutines: flat over the second half</h2>", "<h2>Store keys: flat over the second half</h2>", "<code>herd --soak --duration 30s"} {
		if !strings.Contains(string(html), want) {
			t.Errorf("the page lacks %q", want)
		}
	}

	code, stdout, stderr = runInBubble(t, background, append(args, "--json")...)
	if code != exitOK {
		t.Fatalf("--json: exit %d, stderr %q", code, stderr)
	}
	var got struct {
		Samples []struct {
			Goroutines int64 `json:"goroutines"`
			StoreKeys  int64 `json:"store_keys"`
		} `json:"samples"`
		Trends []struct {
			Resource string `json:"resource"`
			Growing  bool   `json:"growing"`
		} `json:"trends"`
		Judged bool `json:"judged"`
	}
	if err := json.Unmarshal([]byte(stdout), &got); err != nil {
		t.Fatalf("%v in\n%s", err, stdout)
	}
	if len(got.Samples) != 60 || len(got.Trends) != 4 || !got.Judged || got.Samples[59].StoreKeys < 40 {
		t.Fatalf("%+v", got)
	}
}

// The long run for real, a few seconds of it: a run judged from real
// samples of the process.
func TestSoakForReal(t *testing.T) {
	var stdout, stderr bytes.Buffer
	code := run([]string{"--soak", "--duration", "3s", "--sample", "100ms", "--clients", "4", "--keys", "50", "--latency", "5ms"}, &stdout, &stderr)
	// A machine too busy to send the requests on time (under -race, beside
	// other tests) makes it exit with status 4, and say so.
	if code != exitOK && (code != exitBehind || !strings.Contains(stdout.String(), "\nLOAD NOT DELIVERED: ")) {
		t.Fatalf("exit %d, stderr %q, stdout:\n%s", code, stderr.String(), stdout.String())
	}
	flat := strings.ReplaceAll(stdout.String(), "\n", " ")
	if !strings.Contains(flat, "(30 samples)") || !strings.Contains(flat, "no leak seen") {
		t.Fatalf("stdout:\n%s", stdout.String())
	}
}

func TestSoakBadArguments(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--sample", "1s"}, "--sample needs --soak"},
		{[]string{"--soak", "--fleet"}, "--soak runs its own scenario: not with --fleet or --batch"},
		{[]string{"--soak", "--sample", "0s"}, "--sample must be positive, got 0s"},
		{[]string{"--soak", "--duration", "1h", "--sample", "1ms"}, "--sample must be at least duration / 100000 (36ms), got 1ms"},
		{[]string{"--soak", "--clients", "0"}, "--clients must be between 1 and"},
	} {
		var stdout, stderr bytes.Buffer
		if code := run(tc.args, &stdout, &stderr); code != exitUsage || !strings.Contains(stderr.String(), tc.want) {
			t.Errorf("%q: exit %d, stderr %q; want 2 and %q", tc.args, code, stderr.String(), tc.want)
		}
	}
}
