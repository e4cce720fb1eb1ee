// Package sim is the scenario engine of the herd command: a simulated source
// of truth behind concurrent clients, read side by side with no cache,
// through a hand-written TTL cache, and through herd in two configurations,
// recording what each setup costs the source and what its clients see.
//
// The scenario:
//
//   - The source answers after a latency drawn from a log-normal
//     distribution whose median is [Config.Latency], and fails a fraction
//     [Config.ErrorRate] of its calls. During the outage, [Config.Outage]
//     long in the middle of the run, it answers nothing: a call hangs until
//     its context ends or [Config.OutageHang] passes, then fails.
//   - Each of [Config.Clients] clients per setup sends one request every
//     [Config.Interval], whether or not its earlier ones have returned, as
//     the users of a service do, for a key drawn from a Zipf distribution
//     over [Config.Keys] keys, with a deadline of [Config.Timeout]. Every
//     setup gets the same requests: the same keys at the same times.
//
// The engine reads the clock only through the time package (time.Now,
// timers, context deadlines), and [Run] waits for every goroutine it starts.
// A test can therefore run a whole scenario inside a testing/synctest
// bubble, where time is fake: a 20-second run then takes as long as its
// computation, and its numbers do not depend on the speed of the machine.
package sim

import (
	"context"
	"fmt"
	"math"
	"strconv"
	"sync"
	"time"

	"github.com/herdcache/herd"
	"github.com/herdcache/herd/store"
)

// Config is a scenario. Start from [Defaults] and change what differs.
type Config struct {
	Duration   time.Duration // how long the clients send requests
	Clients    int           // concurrent clients per setup
	Interval   time.Duration // time between two requests of a client
	Keys       int           // distinct keys
	Zipf       float64       // exponent of the key distribution, > 1
	Latency    time.Duration // median latency of the source
	ErrorRate  float64       // fraction of source calls that fail, in [0, 1)
	Outage     time.Duration // length of the outage, centred in the run; 0 for none
	OutageHang time.Duration // how long a source call hangs during the outage before it fails
	Timeout    time.Duration // a client's deadline for one request
	TTL        time.Duration // lifetime of a cached value, in every cache
	Instances  int           // caches per herd setup, sharing one store and one lock
	Seed       uint64        // seed of the key draws and of the source's randomness

	// Setups are the setups to run, in order; nil runs [AllSetups].
	Setups []Kind

	// Store, if set, opens the store of one instance of a herd setup, in
	// place of the in-memory store that the instances share otherwise: a
	// Redis or NATS store, say. Every instance of a setup opens it under the
	// same name, so the instances share its entries and its lock, each
	// through a connection of its own, as processes do; the name tells the
	// setups of a run apart. Run calls the Close of each store it opened,
	// in the order it opened them, when the setup ends.
	Store func(ctx context.Context, name string) (SharedStore, error)
	// StoreName names that store in reports, without credentials; empty
	// is "memory".
	StoreName string
	// NewCache, if set, builds each cache of the herd setups in place of
	// herd.New; name tells the caches of a run apart: "ttl/0", "swr/1".
	NewCache func(name string, s store.Store[string], opts ...herd.Option) *herd.Cache[string]
	// Notes are lines that reports print under the scenario: why a
	// default was changed for this run, say.
	Notes []string
	// Command is the command line that ran the scenario, for reports,
	// without credentials; empty is "herd".
	Command string

	// Progress, if set, is called every ProgressEvery while the clients
	// run, from a goroutine of its own.
	Progress      func(Progress)
	ProgressEvery time.Duration
}

// Defaults is the scenario of a plain "herd" command: 64 clients reading
// 1000 keys for 20 seconds, with a 5-second outage in the middle.
var Defaults = Config{
	Duration:      20 * time.Second,
	Clients:       64,
	Interval:      10 * time.Millisecond,
	Keys:          1000,
	Zipf:          1.1,
	Latency:       50 * time.Millisecond,
	ErrorRate:     0.01,
	Outage:        5 * time.Second,
	OutageHang:    2 * time.Second,
	Timeout:       time.Second,
	TTL:           5 * time.Second,
	Instances:     1,
	Seed:          1,
	ProgressEvery: 100 * time.Millisecond,
}

