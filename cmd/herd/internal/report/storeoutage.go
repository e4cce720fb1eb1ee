package report

import (
	"encoding/json"
	"fmt"
	"io"
	"math"
	"time"

	"github.com/herdcache/herd/cmd/herd/internal/proxy"
	"github.com/herdcache/herd/cmd/herd/internal/sim"
	"github.com/herdcache/herd/cmd/herd/internal/storeoutage"
)

// A Run is what the default scenario measured: the run of its setups, and
// the store outage phase that followed it over a --store server.
type Run struct {
	Sim *sim.Report
	// StoreOutage is the store outage phase; nil when it did not run.
	StoreOutage *storeoutage.Result
	// StoreOutageNote says why the phase did not run, when that is worth
	// saying (on the memory store); "" otherwise.
	StoreOutageNote string
}

// RunTable writes the run's table, then the store outage phase's, or the
// note that says why it did not run.
func RunTable(w io.Writer, r *Run) error {
	if err := Table(w, r.Sim); err != nil {
		return err
	}
	switch {
	case r.StoreOutage != nil:
		if _, err := io.WriteString(w, "\n"); err != nil {
			return err
		}
		return StoreOutageTable(w, r.StoreOutage)
	case r.StoreOutageNote != "":
		_, err := io.WriteString(w, "\n"+wrap(r.StoreOutageNote, lineWidth)+"\n")
		return err
	}
	return nil
}

// outageColumns are the header of the store outage table.
var outageColumns = []string{"window", "Gets", "p50", "p99", "max", "errors", "from store", "loaded", "slow", "loads", "store skipped", "store errors"}

// outageLegend explains the store outage table's columns; its verbs are
// the StoreTimeout and the slow Gets' threshold.
const outageLegend = "A Get counts in the window it was sent in: cut, until marked down, if the cache it went " +
	"through had not yet marked its store down. p50, p99, max: Get latency. errors: Gets that failed or " +
	"timed out. from store: Gets answered from the store; loaded: answered by a load. slow: Gets that " +
	"took more than the load and half a StoreTimeout (%s): those that waited on the store. loads, store " +
	"skipped, store errors: the caches' loader calls, store calls not made because the store was marked " +
	"down, and store calls that failed, in the window."

// describeOutage is the store outage phase of r in lines.
func describeOutage(r *storeoutage.Result) []string {
	c := &r.Config
	caches := "1 herd cache"
	if c.Instances > 1 {
		caches = fmt.Sprintf("%d herd caches", c.Instances)
	}
	how := "hangs: the proxy in front of it takes connections and holds every byte, as a stopped server or a partition does"
	if c.Fault == proxy.Refuse {
		how = "refuses connections: the proxy in front of it closes them and refuses new ones, as when the server has exited"
	}
	return []string{
		fmt.Sprintf("store outage: %d clients × %s Gets/s through %s with a lock (TTL %s) over %s; Get deadline %s",
			c.Clients, perSecond(c.Interval), caches, span(c.TTL), c.StoreName, span(c.Timeout)),
		fmt.Sprintf("client: %s; herd at its defaults: StoreTimeout %s, StoreBackoff 100ms doubling to 10s; the loader takes %s",
			c.Client, span(r.StoreTimeout), span(c.Latency)),
		fmt.Sprintf("the server %s, from %s to %s", how, span(r.CutAt.Round(time.Millisecond)), span(r.RestoredAt.Round(time.Millisecond))),
	}
}

func perSecond(every time.Duration) string {
	if every <= 0 {
		return "0"
	}
	return count(uint64(math.Round(float64(time.Second) / float64(every))))
}

func outageRow(w *storeoutage.Window) []string {
	return []string{
		w.Name, count(w.Gets), latency(w.P50), latency(w.P99), latency(w.Max), count(w.Errors),
		count(w.FromStore), count(w.Loaded), count(w.SlowGets), count(w.Loads), count(w.StoreSkipped), count(w.StoreErrors),
	}
}

// boundSlack is what a Get before the mark may take past one StoreTimeout
// and the slowest load, for the machine's scheduling, and still be within
// the bound.
func boundSlack(r *storeoutage.Result) time.Duration { return r.StoreTimeout / 10 }

