package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"net/url"
	"strings"
	"time"

	"github.com/herdcache/herd/cmd/herd/internal/fleet"
	"github.com/herdcache/herd/cmd/herd/internal/proxy"
	"github.com/herdcache/herd/cmd/herd/internal/sim"
	"github.com/herdcache/herd/cmd/herd/internal/soak"
)

// options are the parsed flags.
type options struct {
	cfg   sim.Config
	json  bool
	html  string
	store string
	fleet *fleet.Config // the fleet scenario, with --fleet
	batch *batchConfig  // the batch scenario, with --batch
	soak  *soak.Config  // the long run, with --soak; its Sim is cfg when it runs

	checkCalls int // the calls of a phase of the history check, with --check; 0 without

	metricsAddr string // --metrics-addr: where to serve /metrics, or ""

	// storeOutage is how long the store's server is unreachable in the
	// store outage phase (and in the fleet's outage phase); 0 for no
	// phase. It is 0 on the memory store, which has no server to cut.
	storeOutage time.Duration
	storeFault  proxy.Fault // how the server is unreachable then
}

// remoteClients is the default of --clients over a remote store. Each
// request of a herd setup is then a round trip to the server, and the
// clients of all four setups, the server and the herd instances share the
// machine: 16 clients (1,600 requests a second per setup) is what a 2-core
// machine sends on time, with room to spare, over Redis or NATS on
// loopback, where 64 falls behind.
const remoteClients = 16

// defaultOutage is the default of --outage: a quarter of the run, 5s of
// the default 20s.
func defaultOutage(duration time.Duration) time.Duration {
	return duration / 4
}

// errHelp is returned by parseFlags for -h and --help.
var errHelp = errors.New("help requested")

const usage = `herd shows what herd does to a source of truth under load: it runs the same
clients against a simulated source with no cache, a hand-written TTL map,
herd with a TTL, and herd with stale-while-revalidate and stale-if-error,
with an outage in the middle, and prints a table of what each setup cost the
source and what its clients saw.

Usage: herd [flags]

Flags:
  --duration d    how long the clients send requests (default 20s)
  --clients n     clients per setup, each sending 100 requests a second
                  (default 64; 16 with a --store other than memory)
  --keys n        distinct keys, drawn with a Zipf distribution (default 1000)
  --latency d     median latency of the source (default 50ms)
  --errors f      share of source calls that fail, in [0, 1) (default 0.01)
  --outage d      how long the source is down, in the middle of the run; 0 for never
                  (default a quarter of --duration: 5s)
  --ttl d         how long a cached value is fresh (default 5s)
  --timeout d     a client's deadline for one request (default 1s)
  --instances n   herd caches per herd setup, sharing one store and one lock (default 1)
  --store s       where the herd caches keep their entries: memory; nats:embedded, a
                  nats-server run in the command; redis:local, the redis-server on PATH
                  run for the command; redis://host:port/db or nats://host:port, a
                  server of yours (default memory)
  --seed n        seed of the random draws (default 1)
  --json          print the results as JSON instead of a table
  --html file     also write a self-contained HTML page with charts over time
  --metrics-addr a serve the Prometheus metrics of the herd caches at http://a/metrics
                  while the run lasts, a being host:port such as :9090 (not with --fleet)
  --store-outage d how long the --store server is unreachable in the store outage phase:
                  after the run, herd caches over the server, their client at its defaults,
                  take Gets while a proxy in front of the server cuts it off, then restores
                  it; with --fleet, each setup over the server gets such a phase. 0 for
                  none; only with a --store server, as the memory store has none to cut
                  (default 3s)
  --store-fault f how the server is unreachable in the outage phase: hang (connections
                  stay open, nothing is answered: a stopped server, a partition) or
                  refuse (connections are closed and refused: a server that exited)
                  (default hang)
  --fleet         run the fleet scenario instead: --instances caches (default 3) read
                  and a writer sets keys through them, in three setups (memory per
                  instance, the --store alone, two-level over it), 5s each by default
  --writes n      writes a second in the fleet scenario (default 50)
  --allowance d   delivery time granted to a write in the fleet scenario before a read
                  of the older value counts as stale (default 50ms)
  --batch         run the batch scenario instead: --clients Get new keys through herd
                  without and with herd.Batch, and the table shows the source calls
                  a second of each, 5s each by default
  --max-batch n   keys per source call in the batch scenario (default 100)
  --max-wait d    how long a batch waits for more keys in the batch scenario (default 2ms)
  --soak          run the long run instead: herd (SWR+SIE) alone for --duration (default
                  10m, no outage), sampling the live heap, goroutines, open files and
                  store keys, with a verdict on any that grows in the second half
  --sample d      time between two samples of the long run (default --duration / 120,
                  at least 100ms)
  --check         run the history check instead: 3 two-level instances over the --store
                  server (not memory), each through a proxy of its own, and a plain writer
                  read and write while one instance stalls, another is partitioned, every
                  instance is cut (and, on Redis, the tracking connections are killed);
                  every call is checked for bounded staleness, read-your-writes and
                  monotonic reads
  --check-calls n calls of each phase of the history check, healthy or under a fault;
                  larger for a longer check (default 2000)

Progress goes to standard error: a bar on a terminal, plain lines elsewhere
or when CI=true. Under the table, a line says whether this machine sent the
requests on time; the summary of what herd saved is printed only over a
sound run.

Exit status: 0 a sound run; 1 an output could not be written, or the history
check found a violation or did not finish; 2 a bad flag
or store; 3 a herd setup failed more than half of its requests; 4 the
machine could not send the requests on time; 5 a long run saw a resource
grow; 130 interrupted.
`

