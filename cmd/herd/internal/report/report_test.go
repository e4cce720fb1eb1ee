package report

import (
	"bytes"
	"encoding/json"
	"regexp"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"go.uber.org/goleak"

	"github.com/herdcache/herd"
	"github.com/herdcache/herd/cmd/herd/internal/sim"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// fixture is a hand-made report of a 10-second run with an outage from 4s
// to 6s, in buckets of a second.
func fixture() *sim.Report {
	c := sim.Defaults
	c.Duration, c.Outage = 10*time.Second, 2*time.Second
	r := &sim.Report{
		Config: c, Bucket: time.Second, PeakWindow: time.Second,
		OutageFrom: 4 * time.Second, OutageTo: 6 * time.Second, Elapsed: 10400 * time.Millisecond,
	}
	for i, k := range sim.AllSetups {
		s := sim.SetupReport{
			Kind: k, Requests: 64000, Errors: uint64(3-i) * 1001, OutageErrors: uint64(3-i) * 1000,
			Hits: uint64(i) * 20000, SourceCalls: 64000 / uint64(1+9*i), PeakCallsPerSec: 6400 / float64(1+i),
			P50: time.Duration(i+1) * time.Millisecond, P99: 900 * time.Millisecond, Max: time.Second,
		}
		if k == sim.Herd || k == sim.HerdSWR {
			s.HerdStats = &herd.Stats{Loads: s.SourceCalls, LoadTime: time.Second}
		}
		for b := range 10 {
			s.Timeline = append(s.Timeline, sim.Point{
				At: time.Duration(b) * time.Second, Requests: 6400, SourceCalls: s.SourceCalls / 10,
				P99: time.Duration(b+1) * time.Millisecond,
			})
		}
		s.Timeline[5].Requests = 0 // a gap in the p99 line
		r.Setups = append(r.Setups, s)
	}
	return r
}

func TestTable(t *testing.T) {
	var b bytes.Buffer
	if err := Table(&b, fixture()); err != nil {
		t.Fatal(err)
	}
	out := b.String()
	t.Log("\n" + out)
	for _, want := range []string{
		"64 clients × 100 req/s for 10s (64,000 requests per setup), 1,000 keys (Zipf 1.1), client timeout 1s",
		"source: 50ms median latency, 1% errors, down from 4s to 6s (calls hang 2s, then fail)",
		"herd (SWR+SIE): refresh after 5s, TTL 10s, stale-if-error 1h, load timeout 500ms",
		"setup           source calls  peak/s    p50    p99    max  errors  in outage  stale  hit ratio\n",
		"no cache              64,000   6,400  1.0ms  900ms  1.00s   3,003      3,000      0       0.0%\n",
		"load delivered: 100.0% of requests sent within 100ms of their time (generator lag p99 0,\nmax 0).\n" +
			"herd (SWR+SIE): 28× fewer source calls than no cache; 0 errors during the outage against\n3,000 without a cache.",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("the table has no line with %q", want)
		}
	}
	// The rows of the table line up.
	lines := strings.Split(out, "\n")
	var rows []string
	for i, l := range lines {
		if strings.HasPrefix(l, "setup ") {
			rows = lines[i : i+5]
		}
	}
	for _, row := range rows {
		if len([]rune(row)) != len([]rune(rows[0])) {
			t.Errorf("row %q is not as wide as the header %q", row, rows[0])
		}
	}
}

// A run where a herd setup failed most of its requests says so, and only
// that: no line sums up what herd saved.
func TestTableFailed(t *testing.T) {
	r := fixture()
	swr := &r.Setups[3]
	swr.Errors, swr.HerdStats.StoreErrors = 60000, 59000
	ttl := &r.Setups[2]
	ttl.Errors = 32001
	var b bytes.Buffer
	if err := Table(&b, r); err != nil {
		t.Fatal(err)
	}
	out := strings.ReplaceAll(b.String(), "\n", " ")
	want := " load delivered: 100.0% of requests sent within 100ms of their time (generator lag p99 0, max 0). " +
		"FAILED: herd (TTL) failed 50.0% of its requests (32,001 of 64,000); herd (SWR+SIE) failed 93.8% of its requests " +
		"(60,000 of 64,000); 59,000 store operations failed or timed out. "
	if !strings.HasSuffix(out, want) || strings.Contains(out, "fewer source calls") {
		t.Fatalf("the table ends\n%s\nwant\n%s", out[strings.LastIndex(out, "refresh time"):], want)
	}
	if v := r.Verdict(); len(v.Failing) != 2 {
		t.Fatalf("verdict %+v", v)
	}
}

