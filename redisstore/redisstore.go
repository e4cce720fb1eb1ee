// Package redisstore is herd's Redis store: a [store.Store] on
// github.com/redis/go-redis/v9 that also implements [store.Locker] and
// [store.Notifier], so that a fleet of processes shares one cache, loads each
// key once across the fleet, and drops its own copies of a key when another
// process changes it.
//
// It takes a [redis.UniversalClient]: a single server, Sentinel (failover)
// and Cluster all work. The store never closes the client it was given.
//
// # Contract
//
// Every method honours its context as far as the client does: configure the
// client with ContextTimeoutEnabled (and sensible ReadTimeout and
// WriteTimeout), or a call to a server that stopped answering waits for the
// client's own timeouts instead of the caller's deadline.
//
//   - Get and Set cost one round trip each; Delete one; GetMany one MGET on a
//     single server, one MGET per hash slot, sent as one pipeline, on
//     Cluster, and a pipeline of GETs on a Ring.
//   - Entries are written as herd's envelope (see [store.Encode]) with the
//     value encoded by the store's codec ([store.JSON] by default, see
//     [WithCodec]).
//   - Bytes under the store's keys that do not decode (written by another
//     program, another codec or a format version this build does not read,
//     truncated) are a miss, never an error or a panic, and are counted in
//     [Store.Corrupt]. The next load of the key overwrites them.
//
// # Keys
//
// The prefix given with [Prefix] is required, must not be empty and must not
// contain ':', '{' or '}'. A cache key k lives at
//
//	<prefix>:e:<k>
//
// with k's bytes as they are: Redis keys are binary safe, so every Go string
// (empty, with spaces, newlines, '*', braces, invalid UTF-8, megabytes long) is
// a valid key. As the prefix holds no ':', the first ':' of a Redis key ends
// the prefix, so two different (prefix, key) pairs never map to one Redis key.
// A key that contains a Cluster hash tag ("{user42}:profile") is placed by
// that tag, like any Redis key.
//
// # Expiry
//
// An entry's Redis TTL is its KeepUntil, in milliseconds rounded up (SET with
// PX); an entry with no KeepUntil has no TTL, and a Set of an entry whose
// KeepUntil has passed deletes the key. Get also checks KeepUntil on the
// client's clock, so that an entry is never returned past it however the
// clocks of client and server differ.
//
// # Locks
//
// [Store.TryLock] takes the lock of key k with
//
//	SET <prefix>:{<h>}:lock:<k> <token> NX PX <ttl>
//
// and, in the same script, INCR <prefix>:{<h>}:fence:<k>, whose value is the
// lock's fencing token ([store.Lock.Token]): it grows with every acquisition
// of the key. h is a hash of k, so that a key's lock and its counter share a
// Cluster hash slot. The token stored in the lock is 128 random bits from
// crypto/rand. Unlock and Extend are compare-and-delete and compare-and-pexpire
// scripts (EVALSHA, falling back to EVAL when the server does not know the
// script): an owner whose lease expired gets [store.ErrNotHeld] and never
// touches the lock of whoever took it over. The fencing counter of a key
// outlives its lock (it must, to keep growing): one small Redis key per key
// ever locked.
//
// # Notifications
//
// [Store.Publish] publishes a key on the channel <prefix>:invalidate;
// [Store.Subscribe] delivers every key published there from the moment it
// returns, in order, from one goroutine. go-redis reconnects and resubscribes
// a subscription whose connection broke (it pings an idle one every few
// seconds); keys published while a subscriber was disconnected are lost, as
// Redis pub/sub keeps nothing.
package redisstore

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/herdcache/herd/store"
)

// ErrClosed is returned by [Store.Subscribe] after [Store.Close].
var ErrClosed = errors.New("redisstore: store closed")

// A Store is a [store.Store] in Redis, with a [store.Locker] and a
// [store.Notifier]. Build it with [New]; its methods are safe for concurrent
// use.
type Store[T any] struct {
	client  redis.UniversalClient
	cluster *redis.ClusterClient // client, when it is a Cluster client
	ring    *redis.Ring          // client, when it is a Ring
	codec   store.Codec[T]
	prefix  string // the prefix and its ':'
	channel string

	corrupt atomic.Uint64

	mu      sync.Mutex
	closed  bool
	subs    map[*subscription]struct{}
	pending sync.WaitGroup // Subscribe calls under way
}

var (
	_ store.Store[int] = (*Store[int])(nil)
	_ store.Locker     = (*Store[int])(nil)
	_ store.Notifier   = (*Store[int])(nil)
)