// parseFlags parses the command's arguments into options and checks them.
// Its errors are one line, naming the flag.
func parseFlags(args []string) (options, error) {
	o := options{cfg: sim.Defaults}
	fs := flag.NewFlagSet("herd", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.Usage = func() {}
	c := &o.cfg
	fs.DurationVar(&c.Duration, "duration", c.Duration, "")
	fs.IntVar(&c.Clients, "clients", c.Clients, "")
	fs.IntVar(&c.Keys, "keys", c.Keys, "")
	fs.DurationVar(&c.Latency, "latency", c.Latency, "")
	fs.Float64Var(&c.ErrorRate, "errors", c.ErrorRate, "")
	fs.DurationVar(&c.Outage, "outage", c.Outage, "")
	fs.DurationVar(&c.TTL, "ttl", c.TTL, "")
	fs.DurationVar(&c.Timeout, "timeout", c.Timeout, "")
	fs.IntVar(&c.Instances, "instances", c.Instances, "")
	fs.Uint64Var(&c.Seed, "seed", c.Seed, "")
	fs.StringVar(&o.store, "store", "memory", "")
	fs.BoolVar(&o.json, "json", false, "")
	fs.StringVar(&o.html, "html", "", "")
	fs.StringVar(&o.metricsAddr, "metrics-addr", "", "")
	fs.DurationVar(&o.storeOutage, "store-outage", defaultStoreOutage, "")
	fault := fs.String("store-fault", proxy.Hang.String(), "")
	ff := addFleetFlags(fs)
	bf := addBatchFlags(fs)
	sf := addSoakFlags(fs)
	cf := addCheckFlags(fs)
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return o, errHelp
		}
		return o, fmt.Errorf("%w (see herd -h)", err)
	}
	if fs.NArg() > 0 {
		return o, fmt.Errorf("unexpected argument %q (see herd -h)", fs.Arg(0))
	}
	if err := checkStore(o.store); err != nil {
		return o, err
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	if calls, err := cf.config(&o, set); err != nil || calls > 0 {
		o.checkCalls = calls
		return o, err
	}
	if err := checkMetricsAddr(o.metricsAddr, set["fleet"]); err != nil {
		return o, err
	}
	if err := o.checkStoreOutage(*fault, set, sf.on || bf.on); err != nil {
		return o, err
	}
	switch {
	case sf.on && (set["fleet"] || set["batch"]):
		return o, errors.New("--soak runs its own scenario: not with --fleet or --batch (see herd -h)")
	case !sf.on && set["sample"]:
		return o, errors.New("--sample needs --soak (see herd -h)")
	}
	if bc, err := bf.config(&o, set); err != nil || bc != nil {
		o.batch = bc
		return o, err
	}
	if fc, err := ff.config(&o, set); err != nil || fc != nil {
		o.fleet = fc
		return o, err
	}
	if !set["outage"] {
		c.Outage = defaultOutage(c.Duration)
	}
	if !set["clients"] && o.store != "memory" {
		c.Clients = remoteClients
		c.Notes = append(c.Notes, fmt.Sprintf(
			"load scaled down for a remote store: %d clients instead of %d, as each herd request is a round trip to the server (set --clients to choose)",
			remoteClients, sim.Defaults.Clients))
	}
	if sc, err := sf.config(&o, set); err != nil || sc != nil {
		o.soak = sc
		return o, err
	}
	if err := o.cfg.Validate(); err != nil {
		return o, fmt.Errorf("--%w", err)
	}
	return o, nil
}

