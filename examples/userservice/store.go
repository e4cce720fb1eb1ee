package userservice

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/redis/go-redis/v9"

	"github.com/herdcache/herd/natsstore"
	"github.com/herdcache/herd/redisstore"
	"github.com/herdcache/herd/store"
	"github.com/herdcache/herd/store/memory"
	"github.com/herdcache/herd/store/tiered"
)

// keyspace is the Redis key prefix and the NATS bucket of the profiles.
const keyspace = "userservice-profiles"

// A sharedStore is the cache's store, and, over Redis or NATS, the lock the
// instances share and what to close after the cache.
type sharedStore struct {
	store  store.Store[Profile]
	locker store.Locker                    // nil for the memory store: one process
	close  func(ctx context.Context) error // the far store and its connection
}

// openStore returns the store of c: memory, or the two-level store over
// the Redis or NATS server of c.
func openStore(ctx context.Context, c *Config) (*sharedStore, error) {
	switch {
	case c.Redis != "":
		return openRedis(ctx, c.Redis)
	case c.NATS != "":
		return openNATS(ctx, c.NATS)
	}
	return &sharedStore{store: memory.New[Profile](memory.MaxEntries(100_000))}, nil
}

// near is the two-level store over far: a near tier of 100,000 profiles
// in this process, kept coherent by far's change stream.
func near(far store.Versioned[Profile]) (*tiered.VersionedStore[Profile], error) {
	return tiered.NewVersioned[Profile](far, tiered.NearMaxEntries(100_000), tiered.NearTTL(30*time.Second))
}

func openRedis(ctx context.Context, url string) (*sharedStore, error) {
	opts, err := redis.ParseURL(url)
	if err != nil {
		return nil, fmt.Errorf("userservice: redis: %w", err)
	}
	// The settings redisstore recommends: a dead server costs a request a
	// quick failure (and the cache a load), not go-redis's default waits.
	opts.ContextTimeoutEnabled = true
	opts.DialTimeout = 500 * time.Millisecond
	opts.DialerRetries = 1
	opts.ReadTimeout = 500 * time.Millisecond
	opts.WriteTimeout = 500 * time.Millisecond
	opts.PoolTimeout = time.Second
	opts.MaxRetries = 1
	client := redis.NewClient(opts)
	if perr := client.Ping(ctx).Err(); perr != nil {
		_ = client.Close()
		return nil, fmt.Errorf("userservice: redis: %w", perr)
	}
	far := redisstore.New[Profile](client, redisstore.Prefix(keyspace))
	st, err := near(far)
	if err != nil {
		_ = far.Close(ctx)
		_ = client.Close()
		return nil, fmt.Errorf("userservice: redis: %w", err)
	}
	return &sharedStore{store: st, locker: far, close: func(ctx context.Context) error {
		return errors.Join(far.Close(ctx), client.Close())
	}}, nil
}

func openNATS(ctx context.Context, url string) (*sharedStore, error) {
	// The settings natsstore recommends: a hung server is noticed within
	// seconds, a write to a hung socket blocks a second at most.
	nc, err := nats.Connect(url, nats.MaxReconnects(-1), nats.ReconnectWait(time.Second),
		nats.PingInterval(5*time.Second), nats.MaxPingsOutstanding(2), nats.FlusherTimeout(time.Second))
	if err != nil {
		return nil, fmt.Errorf("userservice: nats: %w", err)
	}
	js, err := jetstream.New(nc, jetstream.WithDefaultTimeout(time.Second))
	if err != nil {
		nc.Close()
		return nil, fmt.Errorf("userservice: nats: %w", err)
	}
	far, err := natsstore.New[Profile](ctx, js, keyspace)
	if err != nil {
		nc.Close()
		return nil, fmt.Errorf("userservice: nats: %w", err)
	}
	st, err := near(far)
	if err != nil {
		_ = far.Close(ctx)
		nc.Close()
		return nil, fmt.Errorf("userservice: nats: %w", err)
	}
	return &sharedStore{store: st, locker: far, close: func(ctx context.Context) error {
		err := far.Close(ctx)
		nc.Close()
		return err
	}}, nil
}
