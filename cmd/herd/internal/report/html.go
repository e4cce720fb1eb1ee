package report

import (
	_ "embed"
	"html/template"
	"io"
	"strconv"
	"time"

	"github.com/herdcache/herd/cmd/herd/internal/sim"
)

//go:embed report.html.tmpl
var pageSource string

var page = template.Must(template.New("report").Funcs(template.FuncMap{
	"f": func(v float64) string { return strconv.FormatFloat(v, 'f', 1, 64) },
}).Parse(pageSource))

type pageData struct {
	Title       string
	Scenario    []string
	Interrupted bool
	Elapsed     string
	Colors      []series
	Header      []string
	Legend      string
	Rows        [][]string
	Verdict     []string
	Charts      []*chart
}

// HTML writes one self-contained page: the scenario, the table, and charts
// over time of the source calls per second and the client p99 of every
// setup, the outage shaded. It loads nothing from anywhere: the charts are
// inline SVG and the page has no script.
func HTML(w io.Writer, r *sim.Report) error {
	d := pageData{
		Title:       "herd: " + strconv.Itoa(r.Config.Clients) + " clients, " + span(r.Config.Duration) + ", outage " + span(r.Config.Outage),
		Scenario:    describe(r),
		Interrupted: r.Interrupted,
		Elapsed:     span(r.Elapsed.Round(100 * time.Millisecond)),
		Header:      columns,
		Legend:      legend,
		Verdict:     Verdict(r),
		Charts:      []*chart{callsChart(r), latencyChart(r)},
	}
	for i := range r.Setups {
		s := &r.Setups[i]
		d.Colors = append(d.Colors, series{Name: s.Kind.String(), Color: colorOf(s.Kind)})
		d.Rows = append(d.Rows, row(s))
	}
	return page.Execute(w, d)
}