// checkStoreOutage checks --store-outage and --store-fault, set naming
// the flags given, and sets o's phase: none on the memory store (which has
// no server to cut), in a long run or a batch run (other scenarios, with
// no outage phase), or with --store-outage 0.
func (o *options) checkStoreOutage(fault string, set map[string]bool, otherScenario bool) error {
	f, err := proxy.ParseFault(fault)
	if err != nil {
		return fmt.Errorf("--store-fault: %w (see herd -h)", err)
	}
	o.storeFault = f
	given := set["store-outage"] || set["store-fault"]
	switch {
	case o.storeOutage < 0:
		return fmt.Errorf("--store-outage must be at least 0, got %v", o.storeOutage)
	case given && otherScenario:
		return errors.New("--store-outage and --store-fault do not apply to --soak or --batch, which have no store outage phase (see herd -h)")
	case given && o.store == "memory" && o.storeOutage > 0:
		return errors.New("--store-outage and --store-fault need a --store server: the memory store is in this process, with no server to cut (see herd -h)")
	case set["store-fault"] && o.storeOutage == 0:
		return errors.New("--store-fault needs a store outage: not with --store-outage 0 (see herd -h)")
	case otherScenario || o.store == "memory":
		o.storeOutage = 0
	}
	return nil
}

// checkStore checks the --store flag: "memory", or the URL of a server.
func checkStore(s string) error {
	switch s {
	case "memory", storeNATSEmbedded, storeRedisLocal:
		return nil
	}
	u, err := url.Parse(s)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return fmt.Errorf("--store: invalid URL %q: %w", redact(s), err)
	}
	shown := redact(s) // in messages: without a password
	switch u.Scheme {
	case "redis", "rediss", "nats", "tls":
		if u.Opaque != "" { // nats:something, not nats://host
			return fmt.Errorf("--store: unknown store %q: want memory, nats:embedded, redis:local, redis://host:port/db or nats://host:port", shown)
		}
	case "":
		return fmt.Errorf("--store: unknown store %q: want memory, nats:embedded, redis:local, redis://host:port/db or nats://host:port", shown)
	default:
		return fmt.Errorf("--store: unknown scheme %q in %q: want memory, nats:embedded, redis:local, redis://host:port/db or nats://host:port", u.Scheme, shown)
	}
	if u.Host == "" || u.Hostname() == "" {
		return fmt.Errorf("--store: invalid URL %q: no host", shown)
	}
	return nil
}

// redact hides the user information of a store URL, which may hold a
// password: redis://xxxxx@host.
func redact(s string) string {
	at := strings.LastIndex(s, "@")
	if at < 0 {
		return s
	}
	from := 0
	if i := strings.Index(s, "://"); i >= 0 && i < at {
		from = i + len("://")
	}
	return s[:from] + "xxxxx" + s[at:]
}
