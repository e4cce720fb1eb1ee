package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/url"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/redis/go-redis/v9"

	"github.com/herdcache/herd/cmd/herd/internal/proxy"
	"github.com/herdcache/herd/cmd/herd/internal/storeoutage"
	"github.com/herdcache/herd/natsstore"
)

// The store outage phase's windows around the outage: long enough for the
// caches to fill the store before it, and for the probes to find it again
// after it (the first probe windows are 100ms, 200ms, 400ms...).
const (
	outageBefore = 2 * time.Second
	outageAfter  = 3 * time.Second
	// outageTimeout is a Get's deadline in the phase: past one StoreTimeout
	// (1s) and a load, so that what a Get costs shows, not its deadline.
	outageTimeout = 5 * time.Second
)

// defaultStoreOutage is the default of --store-outage.
const defaultStoreOutage = 3 * time.Second

// memoryOutageNote is what the output says of the store outage phase on
// the memory store.
const memoryOutageNote = "store outage phase: not run: the memory store is in this process, with no server " +
	"to cut. Run with --store redis:local or --store nats:embedded to see what herd does when the store's " +
	"server stops answering."

// A cutLink is a way to the --store server through a proxy that the
// command owns and can cut, and the stores of the instances that go
// through it.
type cutLink struct {
	proxy  *proxy.Proxy
	open   storeOpener // a store per instance, its client at its defaults, through the proxy
	client string      // the client and its settings, for reports
}

// newCutLink starts a proxy in front of the server at raw, a --store URL,
// and returns it with an opener of stores that reach the server through
// it, each on a client of its own. With defaults, the client is at its
// defaults: no timeout, no retry set, as a newcomer's first client is;
// otherwise it has the settings that redisstore and natsstore recommend,
// as the run's other stores do.
func newCutLink(ctx context.Context, raw string, defaults bool) (*cutLink, error) {
	u, err := url.Parse(raw)
	if err != nil {
		return nil, err
	}
	target := u.Host
	if u.Port() == "" {
		port := "4222"
		if u.Scheme == "redis" || u.Scheme == "rediss" {
			port = "6379"
		}
		target = net.JoinHostPort(u.Hostname(), port)
	}
	p, err := proxy.Start(target)
	if err != nil {
		return nil, err
	}
	through := *u
	through.Host = p.Addr()
	l := &cutLink{proxy: p}
	switch {
	case !defaults:
		if l.open, err = openStore(ctx, through.String()); err != nil {
			p.Close()
			return nil, err
		}
		l.client = "the settings that redisstore and natsstore recommend"
	case u.Scheme == "redis" || u.Scheme == "rediss":
		opts, err := redis.ParseURL(through.String())
		if err != nil {
			p.Close()
			return nil, fmt.Errorf("invalid URL %s: %w", redact(raw), err)
		}
		l.open = redisOpener(opts, runID())
		l.client = "go-redis v9 at its defaults (read timeout 3s, 3 retries, ContextTimeoutEnabled false)"
	default:
		connect := func() (*nats.Conn, jetstream.JetStream, error) {
			nc, err := nats.Connect(through.String())
			if err != nil {
				return nil, nil, fmt.Errorf("store %s is unreachable: %w", redact(raw), err)
			}
			js, err := jetstream.New(nc)
			if err != nil {
				nc.Close()
				return nil, nil, fmt.Errorf("store %s: %w", redact(raw), err)
			}
			return nc, js, nil
		}
		l.open = natsOpener(connect, raw, runID(), natsstore.WithLogger(slog.New(slog.DiscardHandler)))
		l.client = "nats.go at its defaults (ping every 2m, reconnect every 2s, JetStream calls 5s)"
	}
	return l, nil
}

// Cut makes the server unreachable from the link's stores.
func (l *cutLink) Cut(f proxy.Fault) { l.proxy.Cut(f) }

// Restore makes it reachable again.
func (l *cutLink) Restore() error { return l.proxy.Restore() }

// runStoreOutage runs the store outage phase of o over the server at url
// and returns what it measured.
func runStoreOutage(ctx context.Context, o *options, st *storeRun, stderr io.Writer) (*storeoutage.Result, error) {
	link, err := newCutLink(ctx, st.url, true)
	if err != nil {
		return nil, fmt.Errorf("store outage: %w", err)
	}
	defer link.proxy.Close()
	c := storeoutage.Config{
		Clients: o.cfg.Clients, Interval: o.cfg.Interval, Keys: o.cfg.Keys, Zipf: o.cfg.Zipf,
		Instances: o.cfg.Instances, Latency: o.cfg.Latency, TTL: o.cfg.TTL,
		Before: outageBefore, Outage: o.storeOutage, After: outageAfter, Timeout: outageTimeout,
		Fault: o.storeFault, Seed: o.cfg.Seed, Open: link.open, Link: link,
		StoreName: st.name, Client: link.client,
	}
	fmt.Fprintf(stderr, "store outage: the server %s for %s, after %s\n", faultVerb(o.storeFault), c.Outage, c.Before)
	r, err := storeoutage.Run(ctx, c)
	if err != nil {
		return nil, fmt.Errorf("store outage: %w", err)
	}
	return r, nil
}

// faultVerb says what a fault does to the server.
func faultVerb(f proxy.Fault) string {
	if f == proxy.Refuse {
		return "refuses connections"
	}
	return "hangs"
}