type config struct {
	prefix    string
	prefixSet bool
	codec     any // store.Codec[T], checked by New
}

// An Option configures a [Store].
type Option func(*config)

// Prefix is the namespace of the store's keys and channel. It is required:
// two caches with different prefixes never share a key. It must not be empty
// and must not contain ':' ("myapp-users", not "myapp:users"), nor a brace,
// which would make it a Cluster hash tag that splits a key's lock from its
// fencing counter.
func Prefix(p string) Option { return func(c *config) { c.prefix, c.prefixSet = p, true } }

// WithCodec sets how values are turned into bytes. Its type must be the
// store's value type. Default: [store.JSON].
func WithCodec[T any](c store.Codec[T]) Option { return func(cfg *config) { cfg.codec = c } }

// New returns a store of the values of type T in Redis, through client. It
// returns an error when client is nil, [Prefix] is missing or invalid, or
// the [WithCodec] codec is for another type. New does not talk to Redis.
func New[T any](client redis.UniversalClient, opts ...Option) (*Store[T], error) {
	if client == nil {
		return nil, errors.New("redisstore: nil client")
	}
	var cfg config
	for _, o := range opts {
		o(&cfg)
	}
	switch {
	case !cfg.prefixSet:
		return nil, errors.New("redisstore: the Prefix option is required")
	case cfg.prefix == "":
		return nil, errors.New("redisstore: empty prefix")
	case strings.ContainsAny(cfg.prefix, ":{}"):
		return nil, fmt.Errorf("redisstore: prefix %q contains ':', '{' or '}'", cfg.prefix)
	}
	s := &Store[T]{
		client:  client,
		prefix:  cfg.prefix + ":",
		channel: cfg.prefix + ":invalidate",
		codec:   store.JSON[T]{},
		subs:    make(map[*subscription]struct{}),
	}
	if cfg.codec != nil {
		c, ok := cfg.codec.(store.Codec[T])
		if !ok {
			return nil, fmt.Errorf("redisstore: codec %T is not a store.Codec of the store's value type", cfg.codec)
		}
		s.codec = c
	}
	s.cluster, _ = client.(*redis.ClusterClient)
	s.ring, _ = client.(*redis.Ring)
	return s, nil
}

// Key returns the Redis key under which the store keeps the entry of key.
func (s *Store[T]) Key(key string) string { return s.prefix + "e:" + key }

// Corrupt returns how many reads found bytes under one of the store's keys
// that do not decode as an entry of this store, and were reported as a miss.
func (s *Store[T]) Corrupt() uint64 { return s.corrupt.Load() }

// Get returns the entry of key, in one round trip. Bytes that do not decode
// are a miss, counted in [Store.Corrupt].
func (s *Store[T]) Get(ctx context.Context, key string) (store.Entry[T], bool, error) {
	b, err := s.client.Get(ctx, s.Key(key)).Bytes()
	switch {
	case errors.Is(err, redis.Nil):
		return store.Entry[T]{}, false, nil
	case err != nil:
		return store.Entry[T]{}, false, fmt.Errorf("redisstore: get %q: %w", key, err)
	}
	e, ok := s.decode(b, time.Now())
	return e, ok, nil
}

// decode returns the entry of b if it is live at now. Bytes that do not
// decode are counted and reported as a miss.
func (s *Store[T]) decode(b []byte, now time.Time) (store.Entry[T], bool) {
	e, err := store.Decode(s.codec, b)
	if err != nil {
		s.corrupt.Add(1)
		return store.Entry[T]{}, false
	}
	if !e.Live(now) {
		return store.Entry[T]{}, false
	}
	return e, true
}

// GetMany returns the live entries of keys, by key, in one round trip: an
// MGET on a single server, on Cluster one MGET per hash slot, sent together
// as a pipeline, and on a Ring a pipeline of GETs. Keys without an entry, or whose bytes do not decode,
// are absent from the map.
func (s *Store[T]) GetMany(ctx context.Context, keys []string) (map[string]store.Entry[T], error) {
	found := make(map[string]store.Entry[T], len(keys))
	if len(keys) == 0 {
		return found, nil
	}
	switch {
	case s.cluster != nil:
		return found, s.getManyCluster(ctx, keys, found)
	case s.ring != nil:
		return found, s.getManyRing(ctx, keys, found)
	}
	rkeys := make([]string, len(keys))
	for i, k := range keys {
		rkeys[i] = s.Key(k)
	}
	vals, err := s.client.MGet(ctx, rkeys...).Result()
	if err != nil {
		return nil, fmt.Errorf("redisstore: mget of %d keys: %w", len(keys), err)
	}
	s.collect(keys, vals, time.Now(), found)
	return found, nil
}

