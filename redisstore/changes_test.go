package redisstore_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/herdcache/herd/redisstore"
	"github.com/herdcache/herd/store"
	"github.com/herdcache/herd/store/storetest"
)

// A recorder keeps what a watch delivered.
type recorder struct {
	mu      sync.Mutex
	changes []store.Change
	signal  chan struct{}
}

func newRecorder() *recorder { return &recorder{signal: make(chan struct{}, 1)} }

func (r *recorder) fn(c store.Change) {
	r.mu.Lock()
	r.changes = append(r.changes, c)
	r.mu.Unlock()
	select {
	case r.signal <- struct{}{}:
	default:
	}
}

// mark returns how many changes were delivered so far.
func (r *recorder) mark() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.changes)
}

// seen reports whether a change matching want was delivered after mark.
func (r *recorder) seen(from int, want store.Change) (int, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for i := from; i < len(r.changes); i++ {
		if r.changes[i] == want {
			return i, true
		}
	}
	return 0, false
}

// await waits up to 30s for a change matching want after mark, and returns
// its position.
func (r *recorder) await(t *testing.T, from int, want store.Change) int {
	t.Helper()
	deadline := time.After(30 * time.Second)
	for {
		if i, ok := r.seen(from, want); ok {
			return i + 1
		}
		select {
		case <-r.signal:
		case <-deadline:
			t.Fatalf("no %+v delivered within 30s", want)
		}
	}
}

// awaitWrites writes key with write every 50ms until a change of it is
// delivered after mark: for a watch that may still be reconnecting.
func (r *recorder) awaitWrites(t *testing.T, from int, key string, write func() error) {
	t.Helper()
	deadline := time.After(30 * time.Second)
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		_ = write()
		if _, ok := r.seen(from, store.Change{Key: key}); ok {
			return
		}
		select {
		case <-tick.C:
		case <-deadline:
			t.Fatalf("a write of %q not delivered within 30s", key)
		}
	}
}

func watchStore(t *testing.T, s *redisstore.Store[storetest.Value]) *recorder {
	t.Helper()
	r := newRecorder()
	w, err := s.Watch(context.Background(), r.fn)
	if err != nil {
		t.Fatalf("Watch: %v", err)
	}
	t.Cleanup(func() { _ = w.Close() })
	return r
}

var (
	changeAll  = store.Change{All: true}
	changeDown = store.Change{Down: true}
	changeGap  = store.Change{Gap: true}
)

