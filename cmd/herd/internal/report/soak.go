package report

import (
	_ "embed"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"strconv"
	"strings"
	"time"

	"github.com/herdcache/herd/cmd/herd/internal/soak"
)

// soakColumns are the header of the resources table of a long run.
var soakColumns = []string{"resource", "start", "middle", "end", "rise, 2nd half", "per minute", "limit", "verdict"}

// soakLegend explains the resources table.
const soakLegend = "start, middle, end: the first sample, the one at the middle of the run and the last. " +
	"rise, 2nd half: how much the line fitted through the samples of the second half of the run rises over it; " +
	"per minute: its slope. limit: the rise a resource may show without counting as growing. " +
	"verdict: GROWING when the rise passes the limit in a steady climb (the last quarter of the run above " +
	"the first quarter of its second half), a leak or a resource still filling; flat otherwise."

// value formats a sample of resource r.
func value(r soak.Resource, v float64) string {
	if r == soak.HeapLive {
		return mib(v)
	}
	return count(uint64(math.Round(math.Abs(v))))
}

// signed formats a rise of resource r with its sign.
func signed(r soak.Resource, v float64) string {
	sign := "+"
	if v < 0 {
		sign = "-"
	}
	return sign + value(r, math.Abs(v))
}

// mib formats bytes in MiB with one decimal.
func mib(b float64) string {
	return strconv.FormatFloat(b/(1<<20), 'f', 1, 64) + " MiB"
}

func soakRow(t *soak.Trend) []string {
	if !t.Measured {
		return []string{t.Resource.String(), "–", "–", "–", "–", "–", "–", "not measured"}
	}
	row := []string{t.Resource.String(), value(t.Resource, float64(t.Start)), value(t.Resource, float64(t.Mid)), value(t.Resource, float64(t.End))}
	if !t.Judged {
		return append(row, "–", "–", "–", "too few samples")
	}
	verdict := "flat"
	if t.Growing {
		verdict = "GROWING"
	}
	return append(row, signed(t.Resource, t.Rise), signed(t.Resource, 60*t.PerSecond), value(t.Resource, t.LimitFloor), verdict)
}

// describeSoak is what a long run did, in lines, above its resources.
func describeSoak(r *soak.Result) string {
	n := len(r.Samples)
	return fmt.Sprintf("long run: herd (SWR+SIE) for %s, the process and the store sampled every %s (%s samples); "+
		"with an embedded store, the server runs in this process and counts too.",
		span(r.Config.Sim.Duration), span(r.Config.Sample), count(uint64(n)))
}

// SoakVerdict sums up a long run: whether any resource grew.
func SoakVerdict(r *soak.Result) []string {
	var lines []string
	if r.Interrupted {
		lines = append(lines, "INTERRUPTED: the run stopped before its end; the verdict covers only its start.")
	}
	if !r.Judged() {
		return append(lines, fmt.Sprintf("NOT JUDGED: the second half of the run holds fewer than %d samples; run longer or sample more often (--sample).", soak.MinJudged))
	}
	var grew []string
	for i := range r.Trends {
		t := &r.Trends[i]
		if t.Growing {
			grew = append(grew, fmt.Sprintf("%v rose by %s over the second half (%s a minute)", t.Resource, value(t.Resource, t.Rise), value(t.Resource, 60*t.PerSecond)))
		}
	}
	if len(grew) > 0 {
		return append(lines, "GROWING: "+strings.Join(grew, "; ")+
			". A leak, or a resource still filling: run longer, and see whether it levels off.")
	}
	return append(lines, fmt.Sprintf("no resource grew over the second half of the run (%s): no leak seen.", span(r.Config.Sim.Duration/2)))
}

// SoakTable writes a long run: the scenario and its setup's numbers, then
// the resources sampled and the verdict.
func SoakTable(w io.Writer, r *soak.Result) error {
	if err := Table(w, r.Report); err != nil {
		return err
	}
	rows := [][]string{soakColumns}
	for i := range r.Trends {
		rows = append(rows, soakRow(&r.Trends[i]))
	}
	if _, err := io.WriteString(w, "\n"); err != nil {
		return err
	}
	return writeTable(w, []string{wrap(describeSoak(r), lineWidth)}, rows, wrap(soakLegend, lineWidth), SoakVerdict(r))
}

type jsonSoak struct {
	Run      jsonReport   `json:"run"`
	SampleS  float64      `json:"sample_s"`
	Samples  []jsonSample `json:"samples"`
	Trends   []jsonTrend  `json:"trends"`
	Growing  []string     `json:"growing"`
	Judged   bool         `json:"judged"`
	Verdict  []string     `json:"verdict"`
	ElapsedS float64      `json:"elapsed_s"`
}

type jsonSample struct {
	AtS         float64 `json:"at_s"`
	HeapLive    int64   `json:"heap_live_bytes"`
	Goroutines  int64   `json:"goroutines"`
	OpenFiles   int64   `json:"open_files"`
	StoreKeys   int64   `json:"store_keys"`
	Requests    uint64  `json:"requests"`
	Errors      uint64  `json:"errors"`
	SourceCalls uint64  `json:"source_calls"`
}

type jsonTrend struct {
	Resource  string  `json:"resource"`
	Measured  bool    `json:"measured"`
	Judged    bool    `json:"judged"`
	Start     int64   `json:"start"`
	Mid       int64   `json:"mid"`
	End       int64   `json:"end"`
	Level     float64 `json:"level"`
	PerSecond float64 `json:"per_second"`
	Rise      float64 `json:"rise"`
	Limit     float64 `json:"limit"`
	Growing   bool    `json:"growing"`
}

