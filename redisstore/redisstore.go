// Package redisstore is herd's Redis store: a [store.Store] on
// github.com/redis/go-redis/v9 that is also a [store.Locker], a
// [store.Versioned] store, a [store.ChangeStream], a [store.BulkGetter], a
// [store.BulkVersioned] store and a [store.BulkLocker], so that a fleet of
// processes shares one cache, loads each key once across the fleet, never
// writes a load back over a newer write, hears of every change of a key,
// whoever made it, and handles a batch of keys in a round trip per step.
//
// It takes a [redis.UniversalClient]: a single server, Sentinel (failover),
// Cluster and Ring all work. The store never closes the client it was given.
//
// # Contract
//
// Every method honours its context as far as the client does (see "Client
// settings" below). A nil context panics.
//
//   - Get costs one GET, GetMany one MGET on a single server, one MGET per
//     hash slot sent as one pipeline on Cluster, and a pipeline of GETs on a
//     Ring. Set, Delete, GetVersion, SetIf and DeleteIf cost one script call
//     (EVALSHA, falling back to EVAL when the server does not know the
//     script), each touching two keys of one hash slot; TryLock, and a
//     lock's Unlock and Extend, one script call too.
//   - The bulk calls (GetVersions, WriteIf, TryLockMany, ExtendMany,
//     UnlockMany) cost one round trip to each server that holds some of
//     their keys, however many keys: one script call (per 256 keys) that
//     carries all the keys of a single server, of a hash slot on Cluster, of
//     a shard on a Ring, all sent as one pipeline (go-redis sends a Cluster
//     pipeline to each master at once, a Ring pipeline to each shard). A
//     call that a server refuses because it does not know the script is
//     sent again as EVAL, which costs a second round trip once per script
//     and server (after a start, a restart, a failover or SCRIPT FLUSH).
//     Each key has its own outcome: a slot or shard that fails fails only
//     the keys it holds. GetVersions returns the entries with their
//     versions, so a batch's read and version read are one step.
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
// with k's bytes as they are: Redis keys are binary safe, so every Go string (empty,
// with spaces, newlines, '*', braces, invalid UTF-8, megabytes long) is a
// valid key. As the prefix holds no ':', the first ':' of a Redis key ends
// the prefix, so two different (prefix, key) pairs never map to one Redis key.
// A key that contains a Cluster hash tag ("{user42}:profile") is placed by
// that tag, like any Redis key.
//
// # Expiry
//
// An entry's Redis TTL is its KeepUntil, in milliseconds rounded up; an entry
// with no KeepUntil has no TTL, and a Set of an entry whose KeepUntil has
// passed deletes the key. Get also checks KeepUntil on the client's clock, so
// that an entry is never returned past it however the clocks of client and
// server differ.
//
// # Versions
//
// Next to each entry written through the store, a version record
//
//	<prefix>:v:{<t>}:<k>
//
// holds the version of the key's last write and the SHA-1 of the bytes that
// write stored; t is a short tag chosen so that the record shares the hash
// slot of the entry's key, as every script that touches both must on
// Cluster. Every write through the store (Set, Delete, SetIf, DeleteIf,
// WriteIf) runs a script that reads the record, checks the version when the
// write is conditional, and writes the entry and a new record together, key
// by key (a WriteIf script does so for each of its keys in turn). A version is
// the server's TIME in microseconds (counted from 2023-11-14), times four, or
// the last version plus four if that is not larger, so versions of a key grow
// even after the store forgot it. The version a reader sees is:
//
//   - the record's version, while the entry holds the bytes that write
//     stored (or, after a Delete, while the key has no entry);
//   - the record's version plus one once the entry is gone (it passed its
//     KeepUntil, or another client deleted it): an expiry counts as a write;
//   - a version derived from the bytes' SHA-1 (plus two, modulo four) when
//     the entry holds bytes that no write through the store put there: a
//     plain Redis client's write makes every version read before it fail,
//     unless it wrote back the very bytes that were there;
//   - zero when there is no record and no entry.
//
// A Delete leaves a record (a tombstone) for [VersionRetention]; the record
// of a Set lives until the entry's KeepUntil plus that retention, so an
// expiry is remembered as long as a delete. GetVersion (and GetVersions)
// gives a record whose entry was deleted by another client and that has no
// TTL the same retention. Get and GetMany never read the records: a hit stays one GET.
//
// # Locks
//
// [Store.TryLock] takes the lock of key k with
//
//	SET <prefix>:{<h>}:lock:<k> <token> NX PX <ttl>
//
// and, in the same script, sets <prefix>:{<h>}:fence:<k> to the lock's
// fencing token ([store.Lock.Token]), with the lease as its TTL: the token is
// the server's TIME in microseconds (from 2023-11-14), or one more than the
// last token if that is still there and not smaller, so it grows with every
// acquisition of the key while the server's clock does not go back, and
// nothing outlives the lease. h is a hash of k, so that a key's lock and
// fence share a Cluster hash slot. The token stored in the lock is 128
// random bits from crypto/rand. Unlock and Extend are compare-and-delete and
// compare-and-pexpire scripts: an owner whose lease expired gets
// [store.ErrNotHeld] and never touches the lock of whoever took it over.
// TryLockMany, ExtendMany and UnlockMany run the same steps for each of
// their locks, in one script call per hash slot of the locks (h, not k,
// places a lock).
//
// # Changes
//
// [Store.Watch] follows the server's own record of changes: Redis client
// tracking in broadcasting mode (Redis 6 or later). For each master (the
// server, each shard of a Ring, each master of a Cluster, followed as the
// topology changes) it opens one connection of its own, which enables
//
//	CLIENT TRACKING ON REDIRECT <its own id> BCAST PREFIX <prefix>:e:
//
// and subscribes to __redis__:invalidate, so that every change of an entry
// key, by any client (the watching process included), by expiry or by
// eviction, is reported with the cache key. The connection is pinged when
// idle (see [WatchPing]); when it is lost or does not answer, the watch
// reports Down, reconnects with tracking enabled again, and reports Gap
// (Redis keeps nothing to replay from). A flush (FLUSHDB, FLUSHALL, DEBUG
// RELOAD: Redis sends "every key") and a restart of the server (its run_id
// changed) are reported as All. SWAPDB sends nothing: on a single server or
// a Ring, each master's node also keeps a marker key
//
//	<prefix>:w:<random>
//
// on a second connection of its own, with a TTL of 30 × WatchPing (at
// least 30s) that it renews every WatchPing; a marker found gone means the
// database was swapped or flushed, and is reported as All. On a Cluster,
// which has neither SWAPDB nor databases, a lost master makes the watch
// reload the slot map (the store's client's own) every 100ms until a new
// master serves the lost slots, and report Gap once it follows it.
//
// A watch needs a client that reads from masters: a replica applies a write
// after its master reported it, so a near tier filled from a replica could
// keep the value a change just replaced. Watch refuses, with an error
// wrapping [ErrReplicaReads], a Cluster client with ReadOnly, RouteByLatency
// or RouteRandomly, and a client (or a Ring shard) connected to a replica,
// such as a Sentinel client with ReplicaOnly (once Sentinel knows a replica:
// until then, go-redis connects such a client to the master, and the watch
// cannot tell it from a client of the master).
//
// # Client settings
//
// How quickly "Redis is down" costs a load instead of a wait is decided by
// the client, not by the store. go-redis v9's defaults favour patience: a
// call ignores its context's deadline (ContextTimeoutEnabled false) and
// waits up to ReadTimeout (5s) and WriteTimeout (the same), retried up to
// MaxRetries (3) times on network errors; a new connection is tried
// DialerRetries (5) times for DialTimeout (5s) each; a caller waits up to
// PoolTimeout (ReadTimeout + 1s) for a free connection. Against a server
// that stopped answering, one call of such a client can take a minute.
// The store does not wait that long: over a client that ignores deadlines,
// each call of the store runs on a goroutine of its own and returns at its
// context's deadline (a herd.Cache bounds it by StoreTimeout), leaving the
// client's call to end in the background. That costs a goroutine per call,
// and a connection held by the abandoned call; for a cache, set instead:
//
//	ContextTimeoutEnabled: true,                   // a call ends at its context's deadline
//	DialTimeout:           500 * time.Millisecond, // a dead host costs half a second to find out
//	DialerRetries:         1,                      // and is not dialled again for the same call
//	ReadTimeout:           500 * time.Millisecond, // a server that stopped answering
//	WriteTimeout:          500 * time.Millisecond,
//	PoolTimeout:           time.Second,            // a saturated pool is a miss, not a queue
//	MaxRetries:            1,                      // one retry: the cache loads instead
//
// (ReadTimeout above the slowest command you expect, a large GetMany
// included) and give the cache a StoreTimeout shorter than its callers'
// deadlines, so that a store that hangs costs a load within the caller's
// deadline.
package redisstore

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/herdcache/herd/internal/check"
	"github.com/herdcache/herd/internal/wait"
	"github.com/herdcache/herd/store"
)