// Writes through the store by this process and another, by a plain Redis
// client, and a server-side expiry are all reported, with the cache key.
func TestWatchReportsEveryWriter(t *testing.T) {
	srv := startRedis(t)
	c := srv.client(t)
	ctx := context.Background()
	s := newStore(t, srv)
	other := newStore(t, srv)
	r := watchStore(t, s)

	if err := s.Set(ctx, "own", value("v")); err != nil {
		t.Fatal(err)
	}
	r.await(t, 0, store.Change{Key: "own"})
	if err := other.Delete(ctx, "own"); err != nil {
		t.Fatal(err)
	}
	at := r.await(t, 0, store.Change{Key: "own"})
	r.await(t, at, store.Change{Key: "own"})

	if err := c.Set(ctx, s.Key("plain"), "bytes", 0).Err(); err != nil {
		t.Fatal(err)
	}
	r.await(t, 0, store.Change{Key: "plain"})

	// PX: reported once for the SET, once more when the server expires it.
	from := r.mark()
	if err := c.Set(ctx, s.Key("expiring"), "bytes", 50*time.Millisecond).Err(); err != nil {
		t.Fatal(err)
	}
	at = r.await(t, from, store.Change{Key: "expiring"})
	waitFor(t, "the key to expire", func() bool { return c.Exists(ctx, s.Key("expiring")).Val() == 0 })
	r.await(t, at, store.Change{Key: "expiring"})

	// Keys of another prefix, and the store's own version records and
	// locks, are not reported.
	if err := c.Set(ctx, "unrelated", "x", 0).Err(); err != nil {
		t.Fatal(err)
	}
	l, err := s.TryLock(ctx, "locked", time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	_ = l.Unlock(ctx)
	if err := s.Set(ctx, "last", value("v")); err != nil {
		t.Fatal(err)
	}
	r.await(t, 0, store.Change{Key: "last"})
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, ch := range r.changes {
		if ch.All || (ch.Key != "own" && ch.Key != "plain" && ch.Key != "expiring" && ch.Key != "last") {
			t.Errorf("unexpected change %+v", ch)
		}
	}
}

// The tracking connection killed: All, then changes again.
func TestWatchClientKill(t *testing.T) {
	srv := startRedis(t)
	c := srv.client(t)
	ctx := context.Background()
	s := newStore(t, srv)
	r := watchStore(t, s)
	for round := range 3 {
		from := r.mark()
		if n, err := c.ClientKillByFilter(ctx, "TYPE", "pubsub").Result(); err != nil || n != 1 {
			t.Fatalf("CLIENT KILL TYPE pubsub: %d, %v", n, err)
		}
		at := r.await(t, r.await(t, from, changeDown), changeGap)
		key := fmt.Sprintf("after-kill-%d", round)
		r.awaitWrites(t, at, key, func() error { return s.Set(ctx, key, value("v")) })
	}
}

// FLUSHALL: All, on the same connection, then changes again.
func TestWatchFlushAll(t *testing.T) {
	srv := startRedis(t)
	c := srv.client(t)
	ctx := context.Background()
	s := newStore(t, srv)
	r := watchStore(t, s)
	if err := s.Set(ctx, "k", value("v")); err != nil {
		t.Fatal(err)
	}
	r.await(t, 0, store.Change{Key: "k"})
	from := r.mark()
	if err := c.FlushAll(ctx).Err(); err != nil {
		t.Fatal(err)
	}
	at := r.await(t, from, changeAll)
	r.awaitWrites(t, at, "after-flush", func() error { return s.Set(ctx, "after-flush", value("v")) })
	if _, ok := r.seen(from, changeDown); ok {
		t.Fatalf("a flush reported as a cut: %v", r.changes)
	}
}

// The server restarted: Down, then, as it is another process whose
// dataset may be anything, All and Gap, then changes again.
func TestWatchServerRestart(t *testing.T) {
	srv := startRedis(t)
	ctx := context.Background()
	s := newStore(t, srv)
	r := watchStore(t, s)
	srv.restart()
	at := r.await(t, r.await(t, r.await(t, 0, changeDown), changeAll), changeGap)
	r.awaitWrites(t, at, "after-restart", func() error { return s.Set(ctx, "after-restart", value("v")) })
}

// A server that stops answering (CLIENT PAUSE) is found by the ping: Down,
// then Gap and changes again once it answers.
func TestWatchSilentConnection(t *testing.T) {
	srv := startRedis(t)
	c := srv.client(t)
	ctx := context.Background()
	s := newStore(t, srv, redisstore.WatchPing(50*time.Millisecond))
	r := watchStore(t, s)
	if err := c.Do(ctx, "CLIENT", "PAUSE", 1000, "ALL").Err(); err != nil {
		t.Fatal(err)
	}
	at := r.await(t, r.await(t, 0, changeDown), changeGap)
	r.awaitWrites(t, at, "after-pause", func() error { return s.Set(ctx, "after-pause", value("v")) })
}

// A panic in fn is recovered and logged with "err", fn is told All, and
// deliveries go on.
func TestWatchFunctionPanics(t *testing.T) {
	srv := startRedis(t)
	ctx := context.Background()
	logs := &captured{}
	s := newStore(t, srv, redisstore.WithLogger(slog.New(logs)))
	r := newRecorder()
	w, err := s.Watch(ctx, func(c store.Change) {
		if c.Key == "boom" {
			panic("boom")
		}
		r.fn(c)
	})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = w.Close() }()
	if err := s.Set(ctx, "boom", value("v")); err != nil {
		t.Fatal(err)
	}
	at := r.await(t, 0, changeAll)
	if err := s.Set(ctx, "after", value("v")); err != nil {
		t.Fatal(err)
	}
	r.await(t, at, store.Change{Key: "after"})
	rec, ok := logs.find("redisstore: watch function panicked")
	if !ok {
		t.Fatal("the panic was not logged")
	}
	if err, _ := rec["err"].(error); err == nil || !strings.Contains(err.Error(), "boom") {
		t.Fatalf("logged err = %v, want the panic", rec["err"])
	}
}

// captured is a slog handler that keeps records' attributes.
type captured struct {
	mu      sync.Mutex
	records []map[string]any
}

func (h *captured) Enabled(context.Context, slog.Level) bool { return true }
func (h *captured) WithAttrs([]slog.Attr) slog.Handler       { return h }
func (h *captured) WithGroup(string) slog.Handler            { return h }

