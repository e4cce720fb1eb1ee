package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/url"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/redis/go-redis/v9"

	"github.com/herdcache/herd/cmd/herd/internal/proxy"
	"github.com/herdcache/herd/internal/fleetcheck"
	"github.com/herdcache/herd/internal/history"
	"github.com/herdcache/herd/natsstore"
	"github.com/herdcache/herd/redisstore"
	"github.com/herdcache/herd/store"
	"github.com/herdcache/herd/store/tiered"
)

// checkInstances is the number of two-level instances of a history check.
const checkInstances = 3

// defaultCheckCalls is the default of --check-calls.
const defaultCheckCalls = 2000

// checkBounds are the bounds of the history check (see the fleetcheck
// package): its servers are on loopback.
var checkBounds = fleetcheck.Loopback

// checkFlags are the flags of the history check.
type checkFlags struct {
	on    bool
	calls int
}

// addCheckFlags defines --check and --check-calls on fs.
func addCheckFlags(fs *flag.FlagSet) *checkFlags {
	f := &checkFlags{calls: defaultCheckCalls}
	fs.BoolVar(&f.on, "check", false, "")
	fs.IntVar(&f.calls, "check-calls", f.calls, "")
	return f
}

// config checks the flags of a history check, set naming those given, and
// returns the number of calls of a phase; 0, with no error, without
// --check.
func (f *checkFlags) config(o *options, set map[string]bool) (int, error) {
	if !f.on {
		if set["check-calls"] {
			return 0, errors.New("--check-calls needs --check (see herd -h)")
		}
		return 0, nil
	}
	for _, name := range []string{"fleet", "batch", "soak", "json", "html", "metrics-addr"} {
		if set[name] {
			return 0, fmt.Errorf("--check runs its own scenario: not with --%s (see herd -h)", name)
		}
	}
	if o.store == "memory" {
		return 0, errors.New("--check needs a store server, whose connections it cuts and stalls: " +
			"run it with --store redis:local, --store nats:embedded or a server's URL (see herd -h)")
	}
	if f.calls <= 0 {
		return 0, fmt.Errorf("--check-calls must be positive, got %d (see herd -h)", f.calls)
	}
	return f.calls, nil
}

// A checkFleet is what a history check runs over: the instances' stores,
// each over a client of its own through a proxy of its own, the plain
// writer, and the faults that the store's server allows beyond the
// proxies'.
type checkFleet struct {
	stores  []store.Store[string]
	proxies []*proxy.Proxy
	plain   fleetcheck.Plain
	extra   []fleetcheck.Fault // faults of the server itself, run first
	what    string             // the stores, for the report
	closers []func()           // run in reverse order by close
}

// close closes what the fleet opened, the last opened first.
func (f *checkFleet) close() {
	for i := len(f.closers) - 1; i >= 0; i-- {
		f.closers[i]()
	}
}

// onClose adds a step to close.
func (f *checkFleet) onClose(c func()) { f.closers = append(f.closers, c) }

// newCheckFleet opens the fleet of a history check over the server at raw,
// a --store URL. On an error, it has closed what it opened.
func newCheckFleet(ctx context.Context, raw string) (f *checkFleet, err error) {
	u, err := url.Parse(raw)
	if err != nil {
		return nil, err
	}
	f = &checkFleet{}
	defer func() {
		if err != nil {
			f.close()
		}
	}()
	redisURL := u.Scheme == "redis" || u.Scheme == "rediss"
	target := u.Host
	if u.Port() == "" {
		port := "4222"
		if redisURL {
			port = "6379"
		}
		target = net.JoinHostPort(u.Hostname(), port)
	}
	for range checkInstances {
		p, perr := proxy.Start(target)
		if perr != nil {
			return nil, perr
		}
		f.onClose(p.Close)
		f.proxies = append(f.proxies, p)
	}
	// Every Get of the far store and the near tier's clock are the run's;
	// the instances log nowhere.
	quiet := slog.New(slog.DiscardHandler)
	var fars []store.Versioned[string]
	if redisURL {
		fars, err = f.openRedis(raw, quiet)
	} else {
		fars, err = f.openNATS(ctx, raw, quiet)
	}
	if err != nil {
		return nil, err
	}
	for _, far := range fars {
		s, err := tiered.NewVersioned[string](far, tiered.NearTTL(checkBounds.NearTTL))
		if err != nil {
			return nil, err
		}
		// fleetcheck.Run closes the two-level stores (through their
		// caches); closing one twice is harmless.
		f.onClose(func() { _ = s.Close(context.Background()) })
		f.stores = append(f.stores, s)
	}
	return f, nil
}