// A run that the machine could not send on time says so plainly, and does
// not sum up what herd saved.
func TestTableBehind(t *testing.T) {
	r := fixture()
	for i := range r.Setups {
		s := &r.Setups[i]
		s.Requests, s.Late, s.NotSent = 63000, 1000, 1000
		s.LagP99, s.LagMax = 120*time.Millisecond, 900*time.Millisecond
	}
	var b bytes.Buffer
	if err := Table(&b, r); err != nil {
		t.Fatal(err)
	}
	out := strings.ReplaceAll(b.String(), "\n", " ")
	want := " LOAD NOT DELIVERED: this machine could not send the requests on time: up to 3.1% of a setup's requests were sent " +
		"more than 100ms late (4,000) or not at all (4,000), generator lag p99 120ms. Every setup's numbers suffer; " +
		"run fewer --clients or --instances, or on a quieter machine. "
	if !strings.HasSuffix(out, want) || strings.Contains(out, "fewer source calls") {
		t.Fatalf("the table ends\n%s\nwant\n%s", out[strings.LastIndex(out, "refresh time"):], want)
	}
}

func TestJSON(t *testing.T) {
	var b bytes.Buffer
	if err := JSON(&b, fixture()); err != nil {
		t.Fatal(err)
	}
	var got struct {
		Config struct {
			Store     string  `json:"store"`
			DurationS float64 `json:"duration_s"`
		} `json:"config"`
		OutageFromS float64 `json:"outage_from_s"`
		Verdict     struct {
			OK      bool     `json:"ok"`
			Failing []string `json:"failing"`
			Behind  []string `json:"behind"`
			Lines   []string `json:"lines"`
		} `json:"verdict"`
		Setups []struct {
			ID          string                  `json:"id"`
			SourceCalls uint64                  `json:"source_calls"`
			P99MS       float64                 `json:"p99_ms"`
			HitRatio    float64                 `json:"hit_ratio"`
			Herd        *struct{ Loads uint64 } `json:"herd_stats"`
			Timeline    []struct {
				AtS   float64 `json:"t_s"`
				P99MS float64 `json:"p99_ms"`
			} `json:"timeline"`
		} `json:"setups"`
	}
	if err := json.Unmarshal(b.Bytes(), &got); err != nil {
		t.Fatalf("%v in\n%s", err, b.String())
	}
	if got.Config.Store != "memory" || got.Config.DurationS != 10 || got.OutageFromS != 4 || len(got.Setups) != 4 {
		t.Fatalf("%+v", got)
	}
	ids := []string{"none", "plain-ttl", "herd", "herd-swr"}
	for i, s := range got.Setups {
		if s.ID != ids[i] || s.P99MS != 900 || len(s.Timeline) != 10 || s.Timeline[9].AtS != 9 || s.Timeline[9].P99MS != 10 {
			t.Errorf("setup %d: %+v", i, s)
		}
		if (s.Herd != nil) != (i >= 2) || (s.Herd != nil && s.Herd.Loads != s.SourceCalls) {
			t.Errorf("setup %s: herd stats %+v", s.ID, s.Herd)
		}
	}
	if v := got.Verdict; !v.OK || v.Failing == nil || len(v.Failing) != 0 || len(v.Behind) != 0 || len(v.Lines) != 2 {
		t.Errorf("verdict %+v", v)
	}
	if got.Setups[2].HitRatio != 0.625 {
		t.Errorf("hit ratio %v, want 0.625", got.Setups[2].HitRatio)
	}
}

// linePaths finds the lines of a page's charts: their path and their
// dash.
var linePaths = regexp.MustCompile(`<path d="([^"]*)" fill="none" stroke="[^"]*" stroke-width="1.8" stroke-linejoin="round"(?: stroke-dasharray="([^"]*)")?>`)