func (h *captured) Handle(_ context.Context, r slog.Record) error {
	m := map[string]any{"msg": r.Message}
	r.Attrs(func(a slog.Attr) bool {
		m[a.Key] = a.Value.Any()
		return true
	})
	h.mu.Lock()
	h.records = append(h.records, m)
	h.mu.Unlock()
	return nil
}

func (h *captured) find(msg string) (map[string]any, bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, r := range h.records {
		if r["msg"] == msg {
			return r, true
		}
	}
	return nil, false
}

// Close: the store's Close closes its watches (fn is not called again) and
// waits for them; every method after Close returns ErrClosed; the client
// stays open; every Close returns nil; a Close whose context ended says so.
func TestWatchClose(t *testing.T) {
	srv := startRedis(t)
	c := srv.client(t)
	ctx := context.Background()
	s := newStore(t, srv)
	r := watchStore(t, s)
	if err := s.Set(ctx, "k", value("v")); err != nil {
		t.Fatal(err)
	}
	r.await(t, 0, store.Change{Key: "k"})
	done, cancel := context.WithCancel(ctx)
	cancel()
	if err := s.Close(done); err != nil && (!errors.Is(err, context.Canceled) || !strings.HasPrefix(err.Error(), "redisstore: close: ")) {
		t.Fatalf("Close with an ended context = %v", err)
	}
	for range 2 {
		if err := s.Close(ctx); err != nil {
			t.Fatalf("Close: %v", err)
		}
	}
	n := r.mark()
	if err := newStore(t, srv).Set(ctx, "after-close", value("v")); err != nil {
		t.Fatalf("Set through another store: %v", err)
	}
	for op, err := range map[string]error{
		"Set":    s.Set(ctx, "k", value("v")),
		"Delete": s.Delete(ctx, "k"),
		"SetIf":  s.SetIf(ctx, "k", value("v"), 0),
		"Get":    second(s.Get(ctx, "k")),
		"GetMany": func() error {
			_, err := s.GetMany(ctx, []string{"k"})
			return err
		}(),
		"GetVersion": func() error {
			_, _, _, err := s.GetVersion(ctx, "k")
			return err
		}(),
		"TryLock": func() error {
			_, err := s.TryLock(ctx, "k", time.Second)
			return err
		}(),
	} {
		if !errors.Is(err, redisstore.ErrClosed) {
			t.Errorf("%s after Close = %v, want ErrClosed", op, err)
		}
	}
	if err := c.Ping(ctx).Err(); err != nil {
		t.Fatalf("the store closed the client it was given: %v", err)
	}
	if _, err := s.Watch(ctx, r.fn); !errors.Is(err, redisstore.ErrClosed) {
		t.Fatalf("Watch after Close = %v, want ErrClosed", err)
	}
	// The watch's connection is gone: a client with a "P" (pubsub) flag
	// would be it.
	list, err := c.ClientList(ctx).Result()
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(list, "flags=P") {
		t.Fatalf("a subscribed connection outlived Close:\n%s", list)
	}
	if m := r.mark(); m != n {
		t.Fatalf("%d changes delivered after Close", m-n)
	}
}

// Watch on a server that does not answer returns when its context ends.
func TestWatchHonoursItsContext(t *testing.T) {
	addr := silentListener(t)
	c := newClient(t, addr, func(o *redis.Options) { o.ReadTimeout, o.WriteTimeout = time.Minute, time.Minute })
	s := redisstore.New[storetest.Value](c, redisstore.Prefix("p"))
	ctx, cancel := context.WithCancel(context.Background())
	go func() {
		<-time.After(100 * time.Millisecond)
		cancel()
	}()
	if _, err := s.Watch(ctx, func(store.Change) {}); !errors.Is(err, context.Canceled) {
		t.Fatalf("Watch on a silent server = %v, want context.Canceled", err)
	}
	if err := s.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
}

