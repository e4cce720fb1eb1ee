package herd_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/herdcache/herd"
	"github.com/herdcache/herd/flight"
)

// getAll starts a Get of each key on its own goroutine and returns the
// channel of their results, by key.
func getAll(ctx context.Context, c *herd.Cache[string], load herd.Loader[string], keys ...string) <-chan keyResult {
	out := make(chan keyResult, len(keys))
	for _, k := range keys {
		go func() {
			v, err := c.Get(ctx, k, load)
			out <- keyResult{k, v, err}
		}()
	}
	return out
}

type keyResult struct {
	key, value string
	err        error
}

// A lone key waits exactly MaxWait for company, then goes alone.
func TestBatchLoneKeyWaitsMaxWait(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c, _ := newCache(t)
		src := &batchSource{}
		load := herd.Batch(src.load, herd.MaxBatch(10), herd.MaxWait(5*time.Millisecond))
		got := getAll(context.Background(), c, load, "a")
		time.Sleep(5*time.Millisecond - time.Nanosecond)
		synctest.Wait()
		if n := len(src.callKeys()); n != 0 {
			t.Fatalf("%d calls before MaxWait", n)
		}
		time.Sleep(time.Nanosecond)
		synctest.Wait()
		if calls := src.callKeys(); len(calls) != 1 || len(calls[0]) != 1 {
			t.Fatalf("calls %v at MaxWait, want one with a", calls)
		}
		if r := <-got; r.value != "v:a" || r.err != nil {
			t.Fatalf("Get = %+v", r)
		}
	})
}

// A full batch goes at once; keys past it open the next batch.
func TestBatchFullBatchGoesAtOnce(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c, _ := newCache(t)
		src := &batchSource{}
		load := herd.Batch(src.load, herd.MaxBatch(3), herd.MaxWait(time.Hour))
		got := getAll(context.Background(), c, load, "a", "b", "c", "d")
		synctest.Wait()
		calls := src.callKeys()
		if len(calls) != 1 || len(calls[0]) != 3 {
			t.Fatalf("calls %v before any time passed, want one of 3 keys", calls)
		}
		for range 3 {
			if r := <-got; r.value != "v:"+r.key || r.err != nil {
				t.Fatalf("Get = %+v", r)
			}
		}
		time.Sleep(time.Hour)
		if r := <-got; r.value != "v:"+r.key || r.err != nil || len(src.callKeys()) != 2 {
			t.Fatalf("the fourth key: %+v after %v", r, src.callKeys())
		}
	})
}

// Concurrent Gets of different keys within the window reach the source as
// one call; each caller gets its own key's answer.
func TestBatchGathersConcurrentGets(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c, _ := newCache(t, herd.NegativeTTL(time.Minute))
		src := &batchSource{}
		load := herd.Batch(src.load, herd.MaxBatch(100), herd.MaxWait(time.Millisecond))
		keys := []string{"a", "b", "absent", "c"}
		got := getAll(context.Background(), c, load, keys...)
		for range keys {
			r := <-got
			switch {
			case r.key == "absent" && !errors.Is(r.err, herd.ErrNotFound):
				t.Fatalf("Get(absent) = %+v, want ErrNotFound", r)
			case r.key != "absent" && (r.value != "v:"+r.key || r.err != nil):
				t.Fatalf("Get = %+v", r)
			}
		}
		if calls := src.callKeys(); len(calls) != 1 || !sameKeys(calls[0], keys) {
			t.Fatalf("calls %v, want one with every key", calls)
		}
	})
}

// A caller that leaves does not stop the batch: the others get their values,
// and the cache holds the key of the one that left.
func TestBatchCallerLeaves(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c, _ := newCache(t)
		src := &batchSource{}
		load := herd.Batch(src.load, herd.MaxWait(time.Millisecond))
		ctx, cancel := context.WithCancel(context.Background())
		left := getAll(ctx, c, load, "a")
		stays := getAll(context.Background(), c, load, "b")
		synctest.Wait()
		cancel()
		if r := <-left; !errors.Is(r.err, context.Canceled) {
			t.Fatalf("the cancelled Get = %+v", r)
		}
		if r := <-stays; r.value != "v:b" || r.err != nil {
			t.Fatalf("the other Get = %+v", r)
		}
		if calls := src.callKeys(); len(calls) != 1 || !sameKeys(calls[0], []string{"a", "b"}) {
			t.Fatalf("calls %v, want one with a and b", calls)
		}
		synctest.Wait()
		if r := mustGet(t, c, "a", load); r.Value != "v:a" || r.Status != herd.StatusFresh {
			t.Fatalf("Get(a) after the batch = %+v, want the batch's value from the store", r)
		}
	})
}

