package report

import (
	_ "embed"
	"encoding/json"
	"fmt"
	"io"
	"strconv"
	"time"

	"github.com/herdcache/herd/cmd/herd/internal/fleet"
	"github.com/herdcache/herd/cmd/herd/internal/proxy"
)

// fleetColumns are the header of the fleet table.
var fleetColumns = []string{"setup", "reads/s", "p50", "p99", "errors", "store errors", "writes", "stale after write", "within allowance", "longest stale"}

// fleetLegend explains the fleet table's columns, in one line; its verbs
// are the reads a second offered, then the allowance twice.
const fleetLegend = "reads/s: reads that returned a value, per second, of at most %s that the readers send " +
	"(a setup that falls short could not keep up). p50, p99: read latency, in a warm fleet: every " +
	"instance read every key once before the setup's time began. errors: reads " +
	"that failed or timed out; store errors: store calls that failed (herd then loads from the " +
	"source). stale after write: reads that began more than %s (the delivery allowance) after a " +
	"write of their key had completed, and returned an older value. within allowance: the same, " +
	"begun less than %s after the write. longest stale: the longest time after a write had " +
	"completed that a read began and still returned the value before it."

// describeFleet is the scenario of r in lines.
func describeFleet(r *fleet.Result) []string {
	c := &r.Config
	far := "a memory store shared by the instances, standing for a server"
	if c.StoreName != "" {
		far = c.StoreName
	}
	return []string{
		fmt.Sprintf("fleet: %d instances, %d readers × up to %s reads/s, %d writes/s each through a random instance, %s keys, %s per setup",
			c.Instances, c.Readers, count(uint64(c.ReadRate)), c.WriteRate, count(uint64(c.Keys)), span(c.Duration)),
		fmt.Sprintf("caches: herd with TTL %s; far tier: %s; delivery allowance %s", span(c.TTL), far, span(c.Allowance)),
	}
}

func legendOf(c *fleet.Config) string {
	a := span(c.Allowance)
	return fmt.Sprintf(fleetLegend, count(uint64(c.Readers)*uint64(c.ReadRate)), a, a)
}

func fleetRow(s *fleet.Setup) []string {
	return []string{
		s.Name, count(uint64(s.PerSec + 0.5)), latency(s.P50), latency(s.P99), count(s.Errors), count(s.StoreErrors), count(s.Writes),
		count(s.Stale), count(s.Delivered), latency(s.Longest),
	}
}

// FleetVerdict sums up a fleet run in lines: how stale each setup was, and
// what the two-level store costs against the far tier alone.
func FleetVerdict(r *fleet.Result) []string {
	var lines []string
	if r.Interrupted {
		lines = append(lines, "INTERRUPTED: the run stopped before its end; these numbers cover only its start.")
	}
	mem, errM := r.Setup(fleet.MemoryPerInstance)
	far, errF := r.Setup(fleet.FarOnly)
	two, errT := r.Setup(fleet.TwoLevel)
	if errM != nil || errF != nil || errT != nil {
		return lines
	}
	allowance := span(r.Config.Allowance)
	longest := "no older value read once a write had completed"
	if two.Longest > 0 {
		longest = "an older value read at most " + latency(two.Longest) + " after a write had completed"
	}
	lines = append(lines, fmt.Sprintf(
		"memory per instance: %s stale reads after a write, for up to %s (the TTL bounds them); two-level: %s beyond %s, %s.",
		count(mem.Stale), latency(mem.Longest), count(two.Stale), allowance, longest))
	if far.P50 > 0 && two.P50 > 0 {
		lines = append(lines, fmt.Sprintf(
			"two-level against the far tier alone: %s the reads per second; p50 %s against %s (%s of the far tier's), p99 %s against %s.",
			ratio(two.PerSec, far.PerSec), latency(two.P50), latency(far.P50),
			fraction(float64(two.P50), float64(far.P50)), latency(two.P99), latency(far.P99)))
	}
	return lines
}