// Three masters: writes of keys on every master reach the watch; one
// master's tracking connection killed gives All, and that master's changes
// come again.
func TestClusterThreeMastersWatch(t *testing.T) {
	srvs := startCluster3(t)
	ctx := context.Background()
	s := redisstore.New[storetest.Value](clusterClient(t, srvs[0]), redisstore.Prefix("p"), redisstore.WithLogger(discard()))
	r := watchStore(t, s)
	// One key per master, found by the slot ranges.
	onMaster := make([]string, 3)
	for i := 0; onMaster[0] == "" || onMaster[1] == "" || onMaster[2] == ""; i++ {
		key := fmt.Sprintf("key-%d", i)
		slot := clusterSlot(t, srvs[0], s.Key(key))
		if m := slot * 3 / 16384; onMaster[m] == "" {
			onMaster[m] = key
		}
	}
	for i, key := range onMaster {
		if err := s.Set(ctx, key, value("v")); err != nil {
			t.Fatal(err)
		}
		r.await(t, 0, store.Change{Key: key})
		if n := srvs[i].client(t).Exists(ctx, s.Key(key)).Val(); n != 1 {
			t.Fatalf("key %q is not on master %d", key, i)
		}
	}
	for i, srv := range srvs {
		from := r.mark()
		if n, err := srv.client(t).ClientKillByFilter(ctx, "TYPE", "pubsub").Result(); err != nil || n != 1 {
			t.Fatalf("CLIENT KILL TYPE pubsub on master %d: %d, %v", i, n, err)
		}
		at := r.await(t, r.await(t, from, changeDown), changeGap)
		key := onMaster[i]
		r.awaitWrites(t, at, key, func() error { return s.Set(ctx, key, value("v")) })
	}
}

func clusterSlot(t *testing.T, srv *redisServer, key string) int {
	t.Helper()
	n, err := srv.client(t).ClusterKeySlot(context.Background(), key).Result()
	if err != nil {
		t.Fatal(err)
	}
	return int(n)
}

// A master that joins the Cluster gets a connection of its own: Gap (the
// keys it wrote before are unknown), then the changes of the keys it
// serves.
func TestClusterNewMasterWatched(t *testing.T) {
	srvs := startCluster3(t)
	ctx := context.Background()
	s := redisstore.New[storetest.Value](clusterClient(t, srvs[0]), redisstore.Prefix("p"), redisstore.WithLogger(discard()))
	r := watchStore(t, s)

	joined := startRedis(t, "--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf")
	jc := joined.client(t)
	if err := jc.ClusterMeet(ctx, "127.0.0.1", strconv.Itoa(srvs[0].port)).Err(); err != nil {
		t.Fatal(err)
	}
	nodes := []*redisServer{srvs[0], srvs[1], srvs[2], joined}
	for _, srv := range nodes {
		c := srv.client(t)
		waitFor(t, "the fourth node to be known", func() bool {
			info, err := c.ClusterInfo(ctx).Result()
			return err == nil && strings.Contains(info, "cluster_known_nodes:4")
		})
	}
	// Hand the slot of one key, empty, to the new node.
	const key = "moved"
	slot := clusterSlot(t, srvs[0], s.Key(key))
	id, err := jc.Do(ctx, "CLUSTER", "MYID").Text()
	if err != nil {
		t.Fatal(err)
	}
	owner := srvs[slot*3/16384]
	for _, srv := range append([]*redisServer{joined, owner}, nodes...) {
		if err := srv.client(t).Do(ctx, "CLUSTER", "SETSLOT", slot, "NODE", id).Err(); err != nil {
			t.Fatalf("CLUSTER SETSLOT %d NODE %s: %v", slot, id, err)
		}
	}
	at := r.await(t, 0, changeGap)
	r.awaitWrites(t, at, key, func() error { return s.Set(ctx, key, value("v")) })
	if n := jc.Exists(ctx, s.Key(key)).Val(); n != 1 {
		t.Fatalf("key %q is not on the new master", key)
	}
}

func second[A, B any](_ A, _ B, err error) error { return err }

// Every way Redis 7 replaces a database without a per-key invalidation is
// reported as All, on a healthy connection (no Down): SWAPDB, which sends
// nothing, found by the watch's marker key within WatchPing, there and back
// again (the first marker is then back in the database, and must not pass
// for the current one); FLUSHDB of another database, FLUSHALL and DEBUG
// RELOAD, which send Redis's "every key" message.
func TestWatchDatabaseReplaced(t *testing.T) {
	srv := startRedis(t, "--enable-debug-command", "yes")
	ctx := context.Background()
	s := newStore(t, srv, redisstore.WatchPing(50*time.Millisecond))
	r := watchStore(t, s)
	c := srv.client(t)
	other := srv.client(t, func(o *redis.Options) { o.DB = 3 })
	for _, op := range []struct {
		name string
		do   func() error
	}{
		{"SWAPDB", func() error { return c.Do(ctx, "SWAPDB", 0, 1).Err() }},
		{"SWAPDB back", func() error { return c.Do(ctx, "SWAPDB", 0, 1).Err() }},
		{"FLUSHDB of another database", func() error { return other.FlushDB(ctx).Err() }},
		{"FLUSHALL", func() error { return c.FlushAll(ctx).Err() }},
		{"DEBUG RELOAD", func() error { return c.Do(ctx, "DEBUG", "RELOAD").Err() }},
	} {
		from := r.mark()
		r.awaitWrites(t, from, "before", func() error { return s.Set(ctx, "before", value("v")) })
		from = r.mark()
		if err := op.do(); err != nil {
			t.Fatalf("%s: %v", op.name, err)
		}
		at := r.await(t, from, changeAll)
		r.awaitWrites(t, at, "after", func() error { return s.Set(ctx, "after", value("v")) })
		if _, ok := r.seen(from, changeDown); ok {
			t.Fatalf("%s reported as a cut: %v", op.name, r.changes[from:])
		}
	}
}