// ErrClosed is returned (wrapped) by the methods of a [Store] after its
// Close.
var ErrClosed = errors.New("redisstore: store closed")

// A Store is a [store.Store] in Redis, with a [store.Locker], conditional
// writes ([store.Versioned]), a change stream ([store.ChangeStream]), bulk
// reads ([store.BulkGetter]), bulk versions and conditional writes
// ([store.BulkVersioned]) and bulk locks ([store.BulkLocker]). Build it with
// [New]; its methods are safe for concurrent use.
type Store[T any] struct {
	client    redis.UniversalClient
	cluster   *redis.ClusterClient // client, when it is a Cluster client
	ring      *redis.Ring          // client, when it is a Ring
	codec     store.Codec[T]
	prefix    string // the prefix and its ':'
	retention time.Duration
	log       *slog.Logger
	ping      time.Duration
	patient   bool // the client ignores its calls' deadlines: see bounded

	corrupt atomic.Uint64

	shut    atomic.Bool // Close was called
	mu      sync.Mutex
	closed  bool
	watches map[*watch]struct{}
	pending sync.WaitGroup // Watch calls under way
}

var (
	_ store.Store[int]      = (*Store[int])(nil)
	_ store.Locker          = (*Store[int])(nil)
	_ store.Versioned[int]  = (*Store[int])(nil)
	_ store.ChangeStream    = (*Store[int])(nil)
	_ store.BulkGetter[int] = (*Store[int])(nil)

	_ store.BulkVersioned[int] = (*Store[int])(nil)
	_ store.BulkLocker         = (*Store[int])(nil)
)