// fraction formats a/b as a fraction: 1/110 for a small a, 0.8 otherwise.
func fraction(a, b float64) string {
	if a <= 0 || b <= 0 {
		return "0"
	}
	if q := b / a; q >= 2 {
		return "1/" + strconv.FormatFloat(q, 'f', 0, 64)
	}
	return strconv.FormatFloat(a/b, 'f', 1, 64)
}

// ratio formats a/b as 1.0×, 12×.
func ratio(a, b float64) string {
	if b <= 0 {
		return "∞"
	}
	q := a / b
	if q < 10 {
		return strconv.FormatFloat(q, 'f', 1, 64) + "×"
	}
	return strconv.FormatFloat(q, 'f', 0, 64) + "×"
}

// FleetTable writes the fleet scenario, a table of what each setup
// measured, and the lines that sum it up; then the outage phases' table,
// or the note that says why there were none.
func FleetTable(w io.Writer, r *fleet.Result) error {
	rows := [][]string{fleetColumns}
	for i := range r.Setups {
		rows = append(rows, fleetRow(&r.Setups[i]))
	}
	if err := writeTable(w, describeFleet(r), rows, wrap(legendOf(&r.Config), lineWidth), FleetVerdict(r)); err != nil {
		return err
	}
	if rows := fleetOutageRows(r); len(rows) > 0 {
		if _, err := io.WriteString(w, "\n"); err != nil {
			return err
		}
		return writeTable(w, describeFleetOutage(r), append([][]string{fleetOutageColumns}, rows...),
			wrap(fleetOutageLegend(&r.Config), lineWidth), FleetOutageVerdict(r))
	}
	if note := fleetOutageNote(r); note != "" {
		_, err := io.WriteString(w, "\n"+wrap(note, lineWidth)+"\n")
		return err
	}
	return nil
}

// fleetOutageColumns are the header of the fleet's outage table.
var fleetOutageColumns = []string{"setup", "window", "reads", "p50", "p99", "errors", "hits", "loads", "store errors", "skipped", "writes", "stale"}

// fleetOutageLegend explains the fleet's outage table.
func fleetOutageLegend(c *fleet.Config) string {
	return fmt.Sprintf("A read counts in the window it began in. reads: reads that returned a value; p50, p99: their "+
		"latency; errors: reads that failed or timed out. hits, loads, store errors, skipped: from the caches' Stats "+
		"over the window, summed over the instances: values served from the store (for two-level, its near tier "+
		"while the far tier is cut), loader calls, store calls that failed, and store calls not made because the "+
		"store was marked down. writes: writes that completed. stale: reads that returned a value older than a "+
		"write completed more than %s before they began.", span(c.Allowance))
}

// describeFleetOutage says what the outage phases ran.
func describeFleetOutage(r *fleet.Result) []string {
	c := &r.Config
	how := "hangs (connections stay open, nothing is answered)"
	if c.Fault == proxy.Refuse {
		how = "refuses connections (open ones are closed)"
	}
	return []string{
		fmt.Sprintf("far tier unreachable: each setup over the far tier runs again, a fleet of its own whose %d instances reach the server through one proxy:", c.Instances),
		fmt.Sprintf("%s up, then %s during which the server %s for every instance, then %s back", span(c.OutageBefore), span(c.Outage), how, span(c.OutageAfter)),
	}
}

func fleetOutageRows(r *fleet.Result) [][]string {
	var rows [][]string
	for _, s := range r.Setups {
		if s.Outage == nil {
			continue
		}
		for i, w := range s.Outage.Windows {
			name := ""
			if i == 0 {
				name = s.Name
			}
			rows = append(rows, []string{
				name, w.Name, count(w.Reads), latency(w.P50), latency(w.P99), count(w.Errors), count(w.Hits), count(w.Loads),
				count(w.StoreErrors), count(w.StoreSkipped), count(w.Writes), count(w.Stale),
			})
		}
	}
	return rows
}