// A SharedStore is one instance's way into the store that the instances of
// a herd setup share, as processes share a Redis or a NATS bucket.
type SharedStore struct {
	Store  store.Store[string]
	Locker store.Locker // makes the instances load a key once across the fleet
	Close  func()       // releases the store; called once, after the caches are closed
	// Keys, if set, counts the keys that the instances of the setup keep
	// in the store (their entries, and the versions and locks of a remote
	// store), for the long run's samples.
	Keys func(ctx context.Context) (int64, error)
}

// Limits of a Config, so that a typo cannot exhaust the machine.
const (
	MaxClients   = 10_000
	MaxKeys      = 1_000_000
	MaxInstances = 100
)

// Validate reports the first invalid field of c, named as the command's
// flag that sets it, if any: "errors must be at least 0 and below 1, got 2".
func (c *Config) Validate() error {
	for _, d := range []struct {
		name string
		d    time.Duration
	}{
		{"duration", c.Duration},
		{"interval", c.Interval},
		{"latency", c.Latency},
		{"outage hang", c.OutageHang},
		{"timeout", c.Timeout},
		{"ttl", c.TTL},
	} {
		if d.d <= 0 {
			return fmt.Errorf("%s must be positive, got %v", d.name, d.d)
		}
	}
	switch {
	case c.Clients < 1 || c.Clients > MaxClients:
		return fmt.Errorf("clients must be between 1 and %d, got %d", MaxClients, c.Clients)
	case c.Keys < 1 || c.Keys > MaxKeys:
		return fmt.Errorf("keys must be between 1 and %d, got %d", MaxKeys, c.Keys)
	case !(c.Zipf > 1) || math.IsInf(c.Zipf, 0):
		return fmt.Errorf("zipf must be a number greater than 1, got %v", c.Zipf)
	case !(c.ErrorRate >= 0 && c.ErrorRate < 1):
		return fmt.Errorf("errors must be at least 0 and below 1, got %v", c.ErrorRate)
	case c.Outage < 0 || c.Outage >= c.Duration:
		return fmt.Errorf("outage must be at least 0 and shorter than the duration (%v), got %v", c.Duration, c.Outage)
	case c.Instances < 1 || c.Instances > MaxInstances:
		return fmt.Errorf("instances must be between 1 and %d, got %d", MaxInstances, c.Instances)
	case c.Progress != nil && c.ProgressEvery <= 0:
		return fmt.Errorf("progress interval must be positive, got %v", c.ProgressEvery)
	}
	for _, k := range c.Setups {
		if k < NoCache || k > HerdSWR {
			return fmt.Errorf("unknown setup %d", k)
		}
	}
	return nil
}

// LateAfter is how late a request may be sent, after its time, and still
// count as sent on time: a tenth of the client's timeout.
func (c *Config) LateAfter() time.Duration {
	return c.Timeout / 10
}

// OutageWindow returns when the outage starts and ends, counted from the
// start of the run: centred in it. Both are zero when there is no outage.
func (c *Config) OutageWindow() (from, to time.Duration) {
	if c.Outage <= 0 {
		return 0, 0
	}
	from = (c.Duration - c.Outage) / 2
	return from, from + c.Outage
}

// SWRSettings are the options of the [HerdSWR] setup.
type SWRSettings struct {
	RefreshAfter time.Duration
	TTL          time.Duration
	StaleIfError time.Duration
	LoadTimeout  time.Duration
}