// StoreOutageVerdict sums up a store outage phase in lines: when the caches
// marked the store down and up, what the Gets paid before and after the
// mark, and whether the first callers paid at most one StoreTimeout.
func StoreOutageVerdict(r *storeoutage.Result) []string {
	var lines []string
	if r.Interrupted {
		lines = append(lines, "INTERRUPTED: the phase stopped before its end; these numbers cover only its start.")
	}
	if r.CutAt == 0 {
		return lines
	}
	var downAfter, upAfter []time.Duration
	for _, d := range r.Downs {
		if d >= r.CutAt {
			downAfter = append(downAfter, d-r.CutAt)
		}
	}
	for _, u := range r.Ups {
		if u >= r.RestoredAt {
			upAfter = append(upAfter, u-r.RestoredAt)
		}
	}
	marks := fmt.Sprintf("the store was marked down %s and up %s (Stats.StoreDowns, StoreUps)", times(r.Stats.StoreDowns), times(r.Stats.StoreUps))
	if len(downAfter) > 0 {
		marks += fmt.Sprintf("; first marked down %s after the cut", latency(downAfter[0]))
	} else {
		marks += "; never marked down during the outage"
	}
	if len(upAfter) > 0 {
		marks += fmt.Sprintf(", up again %s after the server came back", latency(upAfter[0]))
		if len(upAfter) > 1 {
			marks += fmt.Sprintf(" (the last cache %s after)", latency(upAfter[len(upAfter)-1]))
		}
	} else if len(downAfter) > 0 {
		marks += ", and not marked up again before the phase ended"
	}
	lines = append(lines, marks+".")

	before, _ := r.Window(storeoutage.CutNotDown)
	down, _ := r.Window(storeoutage.CutDown)
	loadMax := max(before.LoadMax, down.LoadMax)
	if before.Gets > 0 {
		bound := r.StoreTimeout + loadMax + boundSlack(r)
		verdict := fmt.Sprintf("the first callers paid at most one StoreTimeout: the slowest took %s, within one StoreTimeout (%s) and the slowest load (%s)",
			latency(before.Max), span(r.StoreTimeout), latency(loadMax))
		if before.Max > bound {
			verdict = fmt.Sprintf("FIRST CALLERS PAID MORE THAN ONE StoreTimeout: the slowest took %s, past one StoreTimeout (%s) and the slowest load (%s): "+
				"a store call outlived its StoreTimeout, which the store's client did not end at its context's deadline",
				latency(before.Max), span(r.StoreTimeout), latency(loadMax))
		}
		lines = append(lines, fmt.Sprintf("Before the mark, %s waited on the store (p50 %s); %s.",
			gets(before.SlowGets), latency(before.P50), verdict))
	}
	if down.Gets > 0 {
		lines = append(lines, fmt.Sprintf(
			"Once marked down, Gets took p50 %s, p99 %s, the loader's time (%s, at most %s): %s store calls skipped; %s slower (those that carried a probe, or were under way at the mark).",
			latency(down.P50), latency(down.P99), span(r.Config.Latency), latency(down.LoadMax), count(down.StoreSkipped), gets(down.SlowGets)))
	}
	if back, ok := r.Window(storeoutage.StoreBack); ok && back.Gets > 0 {
		lines = append(lines, fmt.Sprintf("After the server came back: %s of the Gets answered from the store, p50 %s, %s errors.",
			percent(float64(back.FromStore)/float64(back.Gets)), latency(back.P50), count(back.Errors)))
	}
	return lines
}

// gets is "1 Get" or "n Gets".
func gets(n uint64) string {
	if n == 1 {
		return "1 Get"
	}
	return count(n) + " Gets"
}

// times is "once", "twice" or "n times".
func times(n uint64) string {
	switch n {
	case 1:
		return "once"
	case 2:
		return "twice"
	}
	return count(n) + " times"
}

// StoreOutageTable writes the store outage phase: what it ran, a table of
// its windows, and the lines that sum it up.
func StoreOutageTable(w io.Writer, r *storeoutage.Result) error {
	rows := [][]string{outageColumns}
	for i := range r.Windows {
		rows = append(rows, outageRow(&r.Windows[i]))
	}
	return writeTable(w, describeOutage(r), rows, wrap(fmt.Sprintf(outageLegend, span(r.StoreTimeout/2)), lineWidth), StoreOutageVerdict(r))
}

