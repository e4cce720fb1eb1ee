package report

import (
	_ "embed"
	"html/template"
	"io"
	"strconv"
	"time"

	"github.com/herdcache/herd/cmd/herd/internal/sim"
)

//go:embed charts.html.tmpl
var chartsSource string

//go:embed report.html.tmpl
var pageSource string

// newPage parses the template of a page, src, with the templates that every
// page shares: the style, the line and bar charts, the legend.
func newPage(name, src string) *template.Template {
	t := template.New(name).Funcs(template.FuncMap{
		"f": func(v float64) string { return strconv.FormatFloat(v, 'f', 1, 64) },
	})
	return template.Must(template.Must(t.Parse(chartsSource)).Parse(src))
}

var page = newPage("report", pageSource)

type pageData struct {
	Title       string
	Scenario    []string
	Interrupted bool
	Elapsed     string
	Command     string
	Keys        []series
	Header      []string
	Legend      string
	Rows        [][]string
	Verdict     []string
	Charts      []*chart

	StoreOutage     *outageSection // nil without a store outage phase
	StoreOutageNote string         // why the phase did not run, if it is worth saying
}

// HTML writes one self-contained page: the scenario, the table, and charts
// over time of the source calls per second and the client p99 of every
// setup, the outage shaded, with the command line that ran it. It loads
// nothing from anywhere: the charts are inline SVG and the page has no
// script.
func HTML(w io.Writer, r *sim.Report) error {
	return page.Execute(w, pageOf(r))
}

// pageOf is the page of r, without a store outage phase.
func pageOf(r *sim.Report) pageData {
	d := pageData{
		Title:       "herd: " + strconv.Itoa(r.Config.Clients) + " clients, " + span(r.Config.Duration) + ", outage " + span(r.Config.Outage),
		Scenario:    describe(r),
		Interrupted: r.Interrupted,
		Elapsed:     span(r.Elapsed.Round(100 * time.Millisecond)),
		Command:     commandOf(r.Config.Command),
		Keys:        legendOfSetups(r),
		Header:      columns,
		Legend:      legend,
		Verdict:     Verdict(r),
		Charts:      []*chart{callsChart(r), latencyChart(r)},
	}
	for i := range r.Setups {
		d.Rows = append(d.Rows, row(&r.Setups[i]))
	}
	return d
}

// commandOf is the command line a page shows: the one given, or the plain
// command when none was.
func commandOf(command string) string {
	if command == "" {
		return "herd"
	}
	return command
}