// SWR returns the options of the [HerdSWR] setup. A value is refreshed at
// the same age as the other caches reload theirs, [Config.TTL], but in the
// background, while readers get the old value for up to one more TTL. Past
// that, a value is kept an hour, longer than the outage of any sensible run,
// to be served if the source fails. Loads time out after ten times the
// source's median latency, well past its slow tail, and at most half a
// client's timeout, so that a client waiting on a failed load still gets
// the stale value in time.
func (c *Config) SWR() SWRSettings {
	return SWRSettings{
		RefreshAfter: c.TTL,
		TTL:          2 * c.TTL,
		StaleIfError: time.Hour,
		LoadTimeout:  min(10*c.Latency, c.Timeout/2),
	}
}

// A Kind is one way of reading the source.
type Kind int

// The setups, in the order of the report.
const (
	// NoCache calls the source on every request.
	NoCache Kind = iota + 1
	// PlainTTL is what people write by hand: a map behind a mutex, each
	// value kept for the TTL, and every request that misses calls the
	// source, however many others are calling it for the same key.
	PlainTTL
	// Herd is a herd cache with a TTL only: one load per key at a time,
	// and a caller waits for it when its value expired.
	Herd
	// HerdSWR is a herd cache with stale-while-revalidate (RefreshAfter),
	// stale-if-error and a load timeout.
	HerdSWR
)

// AllSetups are the four setups, in the order of the report.
var AllSetups = []Kind{NoCache, PlainTTL, Herd, HerdSWR}

// ID is the setup's name in machine-readable output.
func (k Kind) ID() string {
	switch k {
	case NoCache:
		return "none"
	case PlainTTL:
		return "plain-ttl"
	case Herd:
		return "herd"
	case HerdSWR:
		return "herd-swr"
	}
	return "setup-" + strconv.Itoa(int(k))
}

// String is the setup's name for people.
func (k Kind) String() string {
	switch k {
	case NoCache:
		return "no cache"
	case PlainTTL:
		return "plain TTL map"
	case Herd:
		return "herd (TTL)"
	case HerdSWR:
		return "herd (SWR+SIE)"
	}
	return k.ID()
}

// Progress is a look at a running scenario.
type Progress struct {
	Elapsed  time.Duration // since the clients started
	Duration time.Duration // of the whole run
	Outage   bool          // the source is down now
	Setups   []SetupProgress
}

// SetupProgress is one setup's counts so far.
type SetupProgress struct {
	Kind        Kind
	Requests    uint64
	Errors      uint64
	SourceCalls uint64
}

// A Report is what a scenario measured.
type Report struct {
	Config               Config
	Bucket               time.Duration // width of a timeline bucket
	PeakWindow           time.Duration // the window of SetupReport.PeakCallsPerSec
	OutageFrom, OutageTo time.Duration // the outage window, from the start of the run
	Elapsed              time.Duration // time the run took, its clean-up included
	Interrupted          bool          // the run's context ended before the run did
	Setups               []SetupReport // in the order of Config.Setups
}

// SetupReport is one setup's numbers.
type SetupReport struct {
	Kind            Kind
	Requests        uint64
	Errors          uint64 // requests that failed or timed out
	OutageErrors    uint64 // of those, requests sent during the outage
	Stale           uint64 // requests answered with a value past its refresh time or TTL
	Hits            uint64 // requests answered with a cached value, fresh or stale
	SourceCalls     uint64
	PeakCallsPerSec float64 // the most source calls started in one PeakWindow, per second
	P50, P99, Max   time.Duration
	HerdStats       *herd.Stats // summed over instances; nil for setups that are not herd
	Timeline        []Point

	// What the load generator delivered. Requests were sent; of them, Late
	// were sent more than [Config.LateAfter] after their time, because the
	// machine was too busy to send them sooner. NotSent were due but never
	// sent: their deadline had passed before the machine could send them.
	// LagP99 and LagMax are how late the sent requests were.
	Late, NotSent  uint64
	LagP99, LagMax time.Duration
}

// Due is the number of requests the scenario gave the setup: those sent and
// those the machine could not send.
func (s *SetupReport) Due() uint64 { return s.Requests + s.NotSent }

// Behind is the share of the setup's due requests that were sent late or
// not at all; 0 when none were due.
func (s *SetupReport) Behind() float64 {
	if s.Due() == 0 {
		return 0
	}
	return float64(s.Late+s.NotSent) / float64(s.Due())
}