func TestHTML(t *testing.T) {
	var b bytes.Buffer
	r := fixture()
	r.Config.Command = "herd --duration 10s --html run.html"
	if err := HTML(&b, r); err != nil {
		t.Fatal(err)
	}
	page := b.String()
	for _, want := range []string{
		"<h2>Source calls per second</h2>", "<h2>Client latency, p99</h2>",
		`<rect x="419.2" y="28.0" width="173.6" height="246.0" fill="#f4cccc"`, // the outage, 4s to 6s of 10s
		"<td>herd (SWR&#43;SIE)</td>", "28× fewer source calls",
		`stroke="#2ca02c"`, `>10k</text>`, `>1s</text>`,
	} {
		if !strings.Contains(page, want) {
			t.Errorf("the page has no %q", want)
		}
	}
	if n := strings.Count(page, `role="img"`); n != 2 {
		t.Errorf("%d charts, want 2", n)
	}
	lines := linePaths.FindAllStringSubmatch(page, -1)
	if len(lines) != 8 {
		t.Fatalf("%d lines, want 8", len(lines))
	}
	// Each p99 line has a gap where a bucket had no request.
	gaps := 0
	for _, l := range lines {
		gaps += strings.Count(l[1], " M")
	}
	if gaps != 4 {
		t.Errorf("%d gaps in the p99 lines, want 4", gaps)
	}
	// The four p99 lines share every value: each is drawn apart from the
	// others, with a dash and markers of its own.
	starts, dashes := map[string]bool{}, map[string]bool{}
	for _, l := range lines[4:] {
		starts[strings.Fields(l[1])[0]] = true
		dashes[l[2]] = true
	}
	if len(starts) != 4 || len(dashes) != 4 {
		t.Errorf("the p99 lines of equal values start at %v with dashes %v: they hide each other", starts, dashes)
	}
	if n := strings.Count(page, `stroke="#fff" stroke-width="0.6"`); n != 4*2+4 {
		t.Errorf("%d marker paths, want one per line and one per legend key", n)
	}
	if !strings.Contains(page, "Made by <code>herd --duration 10s --html run.html</code>") {
		t.Error("the caption does not show the command line")
	}
	// Self-contained: nothing to fetch, nothing to run.
	for _, banned := range []string{"<script", "src=", "href=", "<link", "@import", "url("} {
		if strings.Contains(page, banned) {
			t.Errorf("the page contains %q", banned)
		}
	}
}

// A real run, in a bubble, renders in every form.
func TestRenderARun(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c := sim.Defaults
		c.Duration, c.Clients, c.Keys, c.Outage = 3*time.Second, 4, 20, time.Second
		r, err := sim.Run(t.Context(), c)
		if err != nil {
			t.Fatal(err)
		}
		for name, render := range map[string]func(*bytes.Buffer, *sim.Report) error{
			"table": func(b *bytes.Buffer, r *sim.Report) error { return Table(b, r) },
			"json":  func(b *bytes.Buffer, r *sim.Report) error { return JSON(b, r) },
			"html":  func(b *bytes.Buffer, r *sim.Report) error { return HTML(b, r) },
		} {
			var b bytes.Buffer
			if err := render(&b, r); err != nil || b.Len() == 0 {
				t.Errorf("%s: %v, %d bytes", name, err, b.Len())
			}
			if strings.Contains(b.String(), "NaN") || strings.Contains(b.String(), "Inf") {
				t.Errorf("%s: NaN or Inf in\n%s", name, b.String())
			}
		}
	})
}

func TestProgressBar(t *testing.T) {
	var b bytes.Buffer
	p := NewProgress(&b, true, 20*time.Second)
	p.Update(sim.Progress{Elapsed: 10 * time.Second, Duration: 20 * time.Second, Outage: true, Setups: []sim.SetupProgress{
		{Kind: sim.NoCache, SourceCalls: 64000},
		{Kind: sim.PlainTTL, SourceCalls: 9100},
		{Kind: sim.Herd, SourceCalls: 2000},
		{Kind: sim.HerdSWR, SourceCalls: 123456},
	}})
	line := strings.TrimSuffix(strings.TrimPrefix(b.String(), "\r"), "\x1b[K")
	if want := "[########--------]  10.0s/20s DOWN none 64.0k plain 9.1k herd 2.0k swr 123k"; line != want {
		t.Errorf("bar\n%q, want\n%q", line, want)
	}
	if n := len([]rune(line)); n >= 80 {
		t.Errorf("the bar is %d characters wide", n)
	}
	b.Reset()
	p.Done(20*time.Second + 340*time.Millisecond)
	if got := b.String(); got != "\r\x1b[Kran in 20.3s\n\n" {
		t.Errorf("Done wrote %q", got)
	}
}

