package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net/url"
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

// openStore connects to the server of a --store URL (already checked by
// checkStore) and returns what gives each herd setup its store there, and a
// function that closes the connection. Every run writes under names of its
// own and removes what it wrote, so runs never see each other's entries.
func openStore(ctx context.Context, raw string) (func(context.Context, string) (sim.SharedStore, error), func(), error) {
	u, err := url.Parse(raw)
	if err != nil {
		return nil, nil, err
	}
	run := make([]byte, 4)
	_, _ = rand.Read(run)
	id := "herd-demo-" + hex.EncodeToString(run)
	switch u.Scheme {
	case "redis", "rediss":
		return openRedis(ctx, raw, id)
	default:
		return openNATS(ctx, raw, id)
	}
}

// quietRedis drops go-redis's own log lines: the command reports a failed
// connection itself, in one line.
type quietRedis struct{}

func (quietRedis) Printf(context.Context, string, ...any) {}

func openRedis(ctx context.Context, raw, id string) (func(context.Context, string) (sim.SharedStore, error), func(), error) {
	redis.SetLogger(quietRedis{})
	opts, err := redis.ParseURL(raw)
	if err != nil {
		return nil, nil, fmt.Errorf("invalid URL %s: %w", redact(raw), err)
	}
	opts.ContextTimeoutEnabled = true
	opts.DialTimeout = connectTimeout
	opts.MaxRetries = 1
	client := redis.NewClient(opts)
	pingCtx, cancel := context.WithTimeout(ctx, connectTimeout)
	defer cancel()
	if err := client.Ping(pingCtx).Err(); err != nil {
		_ = client.Close()
		return nil, nil, fmt.Errorf("store %s is unreachable: %w", redact(raw), err)
	}
	open := func(_ context.Context, name string) (sim.SharedStore, error) {
		prefix := id + "-" + name
		s := redisstore.New[string](client, redisstore.Prefix(prefix))
		return sim.SharedStore{Store: s, Locker: s, Close: func() {
			ctx, cancel := context.WithTimeout(context.Background(), connectTimeout)
			defer cancel()
			_ = s.Close(ctx)
			removeRedisKeys(ctx, client, prefix+":*")
		}}, nil
	}
	return open, func() { _ = client.Close() }, nil
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

func openNATS(ctx context.Context, raw, id string) (func(context.Context, string) (sim.SharedStore, error), func(), error) {
	nc, err := nats.Connect(raw, nats.Timeout(connectTimeout), nats.MaxReconnects(-1))
	if err != nil {
		return nil, nil, fmt.Errorf("store %s is unreachable: %w", redact(raw), err)
	}
	js, err := jetstream.New(nc)
	if err != nil {
		nc.Close()
		return nil, nil, fmt.Errorf("store %s: %w", redact(raw), err)
	}
	open := func(ctx context.Context, name string) (sim.SharedStore, error) {
		bucket := id + "-" + name
		newCtx, cancel := context.WithTimeout(ctx, connectTimeout)
		defer cancel()
		s, err := natsstore.New[string](newCtx, js, bucket)
		if err != nil {
			return sim.SharedStore{}, fmt.Errorf("store %s: %w", redact(raw), err)
		}
		return sim.SharedStore{Store: s, Locker: s, Close: func() {
			ctx, cancel := context.WithTimeout(context.Background(), connectTimeout)
			defer cancel()
			_ = s.Close(ctx)
			_ = js.DeleteKeyValue(ctx, bucket)
		}}, nil
	}
	return open, nc.Close, nil
}