// fleetOutageNote says why a fleet run had no outage phase, when it is
// worth saying: its far tier was a memory store.
func fleetOutageNote(r *fleet.Result) string {
	if r.Config.StoreName != "" || r.Config.Outage > 0 {
		return ""
	}
	return "outage phase: not run: the far tier is a memory store in this process, with no server to cut. " +
		"Run with --store redis:local or --store nats:embedded to see the fleet through a far-tier outage."
}

// FleetOutageVerdict sums up the outage phase of each setup in a line:
// what served the reads while the far tier was cut, and the stale reads
// after it.
func FleetOutageVerdict(r *fleet.Result) []string {
	var lines []string
	for _, s := range r.Setups {
		if s.Outage == nil {
			continue
		}
		cut, ok1 := s.Outage.Window(fleet.FarCut)
		back, ok2 := s.Outage.Window(fleet.FarBack)
		if !ok1 || !ok2 {
			continue
		}
		served := "none"
		if total := cut.Hits + cut.Loads; total > 0 {
			served = fmt.Sprintf("%s hits against %s loads (%s of the answers from the store)", count(cut.Hits), count(cut.Loads),
				percent(float64(cut.Hits)/float64(total)))
		}
		lines = append(lines, fmt.Sprintf("%s, far tier cut: %s reads, %s errors; %s. After it: %s stale reads of %s.",
			s.Name, count(cut.Reads), count(cut.Errors), served, count(back.Stale), count(back.Reads)))
	}
	return lines
}

type jsonFleet struct {
	Config      jsonFleetConfig  `json:"config"`
	Setups      []jsonFleetSetup `json:"setups"`
	Verdict     []string         `json:"verdict"`
	OutageLines []string         `json:"outage_verdict"`
	OutageNote  string           `json:"outage_note,omitempty"`
	ElapsedS    float64          `json:"elapsed_s"`
	Interrupted bool             `json:"interrupted"`
}

type jsonFleetConfig struct {
	Command    string  `json:"command"`
	Store      string  `json:"store"`
	Instances  int     `json:"instances"`
	Readers    int     `json:"readers"`
	ReadRate   int     `json:"read_rate"`
	WriteRate  int     `json:"write_rate"`
	Keys       int     `json:"keys"`
	DurationS  float64 `json:"duration_per_setup_s"`
	TTLS       float64 `json:"ttl_s"`
	TimeoutS   float64 `json:"timeout_s"`
	AllowanceS float64 `json:"allowance_s"`
	Seed       uint64  `json:"seed"`
	OutageS    float64 `json:"store_outage_s"`
	Fault      string  `json:"store_fault,omitempty"`
}

type jsonFleetSetup struct {
	Name      string  `json:"name"`
	Reads     uint64  `json:"reads"`
	Errors    uint64  `json:"errors"`
	PerSec    float64 `json:"reads_per_s"`
	P50MS     float64 `json:"p50_ms"`
	P99MS     float64 `json:"p99_ms"`
	Writes    uint64  `json:"writes"`
	Stale     uint64  `json:"stale_after_write"`
	Delivered uint64  `json:"within_allowance"`
	LongestMS float64 `json:"longest_stale_ms"`

	Outage *jsonFleetOutage `json:"outage,omitempty"`
}

// jsonFleetOutage is a setup's outage phase; its windows in order: far
// tier up, cut, back.
type jsonFleetOutage struct {
	Fault   string                  `json:"fault"`
	Windows []jsonFleetOutageWindow `json:"windows"`
}

type jsonFleetOutageWindow struct {
	Name         string  `json:"name"`
	DurationS    float64 `json:"duration_s"`
	Reads        uint64  `json:"reads"`
	Errors       uint64  `json:"errors"`
	P50MS        float64 `json:"p50_ms"`
	P99MS        float64 `json:"p99_ms"`
	Hits         uint64  `json:"hits"`
	Loads        uint64  `json:"loads"`
	StoreErrors  uint64  `json:"store_errors"`
	StoreSkipped uint64  `json:"store_skipped"`
	Writes       uint64  `json:"writes"`
	Stale        uint64  `json:"stale"`
}

