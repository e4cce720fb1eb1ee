package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/herdcache/herd/cmd/herd/internal/report"
	"github.com/herdcache/herd/cmd/herd/internal/sim"
)

// Exit statuses.
const (
	exitOK          = 0
	exitFailed      = 1   // an output could not be written
	exitViolation   = 1   // the history check found a violation, or did not finish
	exitUsage       = 2   // a bad flag, store or URL
	exitHerdFailed  = 3   // a herd setup failed more than half of its requests
	exitBehind      = 4   // the machine could not send the requests on time
	exitGrowing     = 5   // a long run saw a resource grow
	exitInterrupted = 130 // SIGINT or SIGTERM
)

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

// run is the command: it parses args, runs the scenario, writes the results
// to stdout and the progress to stderr, and returns the exit status. An
// interrupt or SIGTERM stops the run.
func run(args []string, stdout, stderr io.Writer) int {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	return runContext(ctx, args, stdout, stderr)
}

// runContext is run on a context that stops the run when it ends.
func runContext(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	o, err := parseFlags(args)
	switch {
	case errors.Is(err, errHelp):
		fmt.Fprint(stdout, usage)
		return exitOK
	case err != nil:
		fmt.Fprintf(stderr, "herd: %v\n", err)
		return exitUsage
	}
	o.cfg.Command = commandLine(args)
	switch {
	case o.checkCalls > 0:
		return runCheck(ctx, &o, stdout, stderr)
	case o.fleet != nil:
		o.fleet.Command = o.cfg.Command
		return runFleet(ctx, &o, stdout, stderr)
	case o.batch != nil:
		return runBatch(ctx, o.batch, o.json, stdout, stderr)
	}
	// The HTML file is created before the run, so that a path that cannot
	// be written fails now, not after it.
	var html *os.File
	if o.html != "" {
		if html, err = os.Create(o.html); err != nil {
			fmt.Fprintf(stderr, "herd: --html: %v\n", err)
			return exitUsage
		}
		defer html.Close()
	}
	fail := func(status int, format string, args ...any) int {
		fmt.Fprintf(stderr, "herd: "+format+"\n", args...)
		if html != nil {
			_ = html.Close()
			_ = os.Remove(o.html)
		}
		return status
	}

	var st *storeRun
	if o.store != "memory" {
		if st, err = useStore(ctx, o.store); err != nil {
			return fail(exitUsage, "%v", err)
		}
		defer st.stop()
		o.cfg.Store, o.cfg.StoreName = st.open, st.name
	}

	if o.metricsAddr != "" {
		m, merr := serveMetrics(o.metricsAddr)
		if merr != nil {
			return fail(exitUsage, "--metrics-addr: %v", merr)
		}
		defer m.stop(stderr)
		o.cfg.NewCache = m.newCache
		fmt.Fprintf(stderr, "herd: serving metrics on %s\n", m.URL())
	}

	progress := report.NewProgress(stderr, isTerminal(stderr) && !underCI(), o.cfg.Duration)
	o.cfg.Progress = progress.Update
	if o.soak != nil {
		return runSoak(ctx, &o, html, progress, fail, stdout, stderr)
	}
	r, err := sim.Run(ctx, o.cfg)
	if err != nil {
		if ctx.Err() != nil {
			return fail(exitInterrupted, "interrupted")
		}
		return fail(exitUsage, "%v", err)
	}
	progress.Done(r.Elapsed)

	run := &report.Run{Sim: r}
	switch {
	case st != nil && o.storeOutage > 0:
		if run.StoreOutage, err = runStoreOutage(ctx, &o, st, stderr); err != nil {
			if ctx.Err() != nil {
				return fail(exitInterrupted, "interrupted")
			}
			return fail(exitUsage, "%v", err)
		}
	case st == nil:
		run.StoreOutageNote = memoryOutageNote
	}
	if status, msg := writeResults(stdout, html, &o, run, report.RunTable, report.RunJSON, report.RunHTML); status != 0 {
		return fail(status, "%s", msg)
	}
	if run.StoreOutage != nil && run.StoreOutage.Interrupted {
		fmt.Fprintf(stderr, "herd: interrupted\n")
		return exitInterrupted
	}
	// The table says what went wrong; stderr says it in one line too, for
	// whoever reads only the exit status and the log.
	switch v := r.Verdict(); {
	case len(v.Failing) > 0:
		fmt.Fprintf(stderr, "herd: the run failed: %v failed most of its requests\n", v.Failing[0])
		return exitHerdFailed
	case len(v.Behind) > 0:
		fmt.Fprintf(stderr, "herd: this machine could not send the requests on time: the numbers are not reliable\n")
		return exitBehind
	}
	return exitOK
}

// isTerminal reports whether w is a terminal.
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}

// underCI reports whether the command runs in CI, where a bar redrawn in
// place only clutters the log.
func underCI() bool {
	v := os.Getenv("CI")
	return v != "" && v != "false" && v != "0"
}

// writeResults writes r to stdout as a table, or as JSON with --json, and to
// html as a page when --html was given, closing it. It returns the failure
// to report, if any: the status and the message.
func writeResults[R any](stdout io.Writer, html *os.File, o *options, r R, table, json, page func(io.Writer, R) error) (int, string) {
	write := table
	if o.json {
		write = json
	}
	if err := write(stdout, r); err != nil {
		return exitFailed, fmt.Sprintf("writing the results: %v", err)
	}
	if html == nil {
		return 0, ""
	}
	if err := page(html, r); err != nil {
		return exitFailed, fmt.Sprintf("writing %s: %v", o.html, err)
	}
	if err := html.Close(); err != nil {
		return exitFailed, fmt.Sprintf("writing %s: %v", o.html, err)
	}
	if !o.json {
		fmt.Fprintf(stdout, "\nwrote %s\n", o.html)
	}
	return 0, ""
}

// commandLine is the command line of args, as a shell takes it, for
// reports: "herd" and the arguments, quoted where a shell needs it, with
// the password of a store URL hidden.
func commandLine(args []string) string {
	parts := []string{"herd"}
	for _, a := range args {
		if strings.Contains(a, "@") {
			a = redact(a)
		}
		parts = append(parts, shellQuote(a))
	}
	return strings.Join(parts, " ")
}

// shellQuote quotes s for a POSIX shell, unless it needs none.
func shellQuote(s string) string {
	if s != "" && strings.Trim(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_@%+=:,./-") == "" {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}