func (s *Store[T]) getManyCluster(ctx context.Context, keys []string, found map[string]store.Entry[T]) error {
	bySlot := make(map[uint16][]string)
	for _, k := range keys {
		slot := keySlot(s.Key(k))
		bySlot[slot] = append(bySlot[slot], k)
	}
	pipe := s.cluster.Pipeline()
	groups := make([][]string, 0, len(bySlot))
	cmds := make([]*redis.SliceCmd, 0, len(bySlot))
	for _, group := range bySlot {
		rkeys := make([]string, len(group))
		for i, k := range group {
			rkeys[i] = s.Key(k)
		}
		groups = append(groups, group)
		cmds = append(cmds, pipe.MGet(ctx, rkeys...))
	}
	if _, err := pipe.Exec(ctx); err != nil {
		return fmt.Errorf("redisstore: mget of %d keys in %d slots: %w", len(keys), len(groups), err)
	}
	now := time.Now()
	for i, cmd := range cmds {
		s.collect(groups[i], cmd.Val(), now, found)
	}
	return nil
}

// getManyRing sends one GET per key in a pipeline, which the Ring splits by
// shard: an MGET would go whole to the shard of its first key.
func (s *Store[T]) getManyRing(ctx context.Context, keys []string, found map[string]store.Entry[T]) error {
	pipe := s.ring.Pipeline()
	cmds := make([]*redis.StringCmd, len(keys))
	for i, k := range keys {
		cmds[i] = pipe.Get(ctx, s.Key(k))
	}
	if _, err := pipe.Exec(ctx); err != nil && !errors.Is(err, redis.Nil) {
		return fmt.Errorf("redisstore: get of %d keys: %w", len(keys), err)
	}
	now := time.Now()
	for i, cmd := range cmds {
		if b, err := cmd.Bytes(); err == nil {
			if e, ok := s.decode(b, now); ok {
				found[keys[i]] = e
			}
		}
	}
	return nil
}

// collect decodes the values of an MGET of keys into found.
func (s *Store[T]) collect(keys []string, vals []any, now time.Time, found map[string]store.Entry[T]) {
	for i, v := range vals {
		str, ok := v.(string)
		if !ok || i >= len(keys) {
			continue // nil: no such key
		}
		if e, ok := s.decode([]byte(str), now); ok {
			found[keys[i]] = e
		}
	}
}

// Set stores e under key in one round trip, with a Redis TTL up to its
// KeepUntil; an entry whose KeepUntil has passed is deleted instead.
func (s *Store[T]) Set(ctx context.Context, key string, e store.Entry[T]) error {
	var ttl time.Duration
	if !e.KeepUntil.IsZero() {
		ttl = time.Until(e.KeepUntil)
		if ttl <= 0 {
			return s.Delete(ctx, key)
		}
		// Whole milliseconds, rounded up: never shorter than KeepUntil.
		ttl = (ttl + time.Millisecond - 1).Truncate(time.Millisecond)
	}
	b, err := store.Encode(s.codec, e)
	if err != nil {
		return fmt.Errorf("redisstore: set %q: %w", key, err)
	}
	if err := s.client.Set(ctx, s.Key(key), b, ttl).Err(); err != nil {
		return fmt.Errorf("redisstore: set %q: %w", key, err)
	}
	return nil
}

// Delete removes the entry of key; a key without one is not an error.
func (s *Store[T]) Delete(ctx context.Context, key string) error {
	if err := s.client.Del(ctx, s.Key(key)).Err(); err != nil {
		return fmt.Errorf("redisstore: delete %q: %w", key, err)
	}
	return nil
}

// Close closes the subscriptions of the store that are still open and waits
// for their goroutines and for Subscribe calls under way, or for ctx to end. It does not close the client. Get,
// Set, Delete and the locks still work after Close.
func (s *Store[T]) Close(ctx context.Context) error {
	s.mu.Lock()
	s.closed = true
	subs := make([]*subscription, 0, len(s.subs))
	for sub := range s.subs {
		subs = append(subs, sub)
	}
	s.mu.Unlock()
	done := make(chan struct{})
	go func() {
		defer close(done)
		for _, sub := range subs {
			_ = sub.Close()
		}
		s.pending.Wait()
	}()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("redisstore: close: %w", ctx.Err())
	}
}
