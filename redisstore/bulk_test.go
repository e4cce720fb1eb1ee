package redisstore_test

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/herdcache/herd/redisstore"
	"github.com/herdcache/herd/store"
	"github.com/herdcache/herd/store/storetest"
)

// roundTrips counts what clients send to each server, with a go-redis
// hook on each server's client: one round trip for each command, one for
// each pipeline on each server it goes to. A Cluster client's reads of the
// topology and of the command table (CLUSTER ..., COMMAND) are its own
// business, not the store's, and are not counted.
type roundTrips struct {
	mu   sync.Mutex
	by   map[string]int      // server address -> round trips
	sent map[string][]string // server address -> what was sent, for failure messages
}

// hook returns the hook of the client of the server at addr.
func (r *roundTrips) hook(addr string) redis.Hook { return tripHook{r: r, addr: addr} }

func (r *roundTrips) add(addr, what string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.by == nil {
		r.by, r.sent = make(map[string]int), make(map[string][]string)
	}
	r.by[addr]++
	r.sent[addr] = append(r.sent[addr], what)
}

// take returns the round trips counted since the last take, by server, and
// what they sent.
func (r *roundTrips) take() (map[string]int, string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	by, sent := r.by, r.sent
	r.by, r.sent = nil, nil
	var b strings.Builder
	for _, addr := range slices.Sorted(maps.Keys(sent)) {
		fmt.Fprintf(&b, "\n  %s: %s", addr, strings.Join(sent[addr], "; "))
	}
	return by, b.String()
}

type tripHook struct {
	r    *roundTrips
	addr string
}

func (h tripHook) DialHook(next redis.DialHook) redis.DialHook { return next }

func (h tripHook) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		if name := cmd.Name(); name != "cluster" && name != "command" {
			h.r.add(h.addr, name)
		}
		return next(ctx, cmd)
	}
}

func (h tripHook) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		names := make([]string, len(cmds))
		for i, c := range cmds {
			names[i] = c.Name()
		}
		h.r.add(h.addr, fmt.Sprintf("pipeline of %d (%s)", len(cmds), strings.Join(slices.Compact(names), ",")))
		return next(ctx, cmds)
	}
}

// A bulkStep is one step of a batch of loads under the fleet's locks.
type bulkStep struct {
	name string
	run  func(t *testing.T)
}

// bulkSteps returns the steps of a batch of loads of keys through s, as a
// cache would take them: lock, read entries and versions, write back (a
// set or, for every fifth key, a delete), extend the leases, unlock; and
// a plain bulk read. Each step fails t if a key does not have the outcome
// a healthy server gives.
func bulkSteps(s *redisstore.Store[storetest.Value], keys []string) []bulkStep {
	ctx := context.Background()
	var (
		locks []store.Lock
		reads []store.VersionedRead[storetest.Value]
	)
	return []bulkStep{
		{"TryLockMany", func(t *testing.T) {
			locks = locks[:0]
			for i, r := range s.TryLockMany(ctx, keys, time.Minute) {
				if r.Err != nil {
					t.Fatalf("TryLockMany %q: %v", keys[i], r.Err)
				}
				locks = append(locks, r.Lock)
			}
		}},
		{"GetVersions", func(t *testing.T) {
			reads = s.GetVersions(ctx, keys)
			for i, r := range reads {
				if r.Err != nil {
					t.Fatalf("GetVersions %q: %v", keys[i], r.Err)
				}
			}
		}},
		{"WriteIf", func(t *testing.T) {
			writes := make([]store.ConditionalWrite[storetest.Value], len(keys))
			for i, k := range keys {
				writes[i] = store.ConditionalWrite[storetest.Value]{
					Key: k, Version: reads[i].Version, Delete: i%5 == 0,
					Entry: store.Entry[storetest.Value]{Value: storetest.Value{Name: k}, KeepUntil: time.Now().Add(time.Hour)},
				}
			}
			for i, err := range s.WriteIf(ctx, writes) {
				if err != nil {
					t.Fatalf("WriteIf %q: %v", keys[i], err)
				}
			}
		}},
		{"ExtendMany", func(t *testing.T) {
			for i, err := range s.ExtendMany(ctx, locks, time.Minute) {
				if err != nil {
					t.Fatalf("ExtendMany %q: %v", keys[i], err)
				}
			}
		}},
		{"UnlockMany", func(t *testing.T) {
			for i, err := range s.UnlockMany(ctx, locks) {
				if err != nil {
					t.Fatalf("UnlockMany %q: %v", keys[i], err)
				}
			}
		}},
		{"GetMany", func(t *testing.T) {
			got, err := s.GetMany(ctx, keys)
			if err != nil || len(got) != len(keys)-(len(keys)+4)/5 {
				t.Fatalf("GetMany found %d of %d keys: %v", len(got), len(keys), err)
			}
		}},
	}
}

