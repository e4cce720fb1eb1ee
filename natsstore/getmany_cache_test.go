package natsstore_test

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/herdcache/herd"
)

// GetMany over a NATS bucket: the cold keys are loaded in one batch call
// and written back; a second instance reads them all from the bucket with
// no load; a Set from the second instance during a batch of the first wins.
func TestCacheGetMany(t *testing.T) {
	srv := startServer(t)
	ctx := context.Background()
	newCache := func() *herd.Cache[string] {
		_, js := connect(t, srv.url())
		s := newStore[string](t, js, "getmany")
		c := herd.New[string](s, herd.TTL(time.Hour), herd.NegativeTTL(time.Hour),
			herd.WithLogger(slog.New(slog.DiscardHandler)))
		t.Cleanup(func() { _ = c.Close(context.Background()) })
		return c
	}
	a, b := newCache(), newCache()
	var calls atomic.Int64
	gate := make(chan struct{})
	entered := make(chan struct{}, 1)
	load := func(_ context.Context, keys []string) (map[string]string, error) {
		if calls.Add(1) == 1 {
			entered <- struct{}{}
			<-gate
		}
		out := make(map[string]string, len(keys))
		for _, k := range keys {
			if !strings.HasPrefix(k, "absent") {
				out[k] = "v:" + k
			}
		}
		return out, nil
	}
	keys := make([]string, 200)
	for i := range keys {
		keys[i] = fmt.Sprint("user:", i)
	}
	keys[0] = "absent"

	done := make(chan error, 1)
	go func() {
		got, err := a.GetMany(ctx, keys, load, herd.MaxBatch(200))
		if err == nil && (len(got) != 199 || got["user:1"] != "v:user:1") {
			err = fmt.Errorf("GetMany = %d values, user:1 = %q", len(got), got["user:1"])
		}
		done <- err
	}()
	<-entered
	if err := b.Set(ctx, "user:1", "set by b"); err != nil {
		t.Fatal(err)
	}
	close(gate)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if err := a.Close(ctx); err != nil { // every write-back has landed
		t.Fatal(err)
	}
	if a.Stats().WriteConflicts != 1 {
		t.Fatalf("first instance stats %+v, want one refused write-back", a.Stats())
	}

	got, err := b.GetMany(ctx, keys, load)
	if err != nil || len(got) != 199 || calls.Load() != 1 {
		t.Fatalf("second instance: %d values, %v, %d loader calls", len(got), err, calls.Load())
	}
	if got["user:1"] != "set by b" || got["user:2"] != "v:user:2" {
		t.Fatalf("second instance read user:1 = %q, user:2 = %q", got["user:1"], got["user:2"])
	}
	if st := b.Stats(); st.Hits != 199 || st.NegativeHits != 1 || st.BatchLoads != 0 {
		t.Fatalf("second instance stats %+v", st)
	}
}