// FleetJSON writes r as one indented JSON document.
func FleetJSON(w io.Writer, r *fleet.Result) error {
	c := &r.Config
	store := c.StoreName
	if store == "" {
		store = "memory"
	}
	out := jsonFleet{
		Config: jsonFleetConfig{
			Command: commandOf(c.Command), Store: store, Instances: c.Instances, Readers: c.Readers, ReadRate: c.ReadRate, WriteRate: c.WriteRate,
			Keys: c.Keys, DurationS: c.Duration.Seconds(), TTLS: c.TTL.Seconds(), TimeoutS: c.Timeout.Seconds(),
			AllowanceS: c.Allowance.Seconds(), Seed: c.Seed, OutageS: c.Outage.Seconds(),
		},
		Setups:      make([]jsonFleetSetup, 0, len(r.Setups)),
		Verdict:     FleetVerdict(r),
		OutageLines: FleetOutageVerdict(r),
		OutageNote:  fleetOutageNote(r),
		ElapsedS:    r.Elapsed.Seconds(),
		Interrupted: r.Interrupted,
	}
	for _, s := range r.Setups {
		js := jsonFleetSetup{
			Name: s.Name, Reads: s.Reads, Errors: s.Errors, PerSec: s.PerSec, P50MS: ms(s.P50), P99MS: ms(s.P99),
			Writes: s.Writes, Stale: s.Stale, Delivered: s.Delivered, LongestMS: ms(s.Longest),
		}
		if o := s.Outage; o != nil {
			js.Outage = &jsonFleetOutage{Fault: o.Fault.String()}
			for _, w := range o.Windows {
				js.Outage.Windows = append(js.Outage.Windows, jsonFleetOutageWindow{
					Name: w.Name, DurationS: w.Duration.Seconds(), Reads: w.Reads, Errors: w.Errors,
					P50MS: ms(w.P50), P99MS: ms(w.P99), Hits: w.Hits, Loads: w.Loads, StoreErrors: w.StoreErrors,
					StoreSkipped: w.StoreSkipped, Writes: w.Writes, Stale: w.Stale,
				})
			}
		}
		out.Setups = append(out.Setups, js)
	}
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(out)
}

//go:embed fleet.html.tmpl
var fleetPageSource string

var fleetPage = newPage("fleet", fleetPageSource)

// FleetHTML writes one self-contained page of a fleet run: the scenario,
// the table, the lines that sum it up, charts of the stale reads and the
// read latency of each setup, and the command line that ran it. It loads
// nothing from anywhere.
func FleetHTML(w io.Writer, r *fleet.Result) error {
	d := struct {
		Title       string
		Scenario    []string
		Interrupted bool
		Elapsed     string
		Command     string
		Header      []string
		Rows        [][]string
		Legend      string
		Verdict     []string
		Bars        []*barChart
		Outage      *outageSection
		OutageNote  string
	}{
		Title:       fmt.Sprintf("herd: a fleet of %d instances, writes in the mix", r.Config.Instances),
		Scenario:    describeFleet(r),
		Interrupted: r.Interrupted,
		Elapsed:     span(r.Elapsed.Round(100 * time.Millisecond)),
		Command:     commandOf(r.Config.Command),
		Header:      fleetColumns,
		Legend:      legendOf(&r.Config),
		Verdict:     FleetVerdict(r),
		Bars:        fleetBars(r),
		OutageNote:  fleetOutageNote(r),
	}
	if rows := fleetOutageRows(r); len(rows) > 0 {
		d.Outage = &outageSection{
			Scenario: describeFleetOutage(r), Header: fleetOutageColumns, Rows: rows,
			Legend: fleetOutageLegend(&r.Config), Verdict: FleetOutageVerdict(r),
		}
	}
	for i := range r.Setups {
		d.Rows = append(d.Rows, fleetRow(&r.Setups[i]))
	}
	return fleetPage.Execute(w, d)
}