func keysN(prefix string, n int) []string {
	keys := make([]string, n)
	for i := range keys {
		keys[i] = fmt.Sprintf("%s-%d", prefix, i)
	}
	return keys
}

// On a single server, each bulk step of 100 keys costs one round trip once
// the server knows the scripts; right after it forgot them (SCRIPT FLUSH,
// a restart), a step costs two, once.
func TestBulkRoundTrips(t *testing.T) {
	srv := startRedis(t)
	var trips roundTrips
	c := srv.client(t)
	c.AddHook(trips.hook(srv.addr()))
	s := redisstore.New[storetest.Value](c, redisstore.Prefix(prefixOf(t)), redisstore.WithLogger(discard()))
	// A new connection's handshake (HELLO, CLIENT SETINFO) is not a step's.
	if err := c.Ping(context.Background()).Err(); err != nil {
		t.Fatal(err)
	}
	trips.take()

	for _, step := range bulkSteps(s, keysN("cold", 100)) {
		step.run(t)
		want := 2 // EVALSHA refused, then EVAL
		if step.name == "GetMany" {
			want = 1 // MGET
		}
		if by, sent := trips.take(); by[srv.addr()] != want {
			t.Fatalf("%s of 100 keys with the script unknown to the server: %d round trips, want %d:%s", step.name, by[srv.addr()], want, sent)
		}
	}
	for _, step := range bulkSteps(s, keysN("warm", 100)) {
		step.run(t)
		if by, sent := trips.take(); by[srv.addr()] != 1 {
			t.Fatalf("%s of 100 keys: %d round trips, want 1:%s", step.name, by[srv.addr()], sent)
		}
	}
	if err := srv.client(t).ScriptFlush(context.Background()).Err(); err != nil {
		t.Fatal(err)
	}
	steps := bulkSteps(s, keysN("flushed", 100))
	steps[0].run(t)
	if by, sent := trips.take(); by[srv.addr()] != 2 {
		t.Fatalf("TryLockMany after SCRIPT FLUSH: %d round trips, want 2:%s", by[srv.addr()], sent)
	}
	steps[1].run(t)
	if by, sent := trips.take(); by[srv.addr()] != 2 {
		t.Fatalf("GetVersions after SCRIPT FLUSH: %d round trips, want 2:%s", by[srv.addr()], sent)
	}
	steps = bulkSteps(s, keysN("again", 100))
	steps[0].run(t)
	if by, sent := trips.take(); by[srv.addr()] != 1 {
		t.Fatalf("TryLockMany once reloaded: %d round trips, want 1:%s", by[srv.addr()], sent)
	}
}

