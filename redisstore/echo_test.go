package redisstore_test

import (
	"context"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/herdcache/herd/redisstore"
	"github.com/herdcache/herd/store"
	"github.com/herdcache/herd/store/tiered"
)

// spinUntil waits, without sleeping, until cond holds (at most 30s): for
// an event that must be seen before what follows it moves on.
func spinUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("gave up waiting for %s after 30s", what)
		}
		runtime.Gosched()
	}
}

// On Redis, a write made while the instance's tracking connection is down
// (its data connections fine) loses its echo, as Redis keeps nothing to
// replay; once tracking is back (Gap), the change of a later write by
// another client is not taken for that echo: the instance drops its copy
// and reads the later value, whether or not its repair has read the key
// yet (20,000 copies near make the repair long, so that the change
// usually comes while it runs).
//
// Sequence: A holds 20,000 copies; new connections are refused
// (maxclients) and A's tracking connection killed: Down; A sets k = "a"
// over its pooled connection; connections are allowed again: tracking
// back, Gap, the repair starts; B, a plain client, sets k = "b"; A handles
// that change, and reads "b".
func TestWriteWhileTrackingIsDownDoesNotTakeALaterChangeForItsEcho(t *testing.T) {
	srv := startRedis(t)
	admin := srv.client(t)
	ctx := context.Background()
	const n = 20_000
	a := behind(t, srv, nil, tiered.NearMaxEntries(2*n))
	b := redisstore.New[string](srv.client(t), redisstore.Prefix(prefixOf(t)), redisstore.WithLogger(discard()))
	t.Cleanup(func() { _ = b.Close(context.Background()) })

	writes := make([]store.ConditionalWrite[string], n)
	for i := range writes {
		writes[i] = store.ConditionalWrite[string]{Key: strconv.Itoa(i), Entry: store.Entry[string]{Value: "v0"}}
	}
	for i, err := range a.WriteIf(ctx, writes) {
		if err != nil {
			t.Fatalf("write %d: %v", i, err)
		}
	}
	waitFor(t, "A's echoes", func() bool { st := a.Stats(); return st.Echoes+st.Changes >= n })
	if err := b.Set(ctx, "warm", store.Entry[string]{Value: "x"}); err != nil { // B's pooled connection
		t.Fatal(err)
	}

	list, err := admin.ClientList(ctx).Result()
	if err != nil {
		t.Fatal(err)
	}
	clients := strings.Count(strings.TrimSpace(list), "\n") + 1
	if err := admin.ConfigSet(ctx, "maxclients", strconv.Itoa(clients)).Err(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = admin.ConfigSet(context.Background(), "maxclients", "10000").Err() })
	if err := admin.ClientKillByFilter(ctx, "TYPE", "pubsub").Err(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "A's Down", func() bool { return a.Stats().Downs > 0 })
	if err := a.Set(ctx, "k", store.Entry[string]{Value: "a"}); err != nil {
		t.Fatalf("A's Set over its pooled connection while tracking is down: %v", err)
	}
	if err := admin.ConfigSet(ctx, "maxclients", "10000").Err(); err != nil {
		t.Fatal(err)
	}
	spinUntil(t, "A's repair", func() bool { return a.Stats().Repairs > 0 })
	before := a.Stats()
	if err := b.Set(ctx, "k", store.Entry[string]{Value: "b"}); err != nil {
		t.Fatal(err)
	}
	spinUntil(t, "B's change handled by A", func() bool {
		st := a.Stats()
		return st.Changes+st.Echoes > before.Changes+before.Echoes
	})
	e, ok, err := a.Get(ctx, "k")
	after := a.Stats()
	if err != nil || !ok || e.Value != "b" {
		t.Fatalf("A read %q, %v, %v after B's later write was delivered to it (taken for an echo: %v; repair had read %d of %d keys); want \"b\"",
			e.Value, ok, err, after.Echoes > before.Echoes, after.RepairReads, n+1)
	}
}