// through is raw with its host the proxy's address.
func through(raw string, p *proxy.Proxy) string {
	u, _ := url.Parse(raw) // parsed by newCheckFleet
	u.Host = p.Addr()
	return u.String()
}

// openRedis opens the far stores over Redis, under a prefix of the run's
// own, the plain writer (redis-cli's SET and DEL of the bytes a herd
// writer of the JSON codec writes) and the killing of the tracking
// connections.
func (f *checkFleet) openRedis(raw string, quiet *slog.Logger) ([]store.Versioned[string], error) {
	redis.SetLogger(quietRedis{})
	opts, err := redis.ParseURL(raw)
	if err != nil {
		return nil, fmt.Errorf("invalid URL %s: %w", redact(raw), err)
	}
	recommendRedis(opts)
	prefix := runID() + "-check"
	direct := redis.NewClient(opts) // the plain writer and the admin, not through a proxy
	f.onClose(func() {
		ctx, cancel := context.WithTimeout(context.Background(), connectTimeout)
		defer cancel()
		removeRedisKeys(ctx, direct, prefix+":*")
		_ = direct.Close()
	})
	var fars []store.Versioned[string]
	for _, p := range f.proxies {
		o := *opts
		o.Addr = p.Addr()
		client := redis.NewClient(&o)
		far := redisstore.New[string](client, redisstore.Prefix(prefix), redisstore.WithLogger(quiet))
		f.onClose(func() {
			_ = far.Close(context.Background())
			_ = client.Close()
		})
		fars = append(fars, far)
	}
	keyOf := redisstore.New[string](direct, redisstore.Prefix(prefix)).Key
	f.plain = fleetcheck.PlainBytes(func(ctx context.Context, key string, data []byte) error {
		return direct.Set(ctx, keyOf(key), data, 0).Err()
	}, func(ctx context.Context, key string) error { return direct.Del(ctx, keyOf(key)).Err() })
	f.extra = []fleetcheck.Fault{{
		What: "tracking connections killed (CLIENT KILL TYPE pubsub)", Instance: history.Everyone,
		Bound: checkBounds.Fault(),
		Inject: func() error {
			ctx, cancel := context.WithTimeout(context.Background(), connectTimeout)
			defer cancel()
			return direct.ClientKillByFilter(ctx, "TYPE", "pubsub").Err()
		},
	}}
	f.what = "two-level stores (tiered.NewVersioned over redisstore)"
	return fars, nil
}

// openNATS opens the far stores over NATS, in a bucket of the run's own,
// and the plain writer (KV Put and Delete of the bytes a herd writer of
// the JSON codec writes, under the store's names).
func (f *checkFleet) openNATS(ctx context.Context, raw string, quiet *slog.Logger) ([]store.Versioned[string], error) {
	bucket := runID() + "-check"
	var fars []store.Versioned[string]
	for _, p := range f.proxies {
		nc, js, err := connectNATS(through(raw, p))
		if err != nil {
			return nil, err
		}
		f.onClose(nc.Close)
		newCtx, cancel := context.WithTimeout(ctx, connectTimeout)
		far, err := natsstore.New[string](newCtx, js, bucket, natsstore.WithLogger(quiet))
		cancel()
		if err != nil {
			return nil, fmt.Errorf("store %s: %w", redact(raw), err)
		}
		f.onClose(func() { _ = far.Close(context.Background()) })
		fars = append(fars, far)
	}
	nc, js, err := connectNATS(raw) // the plain writer, not through a proxy
	if err != nil {
		return nil, err
	}
	f.onClose(func() {
		delCtx, cancel := context.WithTimeout(context.Background(), connectTimeout)
		defer cancel()
		_ = js.DeleteKeyValue(delCtx, bucket)
		nc.Close()
	})
	kvCtx, cancel := context.WithTimeout(ctx, connectTimeout)
	defer cancel()
	kv, err := js.KeyValue(kvCtx, bucket)
	if err != nil {
		return nil, fmt.Errorf("store %s: %w", redact(raw), err)
	}
	f.plain = natsPlain(kv)
	f.what = "two-level stores (tiered.NewVersioned over natsstore)"
	return fars, nil
}

// natsPlain is a plain writer of kv. natsstore keeps key k under "d.k"
// and k escaped; the keys of a check ("k0", "probe") need no escaping.
func natsPlain(kv jetstream.KeyValue) fleetcheck.Plain {
	return fleetcheck.PlainBytes(func(ctx context.Context, key string, data []byte) error {
		_, err := kv.Put(ctx, "d.k"+key, data)
		return err
	}, func(ctx context.Context, key string) error { return kv.Delete(ctx, "d.k"+key) })
}