type config struct {
	prefix    string
	prefixSet bool
	codec     any // store.Codec[T], checked by New
	retention time.Duration
	log       *slog.Logger
	ping      time.Duration
}

// An Option configures a [Store]. An invalid value makes [New] panic with a
// message naming the option.
type Option func(*config)

// Prefix is the namespace of the store's keys. It is required: two caches
// with different prefixes never share a key. It must not be empty and must
// not contain ':' ("myapp-users", not "myapp:users"), nor a brace, which
// would make it a Cluster hash tag.
func Prefix(p string) Option {
	check.That(p != "" && !strings.ContainsAny(p, ":{}"), "redisstore", "Prefix must be non-empty without ':', '{' or '}', got %q", p)
	return func(c *config) { c.prefix, c.prefixSet = p, true }
}

// WithCodec sets how values are turned into bytes. Its type must be the
// store's value type, or [New] panics. Default: [store.JSON].
func WithCodec[T any](c store.Codec[T]) Option {
	check.That(c != nil, "redisstore", "WithCodec must be given a codec, got nil")
	return func(cfg *config) { cfg.codec = c }
}

// VersionRetention is how long the store remembers a write of a key for
// [Store.SetIf] and [Store.DeleteIf]: a Delete's tombstone is kept that
// long, and an entry's version record until its KeepUntil plus d. It must
// be positive; it is rounded up to whole milliseconds. Default:
// [store.DefaultVersionRetention].
func VersionRetention(d time.Duration) Option {
	check.That(d > 0, "redisstore", "VersionRetention must be positive, got %v", d)
	return func(c *config) { c.retention = d }
}

// WithLogger sets where the store logs what goes wrong in the background: a
// watch's lost connection, a panic in a watch's function. Default:
// [slog.Default] at the time [New] runs.
func WithLogger(l *slog.Logger) Option {
	l = check.NotNil("redisstore", "WithLogger", "logger", l)
	return func(c *config) { c.log = l }
}

// WatchPing is how long a [Store.Watch] connection may stay silent before it
// is pinged, and how long the ping may then go unanswered before the
// connection is dropped, its watch told Down and the connection made again:
// a dead connection is found within twice d. It is also how often a watch
// checks its marker key, so a SWAPDB is reported within d. It must be
// positive. Default: one second.
func WatchPing(d time.Duration) Option {
	check.That(d > 0, "redisstore", "WatchPing must be positive, got %v", d)
	return func(c *config) { c.ping = d }
}