// A client that may read from a replica is refused by Watch with
// ErrReplicaReads: a client of a replica's address, a Sentinel client with
// ReplicaOnly, and Cluster clients routing reads to replicas. Without a
// watch, the store works as before.
func TestWatchRefusesReplicaReads(t *testing.T) {
	ctx := context.Background()
	primary := startRedis(t)
	replica := startRedis(t, "--replicaof", "127.0.0.1", strconv.Itoa(primary.port))
	s := newStore(t, replica)
	if _, err := s.Watch(ctx, func(store.Change) {}); !errors.Is(err, redisstore.ErrReplicaReads) {
		t.Fatalf("Watch through a replica's client = %v, want ErrReplicaReads", err)
	}
	if _, _, err := s.Get(ctx, "k"); err != nil {
		t.Fatalf("Get through a replica's client: %v", err)
	}
	if w, err := newStore(t, primary).Watch(ctx, func(store.Change) {}); err != nil {
		t.Fatalf("Watch through the primary's client: %v", err)
	} else {
		_ = w.Close()
	}

	// A Sentinel client that reads from replicas, and one of the master.
	// Until Sentinel knows a replica, go-redis sends even a ReplicaOnly
	// client to the master, and Watch cannot tell.
	sentinel := startSentinel(t, primary)
	sc := sentinel.client(t)
	waitFor(t, "Sentinel to know the replica", func() bool {
		rs, err := sc.Do(ctx, "SENTINEL", "REPLICAS", "m").Slice()
		if err != nil || len(rs) != 1 {
			return false
		}
		switch r := rs[0].(type) {
		case map[any]any: // RESP3
			return r["flags"] == "slave"
		case []any: // RESP2
			for i := 0; i+1 < len(r); i += 2 {
				if r[i] == "flags" {
					return r[i+1] == "slave"
				}
			}
		}
		return false
	})
	for replicaOnly, want := range map[bool]error{true: redisstore.ErrReplicaReads, false: nil} {
		c := redis.NewFailoverClient(&redis.FailoverOptions{
			MasterName: "m", SentinelAddrs: []string{sentinel.addr()}, ReplicaOnly: replicaOnly,
			ContextTimeoutEnabled: true, DialTimeout: time.Second, ReadTimeout: time.Second, WriteTimeout: time.Second,
		})
		t.Cleanup(func() { _ = c.Close() })
		s := redisstore.New[storetest.Value](c, redisstore.Prefix("p"), redisstore.WithLogger(discard()))
		w, err := s.Watch(ctx, func(store.Change) {})
		if !errors.Is(err, want) || (want == nil) != (err == nil) {
			t.Fatalf("Watch through a Sentinel client with ReplicaOnly %v = %v, want %v", replicaOnly, err, want)
		}
		if w != nil {
			_ = w.Close()
		}
	}

	srv := startCluster(t)
	for name, adjust := range map[string]func(*redis.ClusterOptions){
		"ReadOnly":       func(o *redis.ClusterOptions) { o.ReadOnly = true },
		"RouteByLatency": func(o *redis.ClusterOptions) { o.RouteByLatency = true },
		"RouteRandomly":  func(o *redis.ClusterOptions) { o.RouteRandomly = true },
	} {
		c := clusterClient(t, srv, adjust)
		s := redisstore.New[storetest.Value](c, redisstore.Prefix("p"))
		if _, err := s.Watch(ctx, func(store.Change) {}); !errors.Is(err, redisstore.ErrReplicaReads) {
			t.Fatalf("Watch through a Cluster client with %s = %v, want ErrReplicaReads", name, err)
		}
	}
}
