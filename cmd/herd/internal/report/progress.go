package report

import (
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/herdcache/herd/cmd/herd/internal/sim"
)

// Progress shows a running scenario: on a terminal, a bar redrawn in place;
// elsewhere (a file, a pipe, CI), a plain line every tenth of the run and
// when the outage starts and ends. Its methods are not safe for concurrent
// use; [sim.Run] calls its Progress function from one goroutine.
type Progress struct {
	w       io.Writer
	bar     bool
	every   time.Duration
	next    time.Duration // elapsed time of the next plain line
	outage  bool
	started bool
	err     error // the first write error: the progress is best effort, and stops there
}

// NewProgress returns a Progress that writes to w, as a bar if bar is true,
// for a run of the given duration.
func NewProgress(w io.Writer, bar bool, duration time.Duration) *Progress {
	every := max(niceStep(duration/10), time.Second)
	return &Progress{w: w, bar: bar, every: every, next: every}
}

// Update shows p.
func (pr *Progress) Update(p sim.Progress) {
	if pr.bar {
		pr.printf("\r%s\x1b[K", barLine(p))
		pr.started = true
		return
	}
	if p.Outage != pr.outage {
		pr.outage = p.Outage
		state := "the source is down"
		if !p.Outage {
			state = "the source is back"
		}
		pr.printf("%s  %s\n", clock(p.Elapsed, p.Duration), state)
	}
	if p.Elapsed >= pr.next {
		for pr.next <= p.Elapsed {
			pr.next += pr.every
		}
		pr.printf("%s  source calls: %s\n", clock(p.Elapsed, p.Duration), callCounts(p))
	}
}

// Done ends the display of a run that took elapsed, its clean-up included.
func (pr *Progress) Done(elapsed time.Duration) {
	if pr.bar && pr.started {
		pr.printf("\r\x1b[K")
	}
	pr.printf("ran in %v\n\n", elapsed.Round(100*time.Millisecond))
}

func (pr *Progress) printf(format string, args ...any) {
	if pr.err == nil {
		_, pr.err = fmt.Fprintf(pr.w, format, args...)
	}
}

// barWidth is the width of the bar, in characters: the whole line stays
// under 80.
const barWidth = 16

func barLine(p sim.Progress) string {
	done := 0
	if p.Duration > 0 {
		done = int(float64(barWidth) * min(p.Elapsed.Seconds()/p.Duration.Seconds(), 1))
	}
	state := "    "
	if p.Outage {
		state = "DOWN"
	}
	parts := make([]string, len(p.Setups))
	for i, s := range p.Setups {
		parts[i] = barNames[s.Kind] + " " + short(s.SourceCalls)
	}
	return fmt.Sprintf("[%s%s] %s %s %s", strings.Repeat("#", done), strings.Repeat("-", barWidth-done),
		clock(p.Elapsed, p.Duration), state, strings.Join(parts, " "))
}

// barNames are the setups' names on the bar, short enough for one line.
var barNames = map[sim.Kind]string{sim.NoCache: "none", sim.PlainTTL: "plain", sim.Herd: "herd", sim.HerdSWR: "swr"}

func clock(elapsed, duration time.Duration) string {
	return fmt.Sprintf("%5.1fs/%v", elapsed.Seconds(), span(duration))
}

// callCounts lists each setup's source calls so far: "none 12,800 · herd 300".
func callCounts(p sim.Progress) string {
	parts := make([]string, len(p.Setups))
	for i, s := range p.Setups {
		parts[i] = s.Kind.ID() + " " + count(s.SourceCalls)
	}
	return strings.Join(parts, " · ")
}
