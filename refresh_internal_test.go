package herd

import (
	"context"
	"testing"
	"time"

	"github.com/herdcache/herd/store/memory"
)

// A stale read of an entry whose refresh is in flight takes no lock: it is
// answered while the refresher's mutex is held. (A read that took the lock
// would wait for it; the test gives up on it after a minute.)
func TestStaleReadOfARefreshingEntryTakesNoLock(t *testing.T) {
	// An exact clock and a refresh after 1ns: the entry is stale at the
	// next read, with no wait.
	c := New(memory.New[string](memory.ExactClock()), TTL(time.Hour), RefreshAfter(time.Nanosecond))
	defer func() { _ = c.Close(context.Background()) }()
	ctx := context.Background()
	gate := make(chan struct{})
	defer close(gate)
	loads := 0
	load := func(context.Context, string) (string, error) {
		if loads++; loads > 1 {
			<-gate // the refresh hangs
		}
		return "v", nil
	}
	if _, err := c.Get(ctx, "k", load); err != nil {
		t.Fatal(err)
	}
	if r, err := c.Fetch(ctx, "k", load); err != nil || r.Status != StatusStale { // queues the refresh
		t.Fatalf("second read = %+v, %v; want stale", r, err)
	}
	c.refresh.mu.Lock()
	done := make(chan struct{})
	go func() {
		defer close(done)
		if r, err := c.Fetch(ctx, "k", load); err != nil || r.Status != StatusStale {
			t.Errorf("stale read = %+v, %v", r, err)
		}
	}()
	select {
	case <-done:
	case <-time.After(time.Minute):
		t.Error("a stale read of a refreshing entry waited for the refresher's lock")
	}
	c.refresh.mu.Unlock()
	<-done
}