// On a Cluster of three masters, each bulk step of 100 keys costs one round
// trip to each master, sent at once.
func TestClusterBulkRoundTrips(t *testing.T) {
	srvs := startCluster3(t)
	var trips roundTrips
	c := clusterClient(t, srvs[0])
	c.OnNewNode(func(node *redis.Client) { node.AddHook(trips.hook(node.Options().Addr)) })
	s := redisstore.New[storetest.Value](c, redisstore.Prefix("p"), redisstore.WithLogger(discard()))
	for _, step := range bulkSteps(s, keysN("cold", 100)) { // the servers learn the scripts
		step.run(t)
	}
	trips.take()
	for _, step := range bulkSteps(s, keysN("warm", 100)) {
		step.run(t)
		by, sent := trips.take()
		if len(by) != len(srvs) {
			t.Fatalf("%s of 100 keys went to %d masters, want all %d:%s", step.name, len(by), len(srvs), sent)
		}
		for addr, n := range by {
			if n != 1 {
				t.Fatalf("%s of 100 keys: %d round trips to %s, want 1 per master:%s", step.name, n, addr, sent)
			}
		}
	}
}

// On a Ring of two shards, each bulk step costs one round trip to each.
func TestRingBulkRoundTrips(t *testing.T) {
	a, b := startRedis(t), startRedis(t)
	var trips roundTrips
	r := redis.NewRing(&redis.RingOptions{
		Addrs:                 map[string]string{"a": a.addr(), "b": b.addr()},
		ContextTimeoutEnabled: true,
		NewClient: func(opt *redis.Options) *redis.Client {
			c := redis.NewClient(opt)
			c.AddHook(trips.hook(opt.Addr))
			return c
		},
	})
	t.Cleanup(func() { _ = r.Close() })
	s := redisstore.New[storetest.Value](r, redisstore.Prefix("p"), redisstore.WithLogger(discard()))
	for _, step := range bulkSteps(s, keysN("cold", 100)) {
		step.run(t)
	}
	trips.take()
	for _, step := range bulkSteps(s, keysN("warm", 100)) {
		step.run(t)
		by, sent := trips.take()
		if step.name == "GetMany" {
			continue // a pipeline of GETs, split by the Ring: one per shard, so two in all
		}
		if len(by) != 2 || by[a.addr()] != 1 || by[b.addr()] != 1 {
			t.Fatalf("%s of 100 keys: round trips %v, want one to each shard:%s", step.name, by, sent)
		}
	}
}

// With one of three masters down, a bulk step fails exactly the keys that
// master holds, and the others go through.
func TestClusterBulkPartial(t *testing.T) {
	srvs := startCluster3(t)
	ctx := context.Background()
	s := redisstore.New[storetest.Value](clusterClient(t, srvs[0]), redisstore.Prefix("p"), redisstore.WithLogger(discard()))
	other := redisstore.New[storetest.Value](clusterClient(t, srvs[1]), redisstore.Prefix("p"), redisstore.WithLogger(discard()))
	keys := keysN("key", 150)
	onDown := make(map[string]bool)
	for i, k := range keys {
		if err := s.Set(ctx, k, store.Entry[storetest.Value]{Value: storetest.Value{N: int64(i)}}); err != nil {
			t.Fatal(err)
		}
		onDown[k] = clusterSlot(t, srvs[0], s.Key(k)) >= 10923 // the third master's
	}
	reads := s.GetVersions(ctx, keys)
	srvs[2].stop()

	check := func(op string, errs []error) {
		t.Helper()
		for i, err := range errs {
			k := keys[i]
			switch {
			case onDown[k] && err == nil:
				t.Fatalf("%s %q on the master that is down: no error", op, k)
			case onDown[k] && (errors.Is(err, store.ErrConflict) || errors.Is(err, store.ErrLocked)):
				t.Fatalf("%s %q on the master that is down: %v, a verdict where nothing is known", op, k, err)
			case !onDown[k] && err != nil:
				t.Fatalf("%s %q on a master that is up: %v", op, k, err)
			}
		}
	}
	var errs []error
	for i, r := range s.GetVersions(ctx, keys) {
		errs = append(errs, r.Err)
		if r.Err == nil && (r.Version != reads[i].Version || r.Entry.Value.N != int64(i)) {
			t.Fatalf("GetVersions %q = %+v, want version %d and N=%d", keys[i], r, reads[i].Version, i)
		}
	}
	check("GetVersions", errs)
	writes := make([]store.ConditionalWrite[storetest.Value], len(keys))
	for i, k := range keys {
		writes[i] = store.ConditionalWrite[storetest.Value]{Key: k, Version: reads[i].Version, Delete: i%2 == 0}
	}
	check("WriteIf", s.WriteIf(ctx, writes))

	// Locks are placed by a hash of the key, not by its entry's slot: some
	// fail, the others are taken, and hold.
	locked, failed := 0, 0
	var taken []store.Lock
	for i, r := range s.TryLockMany(ctx, keys, time.Minute) {
		switch {
		case r.Err == nil:
			locked++
			taken = append(taken, r.Lock)
			if _, err := other.TryLock(ctx, keys[i], time.Minute); !errors.Is(err, store.ErrLocked) {
				t.Fatalf("TryLock of %q, locked by TryLockMany: %v, want ErrLocked", keys[i], err)
			}
		case errors.Is(r.Err, store.ErrLocked):
			t.Fatalf("TryLockMany %q: %v, on free keys", keys[i], r.Err)
		default:
			failed++
		}
	}
	if locked == 0 || failed == 0 {
		t.Fatalf("TryLockMany with a master down: %d locked, %d failed; want both", locked, failed)
	}
	for _, err := range s.UnlockMany(ctx, taken) {
		if err != nil {
			t.Fatalf("UnlockMany of the locks taken: %v", err)
		}
	}
}

