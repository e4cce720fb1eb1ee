package main

import (
	"encoding/json"
	"strings"
	"testing"
)

// --batch runs both setups and says how many fewer source calls the window
// made; the JSON has the same numbers.
func TestBatchScenario(t *testing.T) {
	args := []string{"--batch", "--duration", "2s", "--clients", "50", "--latency", "5ms", "--max-batch", "20"}
	code, stdout, stderr := runInBubble(t, background, args...)
	if code != exitOK {
		t.Fatalf("exit %d; stderr:\n%s", code, stderr)
	}
	for _, want := range []string{"herd, one source call per key", "herd + Batch(MaxBatch 20, MaxWait 2ms)", "fewer"} {
		if !strings.Contains(stdout, want) {
			t.Errorf("the table lacks %q:\n%s", want, stdout)
		}
	}
	if !strings.Contains(stderr, "batch: herd + Batch") {
		t.Errorf("stderr does not name the setups:\n%s", stderr)
	}

	code, stdout, stderr = runInBubble(t, background, append(args, "--json")...)
	if code != exitOK {
		t.Fatalf("--json: exit %d; stderr:\n%s", code, stderr)
	}
	var got struct {
		Config  batchConfig   `json:"config"`
		Results []batchResult `json:"results"`
	}
	if err := json.Unmarshal([]byte(stdout), &got); err != nil {
		t.Fatalf("--json: %v\n%s", err, stdout)
	}
	if len(got.Results) != 2 || got.Config.MaxBatch != 20 || got.Config.Clients != 50 {
		t.Fatalf("--json: %+v", got)
	}
	plain, batched := got.Results[0], got.Results[1]
	if plain.Requests == 0 || plain.SourceCalls != plain.Requests {
		t.Errorf("without the window: %d Gets, %d source calls; want one call per Get", plain.Requests, plain.SourceCalls)
	}
	// 50 clients, batches of at most 20: 3 calls for every 50 Gets.
	if batched.Requests == 0 || batched.SourceCalls*50 > batched.Requests*3 {
		t.Errorf("with the window: %d Gets, %d source calls; want at most 3 calls per 50 Gets", batched.Requests, batched.SourceCalls)
	}
}

// The batch flags are checked, and flags of the other scenarios are refused.
func TestBatchFlags(t *testing.T) {
	for _, args := range [][]string{
		{"--max-batch", "10"},
		{"--max-wait", "1ms"},
		{"--batch", "--max-batch", "0"},
		{"--batch", "--max-wait", "0s"},
		{"--batch", "--latency", "0s"},
		{"--batch", "--errors", "0.1"},
		{"--batch", "--store", "redis://127.0.0.1:" + closedPort + "/0"},
		{"--batch", "--fleet"},
	} {
		code, _, stderr := runInBubble(t, background, args...)
		if code != exitUsage || strings.Count(stderr, "\n") != 1 {
			t.Errorf("%q: exit %d, stderr %q; want exit %d and one line", args, code, stderr, exitUsage)
		}
	}
}