// outageLatencyChart charts the p50, p99 and max Get latency of the phase
// over time, the outage shaded.
func outageLatencyChart(r *storeoutage.Result) *chart {
	end := time.Duration(len(r.Timeline)) * r.Bucket
	c := newChart(end, r.CutAt, r.RestoredAt, "Get latency through the store outage",
		"p50, p99 and max of the Gets sent in each "+span(r.Bucket)+" of the phase; log scale."+sharedNote)
	lo, hi := math.Inf(1), 0.0
	for _, p := range r.Timeline {
		if p.Gets > 0 && p.P50 > 0 {
			lo, hi = min(lo, float64(p.P50)), max(hi, float64(p.Max))
		}
	}
	if hi == 0 {
		lo, hi = float64(time.Millisecond), float64(time.Millisecond)
	}
	a := newLogAxis(lo, hi, float64(time.Microsecond))
	c.yTicks(a, func(v float64) string { return span(time.Duration(v + 0.5)) })
	lines := []struct {
		name string
		l    look
		of   func(p *storeoutage.Point) time.Duration
	}{
		{"p50", look{"#2ca02c", "", circle}, func(p *storeoutage.Point) time.Duration { return p.P50 }},
		{"p99", look{"#1f77b4", "8 4", square}, func(p *storeoutage.Point) time.Duration { return p.P99 }},
		{"max", look{"#d62728", "2 3", triangle}, func(p *storeoutage.Point) time.Duration { return p.Max }},
	}
	for i, s := range lines {
		ts, vs := make([]time.Duration, len(r.Timeline)), make([]float64, len(r.Timeline))
		for j := range r.Timeline {
			p := &r.Timeline[j]
			ts[j] = p.At + r.Bucket/2
			vs[j] = math.NaN()
			if p.Gets > 0 {
				vs[j] = float64(s.of(p))
			}
		}
		c.addSeries(s.name, s.l, a, i, len(lines), ts, vs)
	}
	return c
}

// outageCallsChart charts, per second, the Gets answered from the store,
// the loads and the store calls skipped, the outage shaded.
func outageCallsChart(r *storeoutage.Result) *chart {
	end := time.Duration(len(r.Timeline)) * r.Bucket
	c := newChart(end, r.CutAt, r.RestoredAt, "From the store, from the loader, store calls skipped",
		"Gets answered from the store, loader calls and store calls skipped (the store marked down), in each "+span(r.Bucket)+
			" of the phase, per second; log scale, below 1 drawn at 1."+sharedNote)
	peak := 1.0
	per := func(n uint64) float64 { return float64(n) / r.Bucket.Seconds() }
	for _, p := range r.Timeline {
		peak = max(peak, per(p.FromStore), per(p.Loads), per(p.StoreSkipped))
	}
	a := newLogAxis(1, peak, 1)
	c.yTicks(a, func(v float64) string { return decade(uint64(v + 0.5)) })
	lines := []struct {
		name string
		l    look
		of   func(p *storeoutage.Point) uint64
	}{
		{"from the store", look{"#2ca02c", "", circle}, func(p *storeoutage.Point) uint64 { return p.FromStore }},
		{"loads", look{"#ff7f0e", "8 4", square}, func(p *storeoutage.Point) uint64 { return p.Loads }},
		{"store calls skipped", look{"#7f7f7f", "2 3", diamond}, func(p *storeoutage.Point) uint64 { return p.StoreSkipped }},
	}
	for i, s := range lines {
		ts, vs := make([]time.Duration, len(r.Timeline)), make([]float64, len(r.Timeline))
		for j := range r.Timeline {
			p := &r.Timeline[j]
			ts[j] = p.At + r.Bucket/2
			vs[j] = per(s.of(p))
		}
		c.addSeries(s.name, s.l, a, i, len(lines), ts, vs)
	}
	return c
}

// An outageSection is the store outage phase on the page.
type outageSection struct {
	Scenario []string
	Header   []string
	Rows     [][]string
	Legend   string
	Verdict  []string
	Charts   []*chart
}

func outageSectionOf(r *storeoutage.Result) *outageSection {
	s := &outageSection{
		Scenario: describeOutage(r),
		Header:   outageColumns,
		Legend:   fmt.Sprintf(outageLegend, span(r.StoreTimeout/2)),
		Verdict:  StoreOutageVerdict(r),
		Charts:   []*chart{outageLatencyChart(r), outageCallsChart(r)},
	}
	for i := range r.Windows {
		s.Rows = append(s.Rows, outageRow(&r.Windows[i]))
	}
	return s
}