// GetVersions reads bytes that are not an entry of this store as GetVersion
// does: a miss, counted, with the version of those bytes.
func TestGetVersionsOfForeignBytes(t *testing.T) {
	srv := startRedis(t)
	ctx := context.Background()
	s := newStore(t, srv)
	if err := srv.client(t).Set(ctx, s.Key("junk"), "not an envelope", 0).Err(); err != nil {
		t.Fatal(err)
	}
	_, v, ok, err := s.GetVersion(ctx, "junk")
	if err != nil || ok || v == 0 {
		t.Fatalf("GetVersion of foreign bytes = %d, %v, %v", v, ok, err)
	}
	before := s.Corrupt()
	r := s.GetVersions(ctx, []string{"junk"})[0]
	if r.Err != nil || r.Found || r.Version != v {
		t.Fatalf("GetVersions of foreign bytes = %+v, want a miss at version %d", r, v)
	}
	if got := s.Corrupt() - before; got != 1 {
		t.Fatalf("Corrupt() grew by %d, want 1", got)
	}
	// The version of the foreign bytes is the one a write expects.
	err = s.WriteIf(ctx, []store.ConditionalWrite[storetest.Value]{{Key: "junk", Version: r.Version, Entry: store.Entry[storetest.Value]{Value: storetest.Value{Name: "mine"}}}})[0]
	if err != nil {
		t.Fatalf("WriteIf over foreign bytes at their version: %v", err)
	}
}

// More keys than one script call carries, on one server and spread over the
// slots of a Cluster: every key is read, written and locked.
func TestBulkOverManyCalls(t *testing.T) {
	for name, client := range map[string]func(t *testing.T) redis.UniversalClient{
		"Single":  func(t *testing.T) redis.UniversalClient { return startRedis(t).client(t) },
		"Cluster": func(t *testing.T) redis.UniversalClient { return clusterClient(t, startCluster(t)) },
	} {
		t.Run(name, func(t *testing.T) {
			s := redisstore.New[storetest.Value](client(t), redisstore.Prefix("p"), redisstore.WithLogger(discard()))
			keys := keysN("many", 1000)
			for i := range 300 {
				keys = append(keys, fmt.Sprintf("{tag}:%d", i)) // one slot, more than one call
			}
			sort.Strings(keys)
			for _, step := range bulkSteps(s, keys) {
				step.run(t)
			}
			for i, r := range s.GetVersions(context.Background(), keys) {
				want := keys[i]
				if i%5 == 0 {
					want = ""
				}
				if r.Err != nil || r.Entry.Value.Name != want {
					t.Fatalf("GetVersions %q after the batch = %+v, want name %q", keys[i], r, want)
				}
			}
		})
	}
}
