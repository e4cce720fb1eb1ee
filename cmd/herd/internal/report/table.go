package report

import (
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"

	"github.com/herdcache/herd/cmd/herd/internal/sim"
)

// Table writes the scenario and a table of what each setup measured, then a
// line that sums up the difference herd made.
func Table(w io.Writer, r *sim.Report) error {
	rows := [][]string{columns}
	for i := range r.Setups {
		rows = append(rows, row(&r.Setups[i]))
	}
	return writeTable(w, describe(r), rows, legend, Verdict(r))
}

// writeTable writes the lines that describe a scenario, the table of rows
// (the first is the header; names align left, numbers right), the legend
// and the verdict, wrapped.
func writeTable(w io.Writer, description []string, rows [][]string, legend string, verdict []string) error {
	var b strings.Builder
	for _, l := range description {
		b.WriteString(l + "\n")
	}
	b.WriteString("\n")
	widths := make([]int, len(rows[0]))
	for _, row := range rows {
		for i, cell := range row {
			widths[i] = max(widths[i], len([]rune(cell)))
		}
	}
	for _, row := range rows {
		for i, cell := range row {
			pad := strings.Repeat(" ", widths[i]-len([]rune(cell)))
			if i == 0 {
				b.WriteString(cell + pad)
			} else {
				b.WriteString("  " + pad + cell)
			}
		}
		b.WriteString("\n")
	}
	b.WriteString("\n" + legend + "\n\n")
	for _, l := range verdict {
		b.WriteString(wrap(l, lineWidth) + "\n")
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// columns are the table's header.
var columns = []string{"setup", "source calls", "peak/s", "p50", "p99", "max", "errors", "in outage", "stale", "hit ratio"}

// legend explains the columns that need it.
const legend = `peak/s: most source calls in one second. p50, p99, max: client latency. errors: failed or
timed out; in outage: of requests sent during the outage. stale: values served past their
refresh time or TTL. hit ratio: requests answered from the cache.`

// row is the line of s in the table.
func row(s *sim.SetupReport) []string {
	return []string{
		s.Kind.String(), count(s.SourceCalls), count(uint64(s.PeakCallsPerSec + 0.5)),
		latency(s.P50), latency(s.P99), latency(s.Max),
		count(s.Errors), count(s.OutageErrors), count(s.Stale), percent(s.HitRatio()),
	}
}

// lineWidth is the width the table's prose wraps at, as its legend does.
const lineWidth = 90

// wrap breaks s into lines of at most width characters, between words; a
// word longer than width has a line of its own.
func wrap(s string, width int) string {
	var b strings.Builder
	n := 0
	for i, w := range strings.Fields(s) {
		l := len([]rune(w))
		switch {
		case i == 0:
		case n+1+l > width:
			b.WriteString("\n")
			n = 0
		default:
			b.WriteString(" ")
			n++
		}
		b.WriteString(w)
		n += l
	}
	return b.String()
}

// Verdict returns the lines that judge run r: whether the machine delivered
// the load, then either the failures of the herd setups, or, over a sound
// run, the line that sums up the difference herd made.
func Verdict(r *sim.Report) []string {
	v := r.Verdict()
	lines := []string{loadLine(r, v)}
	if len(v.Failing) > 0 {
		return append(lines, failedLine(r, v))
	}
	if s := summary(r); s != "" && v.OK() {
		lines = append(lines, s)
	}
	return lines
}

// loadLine says whether the load generator sent the requests on time.
func loadLine(r *sim.Report, v sim.Verdict) string {
	var behind float64
	var late, notSent, due uint64
	var lagP99, lagMax time.Duration
	for i := range r.Setups {
		s := &r.Setups[i]
		behind = max(behind, s.Behind())
		late, notSent, due = late+s.Late, notSent+s.NotSent, due+s.Due()
		lagP99, lagMax = max(lagP99, s.LagP99), max(lagMax, s.LagMax)
	}
	lateAfter := span(r.Config.LateAfter())
	if len(v.Behind) == 0 {
		onTime := 1.0
		if due > 0 {
			onTime = 1 - float64(late+notSent)/float64(due)
		}
		return fmt.Sprintf("load delivered: %s of requests sent within %v of their time (generator lag p99 %s, max %s).",
			percent(onTime), lateAfter, latency(lagP99), latency(lagMax))
	}
	return fmt.Sprintf("LOAD NOT DELIVERED: this machine could not send the requests on time: up to %s of a setup's requests "+
		"were sent more than %v late (%s) or not at all (%s), generator lag p99 %s. Every setup's numbers suffer; "+
		"run fewer --clients or --instances, or on a quieter machine.",
		percent(behind), lateAfter, count(late), count(notSent), latency(lagP99))
}

// failedLine names the herd setups that failed most of their requests.
func failedLine(r *sim.Report, v sim.Verdict) string {
	parts := make([]string, 0, len(v.Failing))
	var storeErrors uint64
	for _, k := range v.Failing {
		for i := range r.Setups {
			if s := &r.Setups[i]; s.Kind == k {
				parts = append(parts, fmt.Sprintf("%v failed %s of its requests (%s of %s)", k, percent(s.ErrorRatio()), count(s.Errors), count(s.Requests)))
				if s.HerdStats != nil {
					storeErrors += s.HerdStats.StoreErrors
				}
			}
		}
	}
	line := "FAILED: " + strings.Join(parts, "; ")
	if storeErrors > 0 {
		line += fmt.Sprintf("; %s store operations failed or timed out", count(storeErrors))
	}
	return line + "."
}

// summary is one line comparing the stale-while-revalidate setup with no
// cache, when the run had both.
func summary(r *sim.Report) string {
	var none, swr *sim.SetupReport
	for i := range r.Setups {
		switch r.Setups[i].Kind {
		case sim.NoCache:
			none = &r.Setups[i]
		case sim.HerdSWR:
			swr = &r.Setups[i]
		}
	}
	if none == nil || swr == nil || none.SourceCalls == 0 {
		return ""
	}
	fewer := "no source call at all"
	if swr.SourceCalls > 0 {
		fewer = fmt.Sprintf("%s× fewer source calls than no cache", strconv.FormatFloat(float64(none.SourceCalls)/float64(swr.SourceCalls), 'f', 0, 64))
	}
	s := fmt.Sprintf("herd (SWR+SIE): %s", fewer)
	if r.Config.Outage > 0 {
		s += fmt.Sprintf("; %s errors during the outage against %s without a cache", count(swr.OutageErrors), count(none.OutageErrors))
	}
	return s + "."
}
