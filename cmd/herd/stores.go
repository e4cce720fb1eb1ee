package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net/url"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/redis/go-redis/v9"

	"github.com/herdcache/herd/cmd/herd/internal/sim"
	"github.com/herdcache/herd/natsstore"
	"github.com/herdcache/herd/redisstore"
)

// connectTimeout bounds the connection to a --store server and its first
// answer: an unreachable server is an error at once, not a hung run.
const connectTimeout = 3 * time.Second

// storeOpener gives each herd instance of a run its store on a --store
// server.
type storeOpener = func(ctx context.Context, name string) (sim.SharedStore, error)

// A storeRun is the --store of a run, ready: the server started if the
// command runs it, and checked.
type storeRun struct {
	open storeOpener // gives each instance its store, with the recommended client settings
	name string      // the store as reports name it, without credentials
	url  string      // where the server is
	stop func()      // stops the server the command started; call once every store is closed
}

// useStore prepares the --store of a run: it starts the server that
// nats:embedded or redis:local asks for, and checks that the server
// answers.
func useStore(ctx context.Context, spec string) (*storeRun, error) {
	srv, err := startStore(spec)
	if err != nil {
		return nil, err
	}
	open, err := openStore(ctx, srv.url)
	if err != nil {
		srv.stop()
		return nil, err
	}
	return &storeRun{open: open, name: srv.name, url: srv.url, stop: srv.stop}, nil
}

// openStore checks that the server of a --store URL (already checked by
// checkStore) answers, and returns what gives each instance of a herd setup
// its store there: a connection of its own, as a process of a fleet has,
// under names that the instances of one setup share. Every run writes
// under names of its own, and the last instance of a setup to close removes
// what the setup wrote, so runs never see each other's entries.
func openStore(ctx context.Context, raw string) (storeOpener, error) {
	u, err := url.Parse(raw)
	if err != nil {
		return nil, err
	}
	id := runID()
	switch u.Scheme {
	case "redis", "rediss":
		return openRedis(ctx, raw, id)
	default:
		return openNATS(ctx, raw, id)
	}
}

// runID returns the names of a run's keys and buckets begin with, its own.
func runID() string {
	run := make([]byte, 4)
	_, _ = rand.Read(run)
	return "herd-demo-" + hex.EncodeToString(run)
}

// lastOut counts the open instances of each setup, so that the last one to
// close removes what the setup wrote.
type lastOut struct {
	mu   sync.Mutex
	open map[string]int
}

func (l *lastOut) opened(name string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.open == nil {
		l.open = make(map[string]int)
	}
	l.open[name]++
}

// closed reports whether name has no open instance left.
func (l *lastOut) closed(name string) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.open[name]--
	return l.open[name] == 0
}

// quietRedis drops go-redis's own log lines: the command reports a failed
// connection itself, in one line.
type quietRedis struct{}

func (quietRedis) Printf(context.Context, string, ...any) {}

func openRedis(ctx context.Context, raw, id string) (storeOpener, error) {
	redis.SetLogger(quietRedis{})
	opts, err := redis.ParseURL(raw)
	if err != nil {
		return nil, fmt.Errorf("invalid URL %s: %w", redact(raw), err)
	}
	recommendRedis(opts)
	probeOpts := *opts
	probeOpts.DialTimeout = connectTimeout
	probe := redis.NewClient(&probeOpts)
	defer probe.Close()
	pingCtx, cancel := context.WithTimeout(ctx, connectTimeout)
	defer cancel()
	if err := probe.Ping(pingCtx).Err(); err != nil {
		return nil, fmt.Errorf("store %s is unreachable: %w", redact(raw), err)
	}
	return redisOpener(opts, id), nil
}

// recommendRedis gives opts the settings that redisstore recommends:
// every call ends at its context's deadline, and a dead or hung server
// costs a request one quick retry, not go-redis's default dials, retries
// and waits of seconds.
func recommendRedis(opts *redis.Options) {
	opts.ContextTimeoutEnabled = true
	opts.DialTimeout = 500 * time.Millisecond
	opts.DialerRetries = 1
	opts.ReadTimeout = 500 * time.Millisecond
	opts.WriteTimeout = 500 * time.Millisecond
	opts.PoolTimeout = time.Second
	opts.MaxRetries = 1
}