func TestProgressLines(t *testing.T) {
	var b bytes.Buffer
	p := NewProgress(&b, false, 10*time.Second)
	for ms := 100; ms <= 10000; ms += 100 {
		el := time.Duration(ms) * time.Millisecond
		p.Update(sim.Progress{
			Elapsed: el, Duration: 10 * time.Second, Outage: el >= 4*time.Second && el < 6*time.Second,
			Setups: []sim.SetupProgress{{Kind: sim.NoCache, SourceCalls: uint64(ms) * 640}},
		})
	}
	p.Done(10 * time.Second)
	got := strings.Split(strings.TrimSpace(b.String()), "\n")
	if len(got) != 13 { // ten counts, the outage's start and end, the end
		t.Fatalf("%d lines:\n%s", len(got), b.String())
	}
	for _, want := range []string{
		"  1.0s/10s  source calls: none 640,000",
		"  4.0s/10s  the source is down",
		"  6.0s/10s  the source is back",
		" 10.0s/10s  source calls: none 6,400,000",
		"ran in 10s",
	} {
		if !strings.Contains(b.String(), want+"\n") {
			t.Errorf("no line %q in\n%s", want, b.String())
		}
	}
	if strings.ContainsAny(b.String(), "\r\x1b") {
		t.Error("control characters in plain lines")
	}
}

func TestWrap(t *testing.T) {
	for _, tc := range []struct {
		in    string
		width int
		want  string
	}{
		{"", 10, ""},
		{"one two three", 20, "one two three"},
		{"one two three", 7, "one two\nthree"},
		{"one  two\nthree", 8, "one two\nthree"},
		{"a verylongword b", 5, "a\nverylongword\nb"},
		{"µs µs µs", 5, "µs µs\nµs"},
	} {
		if got := wrap(tc.in, tc.width); got != tc.want {
			t.Errorf("wrap(%q, %d) = %q, want %q", tc.in, tc.width, got, tc.want)
		}
	}
}

func TestFormats(t *testing.T) {
	for _, tc := range []struct{ got, want string }{
		{count(0), "0"},
		{count(999), "999"},
		{count(1000), "1,000"},
		{count(1234567), "1,234,567"},
		{short(980), "980"},
		{short(12345), "12.3k"},
		{short(128000), "128k"},
		{short(1234567), "1.2M"},
		{decade(1), "1"},
		{decade(100), "100"},
		{decade(10000), "10k"},
		{decade(1000000), "1M"},
		{latency(0), "0"},
		{latency(500), "500ns"},
		{latency(3900), "3.9µs"},
		{latency(182 * time.Microsecond), "182µs"},
		{latency(1500 * time.Microsecond), "1.5ms"},
		{latency(998 * time.Millisecond), "998ms"},
		{latency(1070 * time.Millisecond), "1.07s"},
		{span(time.Hour), "1h"},
		{span(5 * time.Minute), "5m"},
		{span(90 * time.Second), "1m30s"},
		{span(7500 * time.Millisecond), "7.5s"},
		{span(500 * time.Millisecond), "500ms"},
		{span(10 * time.Microsecond), "10µs"},
		{percent(0.979), "97.9%"},
		{rate(0.01), "1%"},
		{rate(0.005), "0.5%"},
	} {
		if tc.got != tc.want {
			t.Errorf("got %q, want %q", tc.got, tc.want)
		}
	}
	for _, tc := range []struct{ in, want time.Duration }{
		{0, time.Millisecond},
		{time.Second, time.Second},
		{1500 * time.Millisecond, 2 * time.Second},
		{2500 * time.Millisecond, 5 * time.Second},
		{6 * time.Second, 10 * time.Second},
	} {
		if got := niceStep(tc.in); got != tc.want {
			t.Errorf("niceStep(%v) = %v, want %v", tc.in, got, tc.want)
		}
	}
	if a := newLogAxis(3, 6400, 1); a.lo != 1 || a.hi != 10000 {
		t.Errorf("axis %+v", a)
	}
	if a := newLogAxis(5, 5, 1); a.lo != 1 || a.hi != 10 {
		t.Errorf("axis of one value %+v", a)
	}
}