// SoakJSON writes a long run as one indented JSON document.
func SoakJSON(w io.Writer, r *soak.Result) error {
	out := jsonSoak{
		Run: jsonOf(r.Report), SampleS: r.Config.Sample.Seconds(), Judged: r.Judged(),
		Verdict: SoakVerdict(r), ElapsedS: r.Elapsed.Seconds(), Growing: []string{},
		Samples: make([]jsonSample, 0, len(r.Samples)),
	}
	for _, s := range r.Samples {
		out.Samples = append(out.Samples, jsonSample{
			AtS: s.At.Seconds(), HeapLive: s.HeapLive, Goroutines: s.Goroutines, OpenFiles: s.OpenFiles,
			StoreKeys: s.StoreKeys, Requests: s.Requests, Errors: s.Errors, SourceCalls: s.SourceCalls,
		})
	}
	for _, t := range r.Trends {
		out.Trends = append(out.Trends, jsonTrend{
			Resource: t.Resource.String(), Measured: t.Measured, Judged: t.Judged, Start: t.Start, Mid: t.Mid, End: t.End,
			Level: t.Level, PerSecond: t.PerSecond, Rise: t.Rise, Limit: t.LimitFloor, Growing: t.Growing,
		})
		if t.Growing {
			out.Growing = append(out.Growing, t.Resource.String())
		}
	}
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(out)
}

//go:embed soak.html.tmpl
var soakPageSource string

var soakPage = newPage("soak", soakPageSource)

// Colours of a resource's samples and of the line fitted through them.
const (
	colorSamples = "#1f77b4"
	colorFit     = "#d62728"
)

// soakChart charts the samples of one resource, and the line fitted
// through those of the second half.
func soakChart(r *soak.Result, t *soak.Trend) *chart {
	d := r.Config.Sim.Duration
	unit, scale := "", 1.0
	if t.Resource == soak.HeapLive {
		unit, scale = " (MiB)", 1<<20
	}
	verdict := "flat over the second half"
	switch {
	case !t.Judged:
		verdict = "not judged: too few samples"
	case t.Growing:
		verdict = "GROWING over the second half"
	}
	c := newChart(d, 0, 0, strings.ToUpper(t.Resource.String()[:1])+t.Resource.String()[1:]+unit+": "+verdict,
		"Every "+span(r.Config.Sample)+"; the red line is fitted through the samples of the second half.")
	c.H, c.Y1 = 212, 174
	var ts []time.Duration
	var vs []float64
	hi := 0.0
	for i := range r.Samples {
		v := t.Resource.Of(&r.Samples[i])
		ts = append(ts, r.Samples[i].At)
		if v < 0 {
			vs = append(vs, math.NaN())
			continue
		}
		vs = append(vs, float64(v)/scale)
		hi = max(hi, float64(v)/scale)
	}
	if t.Judged {
		hi = max(hi, t.FitAtFrom/scale, t.FitAtTo/scale)
	}
	a := newLinAxis(hi)
	c.yTicks(a, func(v float64) string { return strconv.FormatFloat(v, 'f', -1, 64) })
	c.addSeries(t.Resource.String(), look{colorSamples, "", circle}, a, 0, 1, ts, vs)
	c.Series[0].Markers = "" // a sample every few pixels: the line says it all
	if t.Judged {
		c.addSeries("fitted over the second half", look{colorFit, "6 3", square}, a, 0, 1,
			[]time.Duration{t.FitFrom, t.FitTo}, []float64{t.FitAtFrom / scale, t.FitAtTo / scale})
		c.Series[1].Markers = ""
	}
	return c
}

// SoakHTML writes one self-contained page of a long run: the scenario, its
// setup's numbers, the resources table, the verdict, and a chart of each
// resource over the run. It loads nothing from anywhere.
func SoakHTML(w io.Writer, r *soak.Result) error {
	rep := r.Report
	d := struct {
		Title       string
		Scenario    []string
		Interrupted bool
		Elapsed     string
		Command     string
		Header      []string
		Rows        [][]string
		Legend      string
		RunVerdict  []string
		Soak        string
		SoakHeader  []string
		SoakRows    [][]string
		SoakLegend  string
		Verdict     []string
		Charts      []*chart
	}{
		Title:       "herd: a long run of " + span(rep.Config.Duration),
		Scenario:    describe(rep),
		Interrupted: r.Interrupted,
		Elapsed:     span(r.Elapsed.Round(100 * time.Millisecond)),
		Command:     commandOf(rep.Config.Command),
		Header:      columns,
		Legend:      legend,
		RunVerdict:  Verdict(rep),
		Soak:        describeSoak(r),
		SoakHeader:  soakColumns,
		SoakLegend:  soakLegend,
		Verdict:     SoakVerdict(r),
	}
	for i := range rep.Setups {
		d.Rows = append(d.Rows, row(&rep.Setups[i]))
	}
	for i := range r.Trends {
		d.SoakRows = append(d.SoakRows, soakRow(&r.Trends[i]))
		if r.Trends[i].Measured {
			d.Charts = append(d.Charts, soakChart(r, &r.Trends[i]))
		}
	}
	return soakPage.Execute(w, d)
}
