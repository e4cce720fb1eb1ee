package report

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/herdcache/herd/cmd/herd/internal/soak"
)

// soakResult is a hand-made long run of 40 seconds, a sample a second,
// whose goroutines climb by 5 a second and whose other resources are flat.
func soakResult() *soak.Result {
	rep := fixture()
	rep.Setups = rep.Setups[3:] // herd (SWR+SIE) alone
	r := &soak.Result{Config: soak.Config{Sim: rep.Config, Sample: time.Second}, Report: rep, Elapsed: 40 * time.Second}
	r.Config.Sim.Duration = 40 * time.Second
	for i := range 40 {
		r.Samples = append(r.Samples, soak.Sample{
			At: time.Duration(i) * time.Second, HeapLive: 8 << 20, Goroutines: int64(100 + 5*i), OpenFiles: -1, StoreKeys: 1000,
		})
	}
	for _, res := range soak.Resources {
		r.Trends = append(r.Trends, soak.Judge(res, r.Samples, r.Config.Sim.Duration))
	}
	return r
}

func TestSoakTable(t *testing.T) {
	var b bytes.Buffer
	if err := SoakTable(&b, soakResult()); err != nil {
		t.Fatal(err)
	}
	out := b.String()
	t.Log("\n" + out)
	for _, want := range []string{
		"\nherd (SWR+SIE) ",
		"long run: herd (SWR+SIE) for 40s, the process and the store sampled every 1s (40 samples)",
		"\nlive heap   8.0 MiB  8.0 MiB  8.0 MiB        +0.0 MiB    +0.0 MiB  4.0 MiB          flat\n",
		"\ngoroutines      100      200      295             +95        +300       25       GROWING\n",
		"\nopen files        –        –        –               –           –        –  not measured\n",
		"\nGROWING: goroutines rose by 95 over the second half (300 a minute). A leak, or a resource\nstill filling",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("no %q", want)
		}
	}
	if strings.Contains(out, "no leak seen") || strings.Contains(out, "no cache") {
		t.Error("a flat verdict, or setups a long run does not have")
	}
}

func TestSoakJSONAndHTML(t *testing.T) {
	var b bytes.Buffer
	if err := SoakJSON(&b, soakResult()); err != nil {
		t.Fatal(err)
	}
	var got struct {
		Run     struct{ Setups []struct{ ID string } }
		Samples []struct {
			Goroutines int64 `json:"goroutines"`
		}
		Growing []string
		Judged  bool
	}
	if err := json.Unmarshal(b.Bytes(), &got); err != nil {
		t.Fatal(err)
	}
	if len(got.Run.Setups) != 1 || got.Run.Setups[0].ID != "herd-swr" || len(got.Samples) != 40 ||
		got.Samples[39].Goroutines != 295 || strings.Join(got.Growing, ",") != "goroutines" || !got.Judged {
		t.Fatalf("%+v", got)
	}

	b.Reset()
	if err := SoakHTML(&b, soakResult()); err != nil {
		t.Fatal(err)
	}
	page := b.String()
	for _, want := range []string{
		"<h2>Goroutines: GROWING over the second half</h2>", "<h2>Live heap (MiB): flat over the second half</h2>",
		"<td>GROWING</td>", "GROWING: goroutines rose by 95",
	} {
		if !strings.Contains(page, want) {
			t.Errorf("the page lacks %q", want)
		}
	}
	// A chart per measured resource: open files were not.
	if n := strings.Count(page, `role="img"`); n != 3 {
		t.Errorf("%d charts, want 3", n)
	}
	// Each chart has its samples' line and the line fitted over the
	// second half.
	if n := len(linePaths.FindAllString(page, -1)); n != 6 {
		t.Errorf("%d lines, want 6", n)
	}
}
