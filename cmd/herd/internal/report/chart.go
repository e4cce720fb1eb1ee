package report

import (
	"math"
	"strconv"
	"strings"
	"time"

	"github.com/herdcache/herd/cmd/herd/internal/sim"
)

// A chart is a line chart over the time of a run, on a logarithmic y axis,
// ready for the page's SVG template: every coordinate is in pixels.
type chart struct {
	Title, Caption string
	W, H           float64 // the whole SVG
	X0, X1, Y0, Y1 float64 // the plot area: left, right, top, bottom
	XTicks, YTicks []tick
	Outage         *band // nil without an outage
	Series         []series
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

type series struct {
	Name, Color string
	Path        string // an SVG path: M x,y L x,y …
}

// colors of the setups, the same on both charts.
var colors = map[sim.Kind]string{
	sim.NoCache:  "#d62728",
	sim.PlainTTL: "#ff7f0e",
	sim.Herd:     "#1f77b4",
	sim.HerdSWR:  "#2ca02c",
}

func colorOf(k sim.Kind) string {
	if c, ok := colors[k]; ok {
		return c
	}
	return "#7f7f7f"
}

// newChart lays out an empty chart of a run of r.
func newChart(r *sim.Report, title, caption string) *chart {
	c := &chart{Title: title, Caption: caption, W: 960, H: 312, X0: 72, X1: 940, Y0: 28, Y1: 274}
	d := r.Config.Duration
	step := niceStep(d / 10)
	for t := time.Duration(0); t <= d; t += step {
		c.XTicks = append(c.XTicks, tick{Pos: c.x(r, t), Label: span(t)})
	}
	if r.OutageTo > r.OutageFrom {
		from := c.x(r, r.OutageFrom)
		c.Outage = &band{X: from, W: c.x(r, r.OutageTo) - from}
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

func (c *chart) x(r *sim.Report, t time.Duration) float64 {
	return c.X0 + (c.X1-c.X0)*min(t.Seconds()/r.Config.Duration.Seconds(), 1)
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

func (c *chart) y(a logAxis, v float64) float64 {
	v = min(max(v, a.lo), a.hi)
	f := (math.Log10(v) - math.Log10(a.lo)) / (math.Log10(a.hi) - math.Log10(a.lo))
	return c.Y1 - (c.Y1-c.Y0)*f
}

func (c *chart) yTicks(a logAxis, label func(float64) string) {
	for v := a.lo; v <= a.hi*1.001; v *= 10 {
		c.YTicks = append(c.YTicks, tick{Pos: c.y(a, v), Label: label(v)})
	}
}

// path draws the points (t, v) of a series; a NaN value breaks the line.
func (c *chart) path(r *sim.Report, a logAxis, ts []time.Duration, vs []float64) string {
	var b strings.Builder
	move := true
	for i, t := range ts {
		if math.IsNaN(vs[i]) {
			move = true
			continue
		}
		if move {
			if b.Len() > 0 {
				b.WriteString(" ")
			}
			b.WriteString("M")
			move = false
		} else {
			b.WriteString(" L")
		}
		b.WriteString(strconv.FormatFloat(c.x(r, t), 'f', 1, 64))
		b.WriteString(",")
		b.WriteString(strconv.FormatFloat(c.y(a, vs[i]), 'f', 1, 64))
	}
	return b.String()
}

// callsChart charts the source calls per second of every setup.
func callsChart(r *sim.Report) *chart {
	c := newChart(r, "Source calls per second",
		"Calls started in each "+span(r.Bucket)+" of the run, per second; log scale, below 1 drawn at 1.")
	peak := 1.0
	for _, s := range r.Setups {
		for _, p := range s.Timeline {
			peak = max(peak, float64(p.SourceCalls)/r.Bucket.Seconds())
		}
	}
	a := newLogAxis(1, peak, 1)
	c.yTicks(a, func(v float64) string { return decade(uint64(v + 0.5)) })
	for _, s := range r.Setups {
		ts, vs := make([]time.Duration, len(s.Timeline)), make([]float64, len(s.Timeline))
		for i, p := range s.Timeline {
			ts[i] = p.At + r.Bucket/2
			vs[i] = float64(p.SourceCalls) / r.Bucket.Seconds()
		}
		c.Series = append(c.Series, series{Name: s.Kind.String(), Color: colorOf(s.Kind), Path: c.path(r, a, ts, vs)})
	}
	return c
}

// latencyChart charts the client p99 latency of every setup.
func latencyChart(r *sim.Report) *chart {
	c := newChart(r, "Client latency, p99",
		"99th percentile of the requests sent in each "+span(r.Bucket)+" of the run, timeouts and errors included; log scale.")
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
	for _, s := range r.Setups {
		ts, vs := make([]time.Duration, len(s.Timeline)), make([]float64, len(s.Timeline))
		for i, p := range s.Timeline {
			ts[i] = p.At + r.Bucket/2
			vs[i] = math.NaN()
			if p.Requests > 0 {
				vs[i] = float64(p.P99)
			}
		}
		c.Series = append(c.Series, series{Name: s.Kind.String(), Color: colorOf(s.Kind), Path: c.path(r, a, ts, vs)})
	}
	return c
}