// The store outage phase in JSON. Times from the start of the phase are in
// seconds (_s), latencies in milliseconds (_ms).
type jsonOutage struct {
	Store        string             `json:"store"`
	Client       string             `json:"client"`
	Fault        string             `json:"fault"`
	Clients      int                `json:"clients"`
	Instances    int                `json:"instances"`
	LatencyS     float64            `json:"loader_latency_s"`
	TimeoutS     float64            `json:"get_timeout_s"`
	StoreTimeout float64            `json:"store_timeout_s"`
	CutS         float64            `json:"cut_s"`
	RestoredS    float64            `json:"restored_s"`
	DownsS       []float64          `json:"store_down_s"`
	UpsS         []float64          `json:"store_up_s"`
	Windows      []jsonOutageWindow `json:"windows"`
	StoreSkipped uint64             `json:"store_skipped"`
	StoreDowns   uint64             `json:"store_downs"`
	StoreUps     uint64             `json:"store_ups"`
	StoreErrors  uint64             `json:"store_errors"`
	Verdict      []string           `json:"verdict"`
	Interrupted  bool               `json:"interrupted"`
	ElapsedS     float64            `json:"elapsed_s"`
}

type jsonOutageWindow struct {
	Name         string  `json:"name"`
	Gets         uint64  `json:"gets"`
	Errors       uint64  `json:"errors"`
	FromStore    uint64  `json:"from_store"`
	Loaded       uint64  `json:"loaded"`
	SlowGets     uint64  `json:"slow_gets"`
	P50MS        float64 `json:"p50_ms"`
	P99MS        float64 `json:"p99_ms"`
	MaxMS        float64 `json:"max_ms"`
	Loads        uint64  `json:"loads"`
	LoadMaxMS    float64 `json:"load_max_ms"`
	StoreSkipped uint64  `json:"store_skipped"`
	StoreErrors  uint64  `json:"store_errors"`
}

func seconds(ds []time.Duration) []float64 {
	out := make([]float64, len(ds))
	for i, d := range ds {
		out[i] = d.Seconds()
	}
	return out
}

func jsonOutageOf(r *storeoutage.Result) *jsonOutage {
	c := &r.Config
	out := &jsonOutage{
		Store: c.StoreName, Client: c.Client, Fault: c.Fault.String(), Clients: c.Clients, Instances: c.Instances,
		LatencyS: c.Latency.Seconds(), TimeoutS: c.Timeout.Seconds(), StoreTimeout: r.StoreTimeout.Seconds(),
		CutS: r.CutAt.Seconds(), RestoredS: r.RestoredAt.Seconds(), DownsS: seconds(r.Downs), UpsS: seconds(r.Ups),
		StoreSkipped: r.Stats.StoreSkipped, StoreDowns: r.Stats.StoreDowns, StoreUps: r.Stats.StoreUps,
		StoreErrors: r.Stats.StoreErrors, Verdict: StoreOutageVerdict(r), Interrupted: r.Interrupted,
		ElapsedS: r.Elapsed.Seconds(),
	}
	for _, w := range r.Windows {
		out.Windows = append(out.Windows, jsonOutageWindow{
			Name: w.Name, Gets: w.Gets, Errors: w.Errors, FromStore: w.FromStore, Loaded: w.Loaded, SlowGets: w.SlowGets,
			P50MS: ms(w.P50), P99MS: ms(w.P99), MaxMS: ms(w.Max), Loads: w.Loads, LoadMaxMS: ms(w.LoadMax),
			StoreSkipped: w.StoreSkipped, StoreErrors: w.StoreErrors,
		})
	}
	return out
}

// jsonRun is the JSON document of a Run: the run's, with the store outage
// phase, or the note that says why it did not run.
type jsonRun struct {
	jsonReport
	StoreOutage     *jsonOutage `json:"store_outage,omitempty"`
	StoreOutageNote string      `json:"store_outage_note,omitempty"`
}

// RunJSON writes r as one indented JSON document: the run's, as [JSON]
// writes it, with the store outage phase under store_outage.
func RunJSON(w io.Writer, r *Run) error {
	out := jsonRun{jsonReport: jsonOf(r.Sim), StoreOutageNote: r.StoreOutageNote}
	if r.StoreOutage != nil {
		out.StoreOutage = jsonOutageOf(r.StoreOutage)
	}
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(out)
}

// RunHTML writes the run's page, as [HTML] does, with a section for the
// store outage phase: its table, the lines that sum it up, and charts of
// the Get latency and of where the answers came from, over the phase.
func RunHTML(w io.Writer, r *Run) error {
	d := pageOf(r.Sim)
	if r.StoreOutage != nil {
		d.StoreOutage = outageSectionOf(r.StoreOutage)
	}
	d.StoreOutageNote = r.StoreOutageNote
	return page.Execute(w, d)
}
