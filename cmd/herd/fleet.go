package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"slices"
	"time"

	"github.com/herdcache/herd/cmd/herd/internal/fleet"
	"github.com/herdcache/herd/cmd/herd/internal/report"
)

// fleetDuration is the default of --duration with --fleet: 5 seconds for
// each of the three setups.
const fleetDuration = 15 * time.Second

// The windows of a fleet setup's outage phase around the outage: the
// fleet running as usual before it, and long enough after it for the
// clients to reconnect and the change streams to resume.
const (
	fleetOutageBefore = time.Second
	fleetOutageAfter  = 3 * time.Second
)

// fleetFlags are the flags of the fleet scenario.
type fleetFlags struct {
	on        bool
	writes    int
	allowance time.Duration
}

// addFleetFlags defines --fleet, --writes and --allowance on fs.
func addFleetFlags(fs *flag.FlagSet) *fleetFlags {
	f := &fleetFlags{writes: fleet.Defaults.WriteRate, allowance: fleet.Defaults.Allowance}
	fs.BoolVar(&f.on, "fleet", false, "")
	fs.IntVar(&f.writes, "writes", f.writes, "")
	fs.DurationVar(&f.allowance, "allowance", f.allowance, "")
	return f
}

// config checks the flags of a fleet run, set naming those given, and
// returns its configuration; nil, with no error, without --fleet.
func (f *fleetFlags) config(o *options, set map[string]bool) (*fleet.Config, error) {
	if !f.on {
		for _, name := range []string{"writes", "allowance"} {
			if set[name] {
				return nil, fmt.Errorf("--%s needs --fleet (see herd -h)", name)
			}
		}
		return nil, nil
	}
	for _, name := range []string{"latency", "errors", "outage"} {
		if set[name] {
			return nil, fmt.Errorf("--%s does not apply to --fleet, which has no source outage (see herd -h)", name)
		}
	}
	c := fleet.Defaults
	c.WriteRate, c.Allowance = f.writes, f.allowance
	c.Keys, c.TTL, c.Timeout, c.Seed = o.cfg.Keys, o.cfg.TTL, o.cfg.Timeout, o.cfg.Seed
	if set["instances"] {
		c.Instances = o.cfg.Instances
	}
	if set["clients"] {
		c.Readers = o.cfg.Clients
	}
	total := fleetDuration
	if set["duration"] {
		total = o.cfg.Duration
	}
	c.Duration = total / time.Duration(len(fleet.Setups()))
	if err := c.Validate(); err != nil {
		return nil, fmt.Errorf("--%w", err)
	}
	return &c, nil
}

// runFleet runs the fleet scenario of o and writes its results: the
// table or JSON to stdout, the setups as they start to stderr, and the
// HTML page if --html names one. It returns the exit status.
func runFleet(ctx context.Context, o *options, stdout, stderr io.Writer) int {
	c := *o.fleet
	var html *os.File
	if o.html != "" {
		var err error
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
	if o.store != "memory" {
		st, err := useStore(ctx, o.store)
		if err != nil {
			return fail(exitUsage, "%v", err)
		}
		defer st.stop()
		c.Far, c.StoreName = st.open, st.name
		if o.storeOutage > 0 {
			link, err := newCutLink(ctx, st.url, false)
			if err != nil {
				return fail(exitUsage, "store outage: %v", err)
			}
			defer link.proxy.Close()
			c.Outage, c.Fault, c.OutageFar, c.Link = o.storeOutage, o.storeFault, link.open, link
			c.OutageBefore, c.OutageAfter = fleetOutageBefore, fleetOutageAfter
		}
	}
	c.Progress = func(what string) {
		if slices.Contains(fleet.Setups(), what) {
			what += ", " + c.Duration.String()
		}
		fmt.Fprintf(stderr, "fleet: %s\n", what)
	}
	r, err := fleet.Run(ctx, c)
	if err != nil {
		if ctx.Err() != nil {
			return fail(exitInterrupted, "interrupted")
		}
		return fail(exitUsage, "%v", err)
	}
	if status, msg := writeResults(stdout, html, o, r, report.FleetTable, report.FleetJSON, report.FleetHTML); status != 0 {
		return fail(status, "%s", msg)
	}
	if r.Interrupted {
		fmt.Fprintf(stderr, "herd: interrupted\n")
		return exitInterrupted
	}
	return exitOK
}