// redisOpener returns what gives each instance a store of its own, on a
// client of its own made with opts, under keys that the instances of a
// setup share.
func redisOpener(opts *redis.Options, id string) storeOpener {
	var instances lastOut
	return func(_ context.Context, name string) (sim.SharedStore, error) {
		prefix := id + "-" + name
		client := redis.NewClient(opts)
		s := redisstore.New[string](client, redisstore.Prefix(prefix))
		instances.opened(name)
		return sim.SharedStore{Store: s, Locker: s, Close: func() {
			ctx, cancel := context.WithTimeout(context.Background(), connectTimeout)
			defer cancel()
			_ = s.Close(ctx)
			if instances.closed(name) {
				removeRedisKeys(ctx, client, prefix+":*")
			}
			_ = client.Close()
		}, Keys: func(ctx context.Context) (int64, error) {
			return countRedisKeys(ctx, client, prefix+":*")
		}}, nil
	}
}

// countRedisKeys counts the keys that match pattern, with SCAN: a pass
// over the whole database, for a long run's samples.
func countRedisKeys(ctx context.Context, client *redis.Client, pattern string) (int64, error) {
	var n int64
	iter := client.Scan(ctx, 0, pattern, 1000).Iterator()
	for iter.Next(ctx) {
		n++
	}
	return n, iter.Err()
}

// removeRedisKeys deletes the keys a run wrote, in batches, within ctx.
func removeRedisKeys(ctx context.Context, client *redis.Client, pattern string) {
	iter := client.Scan(ctx, 0, pattern, 500).Iterator()
	var batch []string
	for iter.Next(ctx) {
		if batch = append(batch, iter.Val()); len(batch) == 500 {
			client.Unlink(ctx, batch...)
			batch = batch[:0]
		}
	}
	if len(batch) > 0 {
		client.Unlink(ctx, batch...)
	}
}

// connectNATS connects to the NATS server at raw with the settings that
// natsstore recommends: a hung server is noticed within seconds, and a
// write to a hung socket blocks calls for a second at most.
func connectNATS(raw string) (*nats.Conn, jetstream.JetStream, error) {
	nc, err := nats.Connect(raw, nats.Timeout(connectTimeout),
		nats.MaxReconnects(-1), nats.ReconnectWait(time.Second),
		nats.PingInterval(5*time.Second), nats.MaxPingsOutstanding(2),
		nats.FlusherTimeout(time.Second))
	if err != nil {
		return nil, nil, fmt.Errorf("store %s is unreachable: %w", redact(raw), err)
	}
	js, err := jetstream.New(nc, jetstream.WithDefaultTimeout(time.Second))
	if err != nil {
		nc.Close()
		return nil, nil, fmt.Errorf("store %s: %w", redact(raw), err)
	}
	return nc, js, nil
}

func openNATS(ctx context.Context, raw, id string) (storeOpener, error) {
	connect := func() (*nats.Conn, jetstream.JetStream, error) { return connectNATS(raw) }
	probe, js, err := connect()
	if err != nil {
		return nil, err
	}
	defer probe.Close()
	if err := checkNATSVersion(probe.ConnectedServerVersion()); err != nil {
		return nil, fmt.Errorf("store %s: %w", redact(raw), err)
	}
	// JetStream answers, or the run stops here, in one line.
	infoCtx, cancel := context.WithTimeout(ctx, connectTimeout)
	defer cancel()
	if _, err := js.AccountInfo(infoCtx); err != nil {
		return nil, fmt.Errorf("store %s: JetStream: %w", redact(raw), err)
	}
	return natsOpener(connect, raw, id), nil
}

// natsOpener returns what gives each instance a store of its own, on a
// connection of its own made by connect, in a bucket that the instances of
// a setup share.
func natsOpener(connect func() (*nats.Conn, jetstream.JetStream, error), raw, id string, opts ...natsstore.Option) storeOpener {
	var instances lastOut
	return func(ctx context.Context, name string) (sim.SharedStore, error) {
		bucket := id + "-" + name
		nc, js, err := connect()
		if err != nil {
			return sim.SharedStore{}, err
		}
		newCtx, cancel := context.WithTimeout(ctx, connectTimeout)
		defer cancel()
		s, err := natsstore.New[string](newCtx, js, bucket, opts...)
		if err != nil {
			nc.Close()
			return sim.SharedStore{}, fmt.Errorf("store %s: %w", redact(raw), err)
		}
		instances.opened(name)
		return sim.SharedStore{Store: s, Locker: s, Close: func() {
			ctx, cancel := context.WithTimeout(context.Background(), connectTimeout)
			defer cancel()
			_ = s.Close(ctx)
			if instances.closed(name) {
				_ = js.DeleteKeyValue(ctx, bucket)
			}
			nc.Close()
		}, Keys: func(ctx context.Context) (int64, error) {
			// The messages of the bucket's stream: values, and the markers
			// of deletes, expiries and released locks.
			kv, err := js.KeyValue(ctx, bucket)
			if err != nil {
				return 0, err
			}
			st, err := kv.Status(ctx)
			if err != nil {
				return 0, err
			}
			return int64(st.Values()), nil
		}}, nil
	}
}