// New returns a store of the values of type T in Redis, through client. It
// panics when client is nil, [Prefix] is missing, or the [WithCodec] codec
// is for another type. New does not talk to Redis.
func New[T any](client redis.UniversalClient, opts ...Option) *Store[T] {
	check.That(client != nil, "redisstore", "New needs a client, got nil")
	cfg := config{retention: store.DefaultVersionRetention, ping: time.Second}
	for _, o := range opts {
		o(&cfg)
	}
	check.That(cfg.prefixSet, "redisstore", "the Prefix option is required")
	if cfg.log == nil {
		cfg.log = slog.Default()
	}
	s := &Store[T]{
		client:    client,
		prefix:    cfg.prefix + ":",
		codec:     store.JSON[T]{},
		retention: cfg.retention,
		log:       cfg.log,
		ping:      cfg.ping,
		watches:   make(map[*watch]struct{}),
		patient:   ignoresDeadlines(client),
	}
	if cfg.codec != nil {
		c, ok := cfg.codec.(store.Codec[T])
		check.That(ok, "redisstore", "WithCodec must be given a codec of the store's value type, got %T", cfg.codec)
		s.codec = c
	}
	s.cluster, _ = client.(*redis.ClusterClient)
	s.ring, _ = client.(*redis.Ring)
	return s
}

func checkCtx(ctx context.Context) {
	check.Context(ctx, "redisstore")
}

// check panics on a nil ctx and returns [ErrClosed] after Close.
func (s *Store[T]) check(ctx context.Context) error {
	checkCtx(ctx)
	if s.shut.Load() {
		return ErrClosed
	}
	return nil
}

// Key returns the Redis key under which the store keeps the entry of key.
func (s *Store[T]) Key(key string) string { return s.prefix + "e:" + key }

// Corrupt returns how many reads found bytes under one of the store's keys
// that do not decode as an entry of this store, and were reported as a miss.
func (s *Store[T]) Corrupt() uint64 { return s.corrupt.Load() }

// Get returns the entry of key, in one GET. Bytes that do not decode are a
// miss, counted in [Store.Corrupt].
func (s *Store[T]) Get(ctx context.Context, key string) (store.Entry[T], bool, error) {
	r := bounded(ctx, s.patient, func() triple[store.Entry[T], bool, error] {
		e, ok, err := s.get(ctx, key)
		return triple[store.Entry[T], bool, error]{e, ok, err}
	}, func(err error) triple[store.Entry[T], bool, error] {
		return triple[store.Entry[T], bool, error]{c: fmt.Errorf("redisstore: get %q: %w", key, err)}
	})
	return r.a, r.b, r.c
}

func (s *Store[T]) get(ctx context.Context, key string) (store.Entry[T], bool, error) {
	if err := s.check(ctx); err != nil {
		return store.Entry[T]{}, false, fmt.Errorf("redisstore: get %q: %w", key, err)
	}
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
// as a pipeline, and on a Ring a pipeline of GETs. Each distinct key is read
// once. Keys without an entry, or whose bytes do not decode, are absent from
// the map. On an error the map holds the entries that were read (on Cluster
// and Ring, those of the slots or shards that answered), never nil.
func (s *Store[T]) GetMany(ctx context.Context, keys []string) (map[string]store.Entry[T], error) {
	r := bounded(ctx, s.patient, func() pair[map[string]store.Entry[T], error] {
		found, err := s.getMany(ctx, keys)
		return pair[map[string]store.Entry[T], error]{found, err}
	}, func(err error) pair[map[string]store.Entry[T], error] {
		return pair[map[string]store.Entry[T], error]{map[string]store.Entry[T]{}, fmt.Errorf("redisstore: get %d keys: %w", len(keys), err)}
	})
	return r.a, r.b
}

func (s *Store[T]) getMany(ctx context.Context, keys []string) (map[string]store.Entry[T], error) {
	found := make(map[string]store.Entry[T], len(keys))
	if err := s.check(ctx); err != nil {
		return found, fmt.Errorf("redisstore: get %d keys: %w", len(keys), err)
	}
	keys = distinct(keys)
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
		return found, fmt.Errorf("redisstore: get %d keys: %w", len(keys), err)
	}
	s.collect(keys, vals, time.Now(), found)
	return found, nil
}

