package report

import (
	"math"
	"time"

	"github.com/herdcache/herd/cmd/herd/internal/fleet"
)

// A barChart is a chart of horizontal bars in groups, one group per setup,
// ready for the page's SVG template: every coordinate is in pixels.
type barChart struct {
	Title, Caption string
	W, H           float64
	X0, X1, Y0, Y1 float64 // the plot area: left, right, top, bottom
	Ticks          []tick  // along the x axis
	Groups         []barGroup
}

type barGroup struct {
	Name string
	Y    float64 // the middle of the group
	Bars []bar
}

type bar struct {
	Y, W, H       float64
	Color, Label  string
	TextX, TextDY float64 // where the label goes, from the bar's start and top
}

// A barValue is one bar of a group before layout.
type barValue struct {
	v     float64
	color string
	label string
}

// Bar sizes, in pixels.
const (
	barH   = 14.0
	barGap = 4.0
	grpGap = 16.0
)

// newBarChart lays out groups of bars on axis a, whose ticks label names.
func newBarChart(title, caption string, a axis, label func(float64) string, names []string, groups [][]barValue) *barChart {
	c := &barChart{Title: title, Caption: caption, W: 960, X0: 170, X1: 820, Y0: 10}
	y := c.Y0 + grpGap/2
	for i, g := range groups {
		h := float64(len(g))*(barH+barGap) - barGap
		bg := barGroup{Name: names[i], Y: y + h/2}
		for j, b := range g {
			top := y + float64(j)*(barH+barGap)
			w := (c.X1 - c.X0) * a.frac(b.v)
			bg.Bars = append(bg.Bars, bar{
				Y: top, W: w, H: barH, Color: b.color, Label: b.label,
				TextX: w + 5, TextDY: barH/2 + 4,
			})
		}
		c.Groups = append(c.Groups, bg)
		y += h + grpGap
	}
	c.Y1 = y - grpGap/2
	c.H = c.Y1 + 26
	for _, v := range a.ticks() {
		c.Ticks = append(c.Ticks, tick{Pos: c.X0 + (c.X1-c.X0)*a.frac(v), Label: label(v)})
	}
	return c
}

// Colours of the fleet's bars.
const (
	colorStale     = "#d62728"
	colorDelivered = "#ff9896"
	colorP50       = "#6baed6"
	colorP99       = "#08519c"
)

// fleetBars are the charts of a fleet run: stale reads after a write, and
// read latency, per setup.
func fleetBars(r *fleet.Result) []*barChart {
	var names []string
	var stale, lat [][]barValue
	hiStale, loLat, hiLat := 0.0, math.Inf(1), 0.0
	for i := range r.Setups {
		s := &r.Setups[i]
		names = append(names, s.Name)
		stale = append(stale, []barValue{
			{float64(s.Stale), colorStale, count(s.Stale) + " stale after write"},
			{float64(s.Delivered), colorDelivered, count(s.Delivered) + " within the allowance"},
		})
		lat = append(lat, []barValue{
			{float64(s.P50), colorP50, "p50 " + latency(s.P50)},
			{float64(s.P99), colorP99, "p99 " + latency(s.P99)},
		})
		hiStale = max(hiStale, float64(s.Stale), float64(s.Delivered))
		for _, d := range []time.Duration{s.P50, s.P99} {
			if d > 0 {
				loLat, hiLat = min(loLat, float64(d)), max(hiLat, float64(d))
			}
		}
	}
	if hiLat == 0 {
		loLat, hiLat = float64(time.Microsecond), float64(time.Millisecond)
	}
	allowance := span(r.Config.Allowance)
	return []*barChart{
		newBarChart("Stale reads after a write",
			"Reads that began more than "+allowance+" after a write of their key had completed and returned an older value (dark), "+
				"and the same begun within "+allowance+" of the write (light), per setup.",
			newLinAxis(hiStale), func(v float64) string { return count(uint64(v + 0.5)) }, names, stale),
		newBarChart("Read latency",
			"p50 (light) and p99 (dark) of the reads of each setup; log scale.",
			newLogAxis(loLat, hiLat, float64(100*time.Nanosecond)), func(v float64) string { return span(time.Duration(v + 0.5)) }, names, lat),
	}
}
