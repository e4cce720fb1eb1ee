package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/herdcache/herd/cmd/herd/internal/report"
	"github.com/herdcache/herd/cmd/herd/internal/soak"
)

// soakDuration is the default of --duration with --soak.
const soakDuration = 10 * time.Minute

// soakSamples is how many samples a long run takes by default, at least
// [minSample] apart.
const (
	soakSamples = 120
	minSample   = 100 * time.Millisecond
)

// soakFlags are the flags of the long run.
type soakFlags struct {
	on     bool
	sample time.Duration
}

// addSoakFlags defines --soak and --sample on fs.
func addSoakFlags(fs *flag.FlagSet) *soakFlags {
	f := &soakFlags{}
	fs.BoolVar(&f.on, "soak", false, "")
	fs.DurationVar(&f.sample, "sample", 0, "")
	return f
}

// config checks the flags of a long run, set naming those given, sets the
// defaults of a long run in o (--duration 10m, no outage), and returns its
// configuration; nil, with no error, without --soak.
func (f *soakFlags) config(o *options, set map[string]bool) (*soak.Config, error) {
	if !f.on {
		return nil, nil
	}
	c := &o.cfg
	if !set["duration"] {
		c.Duration = soakDuration
	}
	if !set["outage"] {
		c.Outage = 0
	}
	sc := &soak.Config{Sim: *c, Sample: f.sample}
	if !set["sample"] {
		sc.Sample = max((c.Duration / soakSamples).Round(10*time.Millisecond), minSample)
	}
	if err := sc.Validate(); err != nil {
		return nil, fmt.Errorf("--%w", err)
	}
	return sc, nil
}

// runSoak runs the long run of o, whose scenario o.cfg is ready to run
// (store, metrics and progress set), and writes its results: the table or
// JSON to stdout, the HTML page to html if not nil. fail reports a failure
// and removes the page. It returns the exit status: that of the
// scenario's verdict when a herd setup failed, exitGrowing when a
// resource grew, exitBehind when the load was not delivered.
func runSoak(ctx context.Context, o *options, html *os.File, progress *report.Progress,
	fail func(int, string, ...any) int, stdout, stderr io.Writer,
) int {
	c := *o.soak
	c.Sim = o.cfg
	r, err := soak.Run(ctx, c)
	if err != nil {
		if ctx.Err() != nil {
			return fail(exitInterrupted, "interrupted")
		}
		return fail(exitUsage, "%v", err)
	}
	progress.Done(r.Elapsed)
	if status, msg := writeResults(stdout, html, o, r, report.SoakTable, report.SoakJSON, report.SoakHTML); status != 0 {
		return fail(status, "%s", msg)
	}
	v := r.Report.Verdict()
	switch grew := r.Growing(); {
	case len(v.Failing) > 0:
		fmt.Fprintf(stderr, "herd: the run failed: %v failed most of its requests\n", v.Failing[0])
		return exitHerdFailed
	case len(grew) > 0:
		fmt.Fprintf(stderr, "herd: %v grew over the second half of the run\n", grew[0])
		return exitGrowing
	case len(v.Behind) > 0:
		fmt.Fprintf(stderr, "herd: this machine could not send the requests on time: the numbers are not reliable\n")
		return exitBehind
	}
	return exitOK
}