// distinct returns keys without repetitions, in their first order; keys
// itself when it has none.
func distinct(keys []string) []string {
	if len(keys) < 2 {
		return keys
	}
	seen := make(map[string]struct{}, len(keys))
	var out []string // nil until the first repetition
	for i, k := range keys {
		if _, dup := seen[k]; dup {
			if out == nil {
				out = append(make([]string, 0, len(keys)-1), keys[:i]...)
			}
			continue
		}
		seen[k] = struct{}{}
		if out != nil {
			out = append(out, k)
		}
	}
	if out == nil {
		return keys
	}
	return out
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
	_, err := pipe.Exec(ctx)
	now := time.Now()
	for i, cmd := range cmds {
		if cmd.Err() == nil {
			s.collect(groups[i], cmd.Val(), now, found)
		}
	}
	if err != nil {
		return fmt.Errorf("redisstore: get %d keys in %d slots: %w", len(keys), len(groups), err)
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
	_, _ = pipe.Exec(ctx) // the commands' own errors are read below
	now := time.Now()
	var failed error
	for i, cmd := range cmds {
		b, err := cmd.Bytes()
		switch {
		case err == nil:
			if e, ok := s.decode(b, now); ok {
				found[keys[i]] = e
			}
		case errors.Is(err, redis.Nil):
		case failed == nil:
			failed = err
		}
	}
	if failed != nil {
		return fmt.Errorf("redisstore: get %d keys: %w", len(keys), failed)
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

// Set stores e under key, with a Redis TTL up to its KeepUntil, and bumps
// the key's version, in one script call; an entry whose KeepUntil has passed
// is deleted instead (see [Store.Delete]).
func (s *Store[T]) Set(ctx context.Context, key string, e store.Entry[T]) error {
	return bounded(ctx, s.patient, func() error { return s.set(ctx, key, e) }, func(err error) error {
		return fmt.Errorf("redisstore: set %q: %w", key, err)
	})
}

func (s *Store[T]) set(ctx context.Context, key string, e store.Entry[T]) error {
	if err := s.check(ctx); err != nil {
		return fmt.Errorf("redisstore: set %q: %w", key, err)
	}
	if _, err := s.write(ctx, key, &e, false, unconditional); err != nil {
		return fmt.Errorf("redisstore: set %q: %w", key, err)
	}
	return nil
}

// Delete removes the entry of key and bumps its version, leaving a
// tombstone for the version retention, in one script call; a key without an
// entry is not an error.
func (s *Store[T]) Delete(ctx context.Context, key string) error {
	return bounded(ctx, s.patient, func() error { return s.delete(ctx, key) }, func(err error) error {
		return fmt.Errorf("redisstore: delete %q: %w", key, err)
	})
}

func (s *Store[T]) delete(ctx context.Context, key string) error {
	if err := s.check(ctx); err != nil {
		return fmt.Errorf("redisstore: delete %q: %w", key, err)
	}
	if _, err := s.write(ctx, key, nil, true, unconditional); err != nil {
		return fmt.Errorf("redisstore: delete %q: %w", key, err)
	}
	return nil
}

// Close closes the store's watches that are still open and waits for their
// goroutines and connections and for Watch calls under way, or for ctx to
// end, then returns fmt.Errorf("redisstore: close: %w", ctx.Err()). Every
// call, first or later, waits for the same shutdown. It does not close the
// client. After Close, every method of the store returns an error wrapping
// [ErrClosed]; the locks taken before it can still be released or extended.
func (s *Store[T]) Close(ctx context.Context) error {
	checkCtx(ctx)
	s.shut.Store(true)
	s.mu.Lock()
	s.closed = true
	ws := make([]*watch, 0, len(s.watches))
	for w := range s.watches {
		ws = append(ws, w)
	}
	s.mu.Unlock()
	done := make(chan struct{})
	go func() {
		defer close(done)
		for _, w := range ws {
			_ = w.Close()
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

// ignoresDeadlines reports whether c's calls wait out its timeouts rather
// than end at their context's deadline (go-redis's default,
// ContextTimeoutEnabled false).
func ignoresDeadlines(c redis.UniversalClient) bool {
	switch c := c.(type) {
	case *redis.Client:
		return !c.Options().ContextTimeoutEnabled
	case *redis.ClusterClient:
		return !c.Options().ContextTimeoutEnabled
	case *redis.Ring:
		return !c.Options().ContextTimeoutEnabled
	}
	return false
}

// bounded returns call's result, or ended's for ctx's error if ctx ends
// first. Over a client that ignores its calls' deadlines (go-redis at its
// defaults, which waits up to its ReadTimeout on a server that stopped
// answering), call runs on a goroutine of its own, which the caller leaves
// behind when ctx ends: it ends within the client's own timeouts, and its
// result is dropped. Over any other client, call runs on the caller's
// goroutine, at no cost.
func bounded[R any](ctx context.Context, patient bool, call func() R, ended func(error) R) R {
	if !patient || ctx == nil || ctx.Done() == nil {
		return call() // a nil ctx panics in call, with the store's message
	}
	done := make(chan struct{})
	var r R
	go func() {
		defer close(done)
		r = call()
	}()
	if wait.For(ctx, done) {
		return r
	}
	return ended(ctx.Err())
}

// pair is a result of two values, for bounded.
type pair[A, B any] struct {
	a A
	b B
}

// triple is a result of three values, for bounded.
type triple[A, B, C any] struct {
	a A
	b B
	c C
}
