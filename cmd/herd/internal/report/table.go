package report

import (
	"fmt"
	"io"
	"strconv"
	"strings"

	"github.com/herdcache/herd/cmd/herd/internal/sim"
)

// Table writes the scenario and a table of what each setup measured, then a
// line that sums up the difference herd made.
func Table(w io.Writer, r *sim.Report) error {
	var b strings.Builder
	for _, l := range describe(r) {
		b.WriteString(l + "\n")
	}
	b.WriteString("\n")
	rows := [][]string{columns}
	for i := range r.Setups {
		rows = append(rows, row(&r.Setups[i]))
	}
	widths := make([]int, len(columns))
	for _, row := range rows {
		for i, cell := range row {
			widths[i] = max(widths[i], len([]rune(cell)))
		}
	}
	for _, row := range rows {
		for i, cell := range row {
			pad := strings.Repeat(" ", widths[i]-len([]rune(cell)))
			if i == 0 {
				b.WriteString(cell + pad) // names align left, numbers right
			} else {
				b.WriteString("  " + pad + cell)
			}
		}
		b.WriteString("\n")
	}
	b.WriteString("\n" + legend + "\n")
	if s := summary(r); s != "" {
		b.WriteString("\n" + s + "\n")
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
