package report

import (
	"math"
	"strconv"
	"strings"
	"time"

	"github.com/herdcache/herd/cmd/herd/internal/sim"
)

// A chart is a line chart over the time of a run, ready for the page's SVG
// template: every coordinate is in pixels.
//
// Lines that share a value would hide each other, so each line of a chart
// is drawn a little above or below its true place (at most [spread] pixels
// apart from the next), with a dash pattern and a marker of its own, its
// markers staggered along the time axis.
type chart struct {
	Title, Caption string
	W, H           float64 // the whole SVG
	X0, X1, Y0, Y1 float64 // the plot area: left, right, top, bottom
	XTicks, YTicks []tick
	Outage         *band // nil without an outage
	Series         []series

	duration time.Duration // of the x axis
}

// PlotW is the width of the plot area.
func (c *chart) PlotW() float64 { return c.X1 - c.X0 }

// PlotH is the height of the plot area.
func (c *chart) PlotH() float64 { return c.Y1 - c.Y0 }

type tick struct {
	Pos   float64
	Label string
}

type band struct{ X, W float64 }

// A series is one line of a chart, and how to tell it from the others.
type series struct {
	Name, Color string
	Dash        string // an SVG stroke-dasharray; "" for a solid line
	Path        string // an SVG path: M x,y L x,y …
	Markers     string // an SVG path of the markers along the line
	Key         string // an SVG path of the marker in the legend's 34×12 box
}

// spread is how far apart, in pixels, lines of the same value are drawn.
const spread = 2.0

// A look is how a line is drawn: its colour, its dash and its marker.
type look struct {
	color, dash string
	marker      func(x, y float64) string
}

// looks of the setups, the same on every chart of a run.
var looks = map[sim.Kind]look{
	sim.NoCache:  {"#d62728", "", circle},
	sim.PlainTTL: {"#ff7f0e", "8 4", square},
	sim.Herd:     {"#1f77b4", "2 3", triangle},
	sim.HerdSWR:  {"#2ca02c", "10 3 2 3", diamond},
}

func lookOf(k sim.Kind) look {
	if l, ok := looks[k]; ok {
		return l
	}
	return look{"#7f7f7f", "", circle}
}

// markerSize is the half-width of a marker, in pixels.
const markerSize = 3.0

func circle(x, y float64) string {
	r := markerSize
	return "M" + xy(x-r, y) + " a" + num(r) + "," + num(r) + " 0 1,0 " + num(2*r) + ",0 a" +
		num(r) + "," + num(r) + " 0 1,0 " + num(-2*r) + ",0Z"
}

func square(x, y float64) string {
	r := markerSize * 0.9
	return "M" + xy(x-r, y-r) + " L" + xy(x+r, y-r) + " L" + xy(x+r, y+r) + " L" + xy(x-r, y+r) + "Z"
}

func triangle(x, y float64) string {
	r := markerSize * 1.1
	return "M" + xy(x, y-r) + " L" + xy(x+r, y+r*0.8) + " L" + xy(x-r, y+r*0.8) + "Z"
}

func diamond(x, y float64) string {
	r := markerSize * 1.2
	return "M" + xy(x, y-r) + " L" + xy(x+r, y) + " L" + xy(x, y+r) + " L" + xy(x-r, y) + "Z"
}

func num(v float64) string { return strconv.FormatFloat(v, 'f', 1, 64) }

func xy(x, y float64) string { return num(x) + "," + num(y) }

// newChart lays out an empty chart over d, with the outage from..to shaded
// when to > from.
func newChart(d, from, to time.Duration, title, caption string) *chart {
	c := &chart{Title: title, Caption: caption, W: 960, H: 312, X0: 72, X1: 940, Y0: 28, Y1: 274, duration: d}
	step := niceStep(d / 10)
	for t := time.Duration(0); t <= d; t += step {
		c.XTicks = append(c.XTicks, tick{Pos: c.x(t), Label: span(t)})
	}
	if to > from {
		x := c.x(from)
		c.Outage = &band{X: x, W: c.x(to) - x}
	}
	return c
}

// niceStep rounds d up to 1, 2 or 5 times a power of ten of a millisecond.
func niceStep(d time.Duration) time.Duration {
	step := time.Millisecond
	for {
		for _, m := range []time.Duration{1, 2, 5} {
			if m*step >= d {
				return m * step
			}
		}
		step *= 10
	}
}

func (c *chart) x(t time.Duration) float64 {
	if c.duration <= 0 {
		return c.X0
	}
	return c.X0 + (c.X1-c.X0)*min(t.Seconds()/c.duration.Seconds(), 1)
}

// An axis maps a value to its place on the y axis, 0 at the bottom and 1 at
// the top, and lists its ticks.
type axis interface {
	frac(v float64) float64
	ticks() []float64
}

// logAxis is a y axis from lo to hi, both powers of ten.
type logAxis struct{ lo, hi float64 }

// newLogAxis returns the smallest axis of whole decades holding every value
// in [lo, hi], with lo at least floor.
func newLogAxis(lo, hi, floor float64) logAxis {
	lo = math.Pow(10, math.Floor(math.Log10(max(lo, floor))))
	hi = math.Pow(10, math.Ceil(math.Log10(max(hi, floor))))
	if hi <= lo {
		hi = lo * 10
	}
	return logAxis{lo, hi}
}

func (a logAxis) frac(v float64) float64 {
	v = min(max(v, a.lo), a.hi)
	return (math.Log10(v) - math.Log10(a.lo)) / (math.Log10(a.hi) - math.Log10(a.lo))
}

func (a logAxis) ticks() []float64 {
	var ts []float64
	for v := a.lo; v <= a.hi*1.001; v *= 10 {
		ts = append(ts, v)
	}
	return ts
}

