package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"text/tabwriter"
	"time"

	"github.com/herdcache/herd"
	"github.com/herdcache/herd/store/memory"
)

// batchDuration is the default of --duration with --batch: 5 seconds for
// each of the two setups.
const batchDuration = 10 * time.Second

// batchFlags are the flags of the batch scenario.
type batchFlags struct {
	on       bool
	maxBatch int
	maxWait  time.Duration
}

// addBatchFlags defines --batch, --max-batch and --max-wait on fs.
func addBatchFlags(fs *flag.FlagSet) *batchFlags {
	f := &batchFlags{maxBatch: herd.DefaultMaxBatch, maxWait: herd.DefaultMaxWait}
	fs.BoolVar(&f.on, "batch", false, "")
	fs.IntVar(&f.maxBatch, "max-batch", f.maxBatch, "")
	fs.DurationVar(&f.maxWait, "max-wait", f.maxWait, "")
	return f
}

// batchConfig is the configuration of a batch run.
type batchConfig struct {
	Clients  int           `json:"clients"`
	Duration time.Duration `json:"duration_ns"` // of each setup
	Latency  time.Duration `json:"latency_ns"`  // of one source call, whatever its keys
	MaxBatch int           `json:"max_batch"`
	MaxWait  time.Duration `json:"max_wait_ns"`
}

// config checks the flags of a batch run, set naming those given, and
// returns its configuration; nil, with no error, without --batch.
func (f *batchFlags) config(o *options, set map[string]bool) (*batchConfig, error) {
	if !f.on {
		for _, name := range []string{"max-batch", "max-wait"} {
			if set[name] {
				return nil, fmt.Errorf("--%s needs --batch (see herd -h)", name)
			}
		}
		return nil, nil
	}
	for _, name := range []string{"errors", "outage", "instances", "store", "html", "fleet", "writes", "allowance", "keys", "ttl", "timeout", "metrics-addr"} {
		if set[name] {
			return nil, fmt.Errorf("--%s does not apply to --batch (see herd -h)", name)
		}
	}
	total := batchDuration
	if set["duration"] {
		total = o.cfg.Duration
	}
	c := &batchConfig{
		Clients: o.cfg.Clients, Duration: total / 2, Latency: o.cfg.Latency,
		MaxBatch: f.maxBatch, MaxWait: f.maxWait,
	}
	switch {
	case c.MaxBatch < 1:
		return nil, fmt.Errorf("--max-batch must be at least 1, got %d", c.MaxBatch)
	case c.MaxWait <= 0:
		return nil, fmt.Errorf("--max-wait must be positive, got %v", c.MaxWait)
	case c.Clients < 1:
		return nil, fmt.Errorf("--clients must be at least 1, got %d", c.Clients)
	case c.Duration <= 0:
		return nil, fmt.Errorf("--duration must be positive, got %v", total)
	case c.Latency <= 0:
		return nil, fmt.Errorf("--latency must be positive with --batch, got %v", c.Latency)
	}
	return c, nil
}

// batchResult is what one setup of the batch scenario measured.
type batchResult struct {
	Setup       string        `json:"setup"`
	Requests    int64         `json:"requests"`     // Gets answered
	SourceCalls int64         `json:"source_calls"` // calls of the source
	SourceKeys  int64         `json:"source_keys"`  // keys those calls asked for
	Elapsed     time.Duration `json:"elapsed_ns"`
	P50         time.Duration `json:"p50_ns"` // of a Get
	P99         time.Duration `json:"p99_ns"`
}

// perSecond is n over the setup's time.
func (r *batchResult) perSecond(n int64) float64 {
	if r.Elapsed <= 0 {
		return 0
	}
	return float64(n) / r.Elapsed.Seconds()
}

// runBatch runs the batch scenario of c: the same clients, each Getting a
// key nobody asked for before as soon as its last Get is answered, first
// through a Loader that calls the source once per key, then through
// herd.Batch. It writes the table (or JSON) to stdout and the setups as
// they start to stderr, and returns the exit status.
func runBatch(ctx context.Context, c *batchConfig, asJSON bool, stdout, stderr io.Writer) int {
	setups := []struct {
		name    string
		batched bool
	}{
		{"herd, one source call per key", false},
		{fmt.Sprintf("herd + Batch(MaxBatch %d, MaxWait %v)", c.MaxBatch, c.MaxWait), true},
	}
	var results []batchResult
	for _, s := range setups {
		fmt.Fprintf(stderr, "batch: %s, %s\n", s.name, c.Duration)
		r := runBatchSetup(ctx, c, s.batched)
		r.Setup = s.name
		results = append(results, r)
		if ctx.Err() != nil {
			fmt.Fprintf(stderr, "herd: interrupted\n")
			return exitInterrupted
		}
	}
	var err error
	if asJSON {
		err = writeBatchJSON(stdout, c, results)
	} else {
		err = writeBatchTable(stdout, c, results)
	}
	if err != nil {
		fmt.Fprintf(stderr, "herd: writing the results: %v\n", err)
		return exitFailed
	}
	return exitOK
}

