package redisstore_test

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/herdcache/herd"
	"github.com/herdcache/herd/redisstore"
)

// commandCounter is a go-redis hook that counts the commands a client
// sends, by name, and the round trips (a pipeline is one).
type commandCounter struct {
	mu         sync.Mutex
	byName     map[string]int
	roundTrips atomic.Int64
}

func (c *commandCounter) count(cmds ...redis.Cmder) {
	c.roundTrips.Add(1)
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, cmd := range cmds {
		c.byName[strings.ToLower(cmd.Name())]++
	}
}

func (c *commandCounter) snapshot() map[string]int {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make(map[string]int, len(c.byName))
	for k, v := range c.byName {
		out[k] = v
	}
	clear(c.byName)
	c.roundTrips.Store(0)
	return out
}

func (c *commandCounter) DialHook(next redis.DialHook) redis.DialHook { return next }

func (c *commandCounter) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		c.count(cmd)
		return next(ctx, cmd)
	}
}

func (c *commandCounter) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		c.count(cmds...)
		return next(ctx, cmds)
	}
}

// batchLoad is a batch loader that counts its calls and answers v:key,
// leaving out the keys that start with "absent".
func batchLoad(calls *atomic.Int64) herd.BatchLoader[string] {
	return func(_ context.Context, keys []string) (map[string]string, error) {
		calls.Add(1)
		out := make(map[string]string, len(keys))
		for _, k := range keys {
			if !strings.HasPrefix(k, "absent") {
				out[k] = "v:" + k
			}
		}
		return out, nil
	}
}

// GetMany of 100 cold keys over one Redis: one MGET for the reads and one
// batch loader call; each key's write-back is conditional, as Get's is.
// A second instance then reads them all with one MGET and no load.
func TestCacheGetManyOneReadOneLoad(t *testing.T) {
	srv := startRedis(t)
	ctx := context.Background()
	var counter commandCounter
	counter.byName = map[string]int{}
	newCache := func(hook bool) *herd.Cache[string] {
		client := srv.client(t)
		if hook {
			client.AddHook(&counter)
		}
		s := redisstore.New[string](client, redisstore.Prefix(prefixOf(t)), redisstore.WithLogger(discard()))
		c := herd.New[string](s, herd.WithLogger(discard()), herd.NegativeTTL(time.Minute))
		t.Cleanup(func() { _ = c.Close(context.Background()) })
		return c
	}
	a, b := newCache(true), newCache(false)
	keys := make([]string, 100)
	for i := range keys {
		keys[i] = fmt.Sprint("user:", i)
	}
	keys[99] = "absent"
	var calls atomic.Int64
	got, err := a.GetMany(ctx, keys, batchLoad(&calls))
	if err != nil || len(got) != 99 || got["user:7"] != "v:user:7" {
		t.Fatalf("GetMany = %d values, %v", len(got), err)
	}
	if n := calls.Load(); n != 1 {
		t.Fatalf("%d batch loader calls, want 1", n)
	}
	if err := a.Close(ctx); err != nil { // every write-back has landed
		t.Fatal(err)
	}
	cmds := counter.snapshot()
	if cmds["mget"] != 1 {
		t.Fatalf("commands %v: want one MGET", cmds)
	}
	t.Logf("GetMany of 100 cold keys sent %v", cmds)

	got, err = b.GetMany(ctx, keys, batchLoad(&calls))
	if err != nil || len(got) != 99 || calls.Load() != 1 {
		t.Fatalf("second instance: %d values, %v, %d loader calls", len(got), err, calls.Load())
	}
	if st := b.Stats(); st.Hits != 99 || st.NegativeHits != 1 || st.BatchLoads != 0 {
		t.Fatalf("second instance stats %+v", st)
	}
}

// On a Cluster of three masters, GetMany reads keys of many slots on every
// node and loads the misses in one call; a second instance finds them all.
func TestCacheGetManyClusterManySlots(t *testing.T) {
	srvs := startCluster3(t)
	ctx := context.Background()
	newCache := func() *herd.Cache[string] {
		s := redisstore.New[string](clusterClient(t, srvs[0]), redisstore.Prefix("getmany"), redisstore.WithLogger(discard()))
		c := herd.New[string](s, herd.WithLogger(discard()), herd.NegativeTTL(time.Minute))
		t.Cleanup(func() { _ = c.Close(context.Background()) })
		return c
	}
	a, b := newCache(), newCache()
	keys := make([]string, 500)
	for i := range keys {
		keys[i] = fmt.Sprint("k", i) // spread over the slots of all three nodes
	}
	keys[0], keys[1] = "absent:0", "absent:1"
	for _, k := range keys[2:10] {
		if err := a.Set(ctx, k, "set"); err != nil {
			t.Fatal(err)
		}
	}
	var calls atomic.Int64
	got, err := a.GetMany(ctx, keys, batchLoad(&calls), herd.MaxBatch(1000))
	if err != nil || len(got) != 498 || got["k2"] != "set" || got["k10"] != "v:k10" {
		t.Fatalf("GetMany = %d values, %v", len(got), err)
	}
	if n := calls.Load(); n != 1 {
		t.Fatalf("%d batch loader calls, want 1", n)
	}
	if err := a.Close(ctx); err != nil {
		t.Fatal(err)
	}
	got, err = b.GetMany(ctx, keys, batchLoad(&calls))
	if err != nil || len(got) != 498 || calls.Load() != 1 {
		t.Fatalf("second instance: %d values, %v, %d loader calls", len(got), err, calls.Load())
	}
	for _, k := range keys[2:] {
		if got[k] == "" {
			t.Fatalf("second instance misses %q", k)
		}
	}
	if st := b.Stats(); st.Hits != 498 || st.NegativeHits != 2 {
		t.Fatalf("second instance stats %+v", st)
	}
}