// ErrorRatio is the share of the requests sent that failed; 0 when none
// were sent.
func (s *SetupReport) ErrorRatio() float64 {
	if s.Requests == 0 {
		return 0
	}
	return float64(s.Errors) / float64(s.Requests)
}

// MaxBehind is the share of a setup's requests that may be sent late or not
// at all before a run is judged not to have delivered its load.
const MaxBehind = 0.01

// A Verdict says whether a run showed what it set out to show.
type Verdict struct {
	// Failing are the herd setups that failed more than half of the
	// requests sent to them.
	Failing []Kind
	// Behind are the setups more than [MaxBehind] of whose requests were
	// sent late or not at all: the machine could not deliver the load, and
	// the numbers of every setup, which share it, are suspect.
	Behind []Kind
}

// OK reports whether the run neither failed nor fell behind.
func (v Verdict) OK() bool { return len(v.Failing) == 0 && len(v.Behind) == 0 }

// Verdict judges the run.
func (r *Report) Verdict() Verdict {
	var v Verdict
	for i := range r.Setups {
		s := &r.Setups[i]
		if (s.Kind == Herd || s.Kind == HerdSWR) && s.ErrorRatio() > 0.5 {
			v.Failing = append(v.Failing, s.Kind)
		}
		if s.Behind() > MaxBehind {
			v.Behind = append(v.Behind, s.Kind)
		}
	}
	return v
}

// HitRatio is Hits over Requests; 0 when there were no requests.
func (s *SetupReport) HitRatio() float64 {
	if s.Requests == 0 {
		return 0
	}
	return float64(s.Hits) / float64(s.Requests)
}

// A Point is one bucket of a setup's timeline. A request is counted in the
// bucket it was sent in, a source call in the bucket it started in.
type Point struct {
	At          time.Duration // start of the bucket, from the start of the run
	Requests    uint64
	Errors      uint64
	SourceCalls uint64
	P99         time.Duration // of the requests sent in the bucket; 0 if none
}

// Run runs scenario c, every setup at once, and reports what each measured.
// It returns when every client and every cache it started has stopped. If
// ctx ends first, the clients stop early, and Run returns the report of the
// part that ran, marked Interrupted, with ctx's error. A Config that does not
// validate is an error.
func Run(ctx context.Context, c Config) (*Report, error) {
	if err := c.Validate(); err != nil {
		return nil, err
	}
	if c.Setups == nil {
		c.Setups = AllSetups
	}
	started := time.Now()
	e := newEngine(&c, started)
	setups := make([]*setup, 0, len(c.Setups))
	for _, k := range c.Setups {
		s, err := e.newSetup(ctx, k)
		if err != nil {
			for _, s := range setups {
				s.close()
			}
			return nil, err
		}
		setups = append(setups, s)
	}

	// The clients' schedule starts now that the setups are ready: opening
	// a remote store takes a while, and must not count as the clients'
	// lag.
	e.start = time.Now()
	clientsCtx, stop := context.WithCancel(ctx)
	defer stop()
	var progress sync.WaitGroup
	if c.Progress != nil {
		progress.Go(func() { e.reportProgress(clientsCtx, setups) })
	}
	var clients sync.WaitGroup
	for _, s := range setups {
		for id := range c.Clients {
			clients.Go(func() { e.client(clientsCtx, s, id) })
		}
	}
	clients.Wait()
	stop()
	progress.Wait()
	for _, s := range setups {
		s.close()
	}

	r := &Report{
		Config:      c,
		Bucket:      e.bucket,
		PeakWindow:  e.peakWindow(),
		Elapsed:     time.Since(started),
		Interrupted: ctx.Err() != nil,
	}
	r.OutageFrom, r.OutageTo = c.OutageWindow()
	for _, s := range setups {
		r.Setups = append(r.Setups, s.report())
	}
	return r, ctx.Err()
}