// linAxis is a y axis from 0 to hi, in steps of step.
type linAxis struct{ hi, step float64 }

// newLinAxis returns an axis from 0 to at least hi, in four to ten steps of
// 1, 2 or 5 times a power of ten.
func newLinAxis(hi float64) linAxis {
	if hi <= 0 || math.IsNaN(hi) || math.IsInf(hi, 0) {
		return linAxis{1, 0.2}
	}
	step := math.Pow(10, math.Floor(math.Log10(hi/4)))
	for _, m := range []float64{1, 2, 5, 10} {
		if hi/(m*step) <= 8 {
			step *= m
			break
		}
	}
	return linAxis{math.Ceil(hi/step-1e-9) * step, step}
}

func (a linAxis) frac(v float64) float64 { return min(max(v, 0), a.hi) / a.hi }

func (a linAxis) ticks() []float64 {
	var ts []float64
	for i := 0.0; i*a.step <= a.hi*1.0001; i++ {
		ts = append(ts, i*a.step)
	}
	return ts
}

func (c *chart) y(a axis, v float64) float64 {
	return c.Y1 - (c.Y1-c.Y0)*a.frac(v)
}

func (c *chart) yTicks(a axis, label func(float64) string) {
	for _, v := range a.ticks() {
		c.YTicks = append(c.YTicks, tick{Pos: c.y(a, v), Label: label(v)})
	}
}

// markEvery is how many points apart a line's markers are.
const markEvery = 8

// addSeries adds the line of the points (t, v) to the chart, the i-th of n,
// in look l; a NaN value breaks the line.
func (c *chart) addSeries(name string, l look, a axis, i, n int, ts []time.Duration, vs []float64) {
	dy := (float64(i) - float64(n-1)/2) * spread
	var path, marks strings.Builder
	move := true
	first := i * markEvery / max(n, 1) // markers of the lines staggered
	for j, t := range ts {
		if math.IsNaN(vs[j]) {
			move = true
			continue
		}
		x, y := c.x(t), c.y(a, vs[j])+dy
		switch {
		case move:
			if path.Len() > 0 {
				path.WriteString(" ")
			}
			path.WriteString("M")
			move = false
		default:
			path.WriteString(" L")
		}
		path.WriteString(xy(x, y))
		if j%markEvery == first%markEvery {
			if marks.Len() > 0 {
				marks.WriteString(" ")
			}
			marks.WriteString(l.marker(x, y))
		}
	}
	c.Series = append(c.Series, series{
		Name: name, Color: l.color, Dash: l.dash, Path: path.String(), Markers: marks.String(), Key: l.marker(17, 6),
	})
}

// legendOfSetups returns the series of the setups of r, for the page's legend.
func legendOfSetups(r *sim.Report) []series {
	var out []series
	for _, s := range r.Setups {
		l := lookOf(s.Kind)
		out = append(out, series{Name: s.Kind.String(), Color: l.color, Dash: l.dash, Key: l.marker(17, 6)})
	}
	return out
}

// sharedNote is what every chart's caption says of its lines.
const sharedNote = " Lines that share a value are drawn 2px apart, each with its own dash and marker."

// callsChart charts the source calls per second of every setup.
func callsChart(r *sim.Report) *chart {
	c := newChart(r.Config.Duration, r.OutageFrom, r.OutageTo, "Source calls per second",
		"Calls started in each "+span(r.Bucket)+" of the run, per second; log scale, below 1 drawn at 1."+sharedNote)
	peak := 1.0
	for _, s := range r.Setups {
		for _, p := range s.Timeline {
			peak = max(peak, float64(p.SourceCalls)/r.Bucket.Seconds())
		}
	}
	a := newLogAxis(1, peak, 1)
	c.yTicks(a, func(v float64) string { return decade(uint64(v + 0.5)) })
	for i, s := range r.Setups {
		ts, vs := make([]time.Duration, len(s.Timeline)), make([]float64, len(s.Timeline))
		for j, p := range s.Timeline {
			ts[j] = p.At + r.Bucket/2
			vs[j] = float64(p.SourceCalls) / r.Bucket.Seconds()
		}
		c.addSeries(s.Kind.String(), lookOf(s.Kind), a, i, len(r.Setups), ts, vs)
	}
	return c
}

// latencyChart charts the client p99 latency of every setup.
func latencyChart(r *sim.Report) *chart {
	c := newChart(r.Config.Duration, r.OutageFrom, r.OutageTo, "Client latency, p99",
		"99th percentile of the requests sent in each "+span(r.Bucket)+" of the run, timeouts and errors included; log scale."+sharedNote)
	lo, hi := math.Inf(1), 0.0
	for _, s := range r.Setups {
		for _, p := range s.Timeline {
			if p.Requests > 0 && p.P99 > 0 {
				lo, hi = min(lo, float64(p.P99)), max(hi, float64(p.P99))
			}
		}
	}
	if hi == 0 {
		lo, hi = float64(time.Millisecond), float64(time.Millisecond)
	}
	a := newLogAxis(lo, hi, float64(time.Microsecond))
	c.yTicks(a, func(v float64) string { return span(time.Duration(v + 0.5)) })
	for i, s := range r.Setups {
		ts, vs := make([]time.Duration, len(s.Timeline)), make([]float64, len(s.Timeline))
		for j, p := range s.Timeline {
			ts[j] = p.At + r.Bucket/2
			vs[j] = math.NaN()
			if p.Requests > 0 {
				vs[j] = float64(p.P99)
			}
		}
		c.addSeries(s.Kind.String(), lookOf(s.Kind), a, i, len(r.Setups), ts, vs)
	}
	return c
}