// faults are the nemesis of a check: the server's own faults, then one
// instance stalled, another partitioned, and every instance cut at once.
func (f *checkFleet) faults() []fleetcheck.Fault {
	bound := checkBounds.Fault()
	every := func(do func(*proxy.Proxy) error) func() error {
		return func() error {
			var errs []error
			for _, p := range f.proxies {
				errs = append(errs, do(p))
			}
			return errors.Join(errs...)
		}
	}
	cut := func(fault proxy.Fault) func(*proxy.Proxy) error {
		return func(p *proxy.Proxy) error { p.Cut(fault); return nil }
	}
	restore := func(p *proxy.Proxy) error { return p.Restore() }
	one := func(i int, do func(*proxy.Proxy) error) func() error {
		return func() error { return do(f.proxies[i]) }
	}
	return append(append([]fleetcheck.Fault(nil), f.extra...),
		fleetcheck.Fault{
			What: "instance 1 stalled", Instance: 1, Bound: bound,
			Inject: one(1, cut(proxy.Hang)), Heal: one(1, restore),
		},
		fleetcheck.Fault{
			What: "instance 2 partitioned", Instance: 2, Bound: bound,
			Inject: one(2, cut(proxy.Refuse)), Heal: one(2, restore),
		},
		fleetcheck.Fault{
			What: "every instance cut", Instance: history.Everyone, Bound: bound,
			Inject: every(cut(proxy.Refuse)), Heal: every(restore),
		},
	)
}

// checkLimit bounds a check of calls calls a phase: a minute for the
// faults, and a millisecond a call of each phase (a fleet makes thousands
// of calls a second on loopback).
func checkLimit(calls, phases int) time.Duration {
	return time.Minute + time.Duration(calls*phases)*time.Millisecond
}

// shownViolations is how many violations a check prints.
const shownViolations = 10

// runCheck runs the history check over the --store server: the faults,
// the history's figures and the verdict to stdout, what runs to stderr.
// It returns exitViolation if the history breaks a rule or the check
// could not finish.
func runCheck(ctx context.Context, o *options, stdout, stderr io.Writer) int {
	srv, err := startStore(o.store)
	if err != nil {
		fmt.Fprintf(stderr, "herd: %v\n", err)
		return exitUsage
	}
	defer srv.stop()
	fl, err := newCheckFleet(ctx, srv.url)
	if err != nil {
		fmt.Fprintf(stderr, "herd: %v\n", err)
		return exitUsage
	}
	defer fl.close()
	faults := fl.faults()
	limit := checkLimit(o.checkCalls, len(faults)+1)
	fmt.Fprintf(stdout, "check: %d %s on %s, each through a proxy of its own, and a plain writer; "+
		"%d calls a phase, %d faults\n", checkInstances, fl.what, srv.name, o.checkCalls, len(faults))
	fmt.Fprintf(stderr, "check: running (at most %v)\n", limit)
	runCtx, cancel := context.WithTimeout(ctx, limit)
	defer cancel()
	res, err := fleetcheck.Run(runCtx, fleetcheck.Config{
		Stores: fl.stores, Plain: []fleetcheck.Plain{fl.plain}, Faults: faults,
		PhaseCalls: o.checkCalls, ProbeWithin: checkBounds.ProbeWithin(), Check: checkBounds.Check(),
		Seed: o.cfg.Seed,
	})
	for _, f := range res.Faults {
		fmt.Fprintf(stdout, "fault: %v\n", f)
	}
	var longest time.Duration
	for _, s := range res.Stalls {
		longest = max(longest, s.End-s.Start)
	}
	fmt.Fprintf(stdout, "the process stalled %d times (longest %v)\n", len(res.Stalls), longest.Round(time.Millisecond))
	if err != nil {
		if ctx.Err() != nil {
			fmt.Fprintf(stderr, "herd: interrupted\n")
			return exitInterrupted
		}
		fmt.Fprintf(stdout, "verdict: the check did not finish: %v\n", err)
		return exitViolation
	}
	r := res.Report
	fmt.Fprintf(stdout, "history: %v\n", r)
	for i, v := range r.Violations {
		if i == shownViolations {
			fmt.Fprintf(stdout, "and %d more violations\n", len(r.Violations)-i)
			break
		}
		fmt.Fprintf(stdout, "violation: %v\n", v)
	}
	if len(r.Violations) > 0 {
		fmt.Fprintf(stdout, "verdict: FAIL: %d violations\n", len(r.Violations))
		return exitViolation
	}
	fmt.Fprintf(stdout, "verdict: ok: no violation in %d operations: staleness within bounds "+
		"(%v healthy, %v under a fault), every instance read its own writes, no read went back\n",
		r.Ops, checkBounds.Delivery, checkBounds.Fault())
	return exitOK
}