// Used without a cache, a caller that leaves returns at once, and a batch
// whose callers have all left is cancelled.
func TestBatchLoaderCallerContexts(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		cancelled := make(chan error, 1)
		load := herd.Batch(func(ctx context.Context, keys []string) (map[string]string, error) {
			<-ctx.Done()
			cancelled <- ctx.Err()
			return nil, ctx.Err()
		}, herd.MaxWait(time.Millisecond))
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error)
		go func() {
			_, err := load(ctx, "a")
			done <- err
		}()
		time.Sleep(time.Millisecond)
		synctest.Wait() // the batch is running
		cancel()
		if err := <-done; !errors.Is(err, context.Canceled) {
			t.Fatalf("load = %v, want context.Canceled", err)
		}
		if err := <-cancelled; !errors.Is(err, context.Canceled) {
			t.Fatalf("the abandoned batch's context ended with %v", err)
		}
		// A caller that leaves an open window closes it: no call at all.
		ctx, cancel = context.WithCancel(context.Background())
		go func() {
			_, err := load(ctx, "b")
			done <- err
		}()
		synctest.Wait()
		cancel()
		if err := <-done; !errors.Is(err, context.Canceled) {
			t.Fatalf("load = %v, want context.Canceled", err)
		}
		time.Sleep(time.Hour)
		synctest.Wait()
		select {
		case err := <-cancelled:
			t.Fatalf("a batch nobody waited for ran (%v)", err)
		default:
		}
	})
}

// A batch loader that panics reaches every caller of its batch as a
// *flight.PanicError, and nobody else.
func TestBatchLoaderPanic(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c, _ := newCache(t)
		src := &batchSource{panicker: "bad"}
		load := herd.Batch(src.load, herd.MaxBatch(3), herd.MaxWait(time.Millisecond))
		got := getAll(context.Background(), c, load, "a", "bad", "c")
		for range 3 {
			r := <-got
			var pe *flight.PanicError
			if !errors.As(r.err, &pe) || pe.Value != "boom in bad" {
				t.Fatalf("Get(%q) = %v, want a *flight.PanicError", r.key, r.err)
			}
		}
		got = getAll(context.Background(), c, load, "a", "c")
		for range 2 {
			if r := <-got; r.value != "v:"+r.key || r.err != nil {
				t.Fatalf("Get after the panic = %+v", r)
			}
		}
	})
}

// An error of the batch loader reaches every caller of the batch; SetKeyTTL
// reaches the entry of its key.
func TestBatchErrorAndTTL(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c, s := newCache(t, herd.TTL(time.Hour))
		src := &batchSource{setTTL: map[string]time.Duration{"short": time.Minute}}
		load := herd.Batch(src.load, herd.MaxWait(time.Millisecond))
		got := getAll(context.Background(), c, load, "fail", "a")
		for range 2 {
			if r := <-got; !errors.Is(r.err, errSource) {
				t.Fatalf("Get(%q) = %+v, want the batch's error", r.key, r)
			}
		}
		start := time.Now()
		got = getAll(context.Background(), c, load, "short", "long")
		for range 2 {
			if r := <-got; r.err != nil {
				t.Fatal(r.err)
			}
		}
		synctest.Wait()
		at := start.Add(time.Millisecond)
		if e := s.entry(t, "short"); !e.ExpiresAt.Equal(at.Add(time.Minute)) {
			t.Fatalf("short expires at %v, want %v", e.ExpiresAt, at.Add(time.Minute))
		}
		if e := s.entry(t, "long"); !e.ExpiresAt.Equal(at.Add(time.Hour)) {
			t.Fatalf("long expires at %v, want %v", e.ExpiresAt, at.Add(time.Hour))
		}
	})
}

// At most MaxConcurrentBatches calls run at once; a full batch waits for a
// slot.
func TestBatchConcurrencyBound(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		src := &batchSource{}
		release := src.block()
		load := herd.Batch(src.load, herd.MaxBatch(1), herd.MaxConcurrentBatches(2))
		var wg sync.WaitGroup
		for i := range 5 {
			wg.Go(func() {
				if v, err := load(context.Background(), fmt.Sprint(i)); err != nil || v != fmt.Sprint("v:", i) {
					t.Errorf("load(%d) = %q, %v", i, v, err)
				}
			})
		}
		synctest.Wait()
		if n := len(src.callKeys()); n != 2 {
			t.Fatalf("%d calls running, want 2", n)
		}
		release()
		wg.Wait()
		if n, peak := len(src.callKeys()), src.peak.Load(); n != 5 || peak != 2 {
			t.Fatalf("%d calls, %d at once; want 5, 2", n, peak)
		}
	})
}