// runBatchSetup runs one setup for c.Duration, or until ctx ends.
func runBatchSetup(ctx context.Context, c *batchConfig, batched bool) batchResult {
	var calls, keys atomic.Int64
	source := func(ctx context.Context, ids []string) (map[string]int, error) {
		calls.Add(1)
		keys.Add(int64(len(ids)))
		t := time.NewTimer(c.Latency)
		defer t.Stop()
		select {
		case <-t.C:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
		out := make(map[string]int, len(ids))
		for _, id := range ids {
			out[id] = len(id)
		}
		return out, nil
	}
	load := herd.Loader[int](func(ctx context.Context, id string) (int, error) {
		vs, err := source(ctx, []string{id})
		return vs[id], err
	})
	if batched {
		load = herd.Batch(source, herd.MaxBatch(c.MaxBatch), herd.MaxWait(c.MaxWait))
	}
	mem := memory.New[int]()
	cache := herd.New[int](mem, herd.TTL(time.Minute))
	defer func() { _ = cache.Close(context.WithoutCancel(ctx)) }()

	var (
		next      atomic.Int64
		requests  atomic.Int64
		mu        sync.Mutex
		latencies []time.Duration
		wg        sync.WaitGroup
	)
	start := time.Now()
	deadline := start.Add(c.Duration)
	for range c.Clients {
		wg.Go(func() {
			var own []time.Duration
			for ctx.Err() == nil && time.Now().Before(deadline) {
				key := "id:" + strconv.FormatInt(next.Add(1), 10)
				t0 := time.Now()
				if _, err := cache.Get(ctx, key, load); err == nil {
					requests.Add(1)
					own = append(own, time.Since(t0))
				}
			}
			mu.Lock()
			latencies = append(latencies, own...)
			mu.Unlock()
		})
	}
	wg.Wait()
	r := batchResult{
		Requests: requests.Load(), SourceCalls: calls.Load(), SourceKeys: keys.Load(),
		Elapsed: time.Since(start),
	}
	slices.Sort(latencies)
	if n := len(latencies); n > 0 {
		r.P50, r.P99 = latencies[n/2], latencies[min(n-1, n*99/100)]
	}
	return r
}

// writeBatchTable writes the results of a batch run as a table, with the
// ratio of source calls under it.
func writeBatchTable(w io.Writer, c *batchConfig, results []batchResult) error {
	if _, err := fmt.Fprintf(w, "batch: %d clients, each Getting a new key as soon as its last Get is answered, %v per setup;\n"+
		"the source takes %v a call, whatever the number of keys\n\n", c.Clients, c.Duration, c.Latency); err != nil {
		return err
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "setup\tGets/s\tsource calls/s\tkeys/call\tp50\tp99\t")
	for i := range results {
		r := &results[i]
		perCall := 0.0
		if r.SourceCalls > 0 {
			perCall = float64(r.SourceKeys) / float64(r.SourceCalls)
		}
		fmt.Fprintf(tw, "%s\t%.0f\t%.0f\t%.1f\t%v\t%v\t\n", r.Setup, r.perSecond(r.Requests), r.perSecond(r.SourceCalls),
			perCall, r.P50.Round(10*time.Microsecond), r.P99.Round(10*time.Microsecond))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if len(results) == 2 {
		plain, batched := &results[0], &results[1]
		a, b := plain.perSecond(plain.SourceCalls)/max(plain.perSecond(plain.Requests), 1),
			batched.perSecond(batched.SourceCalls)/max(batched.perSecond(batched.Requests), 1)
		if b > 0 {
			if _, err := fmt.Fprintf(w, "\nsource calls per Get: %.3f without the window, %.3f with it: %.0fx fewer\n", a, b, a/b); err != nil {
				return err
			}
		}
	}
	return nil
}

// writeBatchJSON writes the results of a batch run as one JSON object.
func writeBatchJSON(w io.Writer, c *batchConfig, results []batchResult) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	err := enc.Encode(struct {
		Config  *batchConfig  `json:"config"`
		Results []batchResult `json:"results"`
	}{c, results})
	if err != nil {
		return errors.Join(errors.New("json"), err)
	}
	return nil
}
