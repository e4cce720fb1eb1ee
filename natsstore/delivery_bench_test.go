package natsstore_test

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/herdcache/herd/natsstore"
	"github.com/herdcache/herd/store"
	"github.com/herdcache/herd/store/tiered"
)

// BenchmarkWatchDelivery measures the time from the start of a Set through
// one store to the call of another store's watch function with that key,
// one write at a time, on loopback. It reports the Set's own round trip
// and the delivery's percentiles.
func BenchmarkWatchDelivery(b *testing.B) {
	srv := startServer(b)
	ctx := context.Background()
	_, js1 := connect(b, srv.url())
	_, js2 := connect(b, srv.url())
	writer := newStore[string](b, js1, "delivery")
	watched := newStore[string](b, js2, "delivery")
	got := make(chan time.Time, 1)
	w, err := watched.Watch(ctx, func(c store.Change) {
		if c.Key == "k" {
			got <- time.Now()
		}
	})
	if err != nil {
		b.Fatal(err)
	}
	defer w.Close()
	e := store.Entry[string]{Value: "v"}
	var set, delivery []time.Duration
	for b.Loop() {
		start := time.Now()
		if err := writer.Set(ctx, "k", e); err != nil {
			b.Fatal(err)
		}
		set = append(set, time.Since(start))
		at := <-got
		delivery = append(delivery, at.Sub(start))
	}
	report(b, "set", set)
	report(b, "delivery", delivery)
}

func report(b *testing.B, name string, ds []time.Duration) {
	slices.Sort(ds)
	pct := func(p float64) time.Duration { return ds[int(float64(len(ds)-1)*p)] }
	b.ReportMetric(float64(pct(0.5).Microseconds()), name+"-p50-µs")
	b.ReportMetric(float64(pct(0.99).Microseconds()), name+"-p99-µs")
}

// BenchmarkNearDelivery measures how long a Set through one two-level
// store takes to reach another's near tier, one write at a time, on
// loopback: near-drop is the time from the start of the Set until the
// reader's store has handled the change (its near copy dropped), near-read
// the time until the reader's first Get after that has returned the new
// value (a far read), which it must. Nothing polls: time.Sleep below a
// millisecond sleeps about a millisecond on Linux (the idle runtime waits
// for its timers in epoll_wait, whose timeout is in whole milliseconds;
// golang/go#44343), so a poll every 100µs measured that instead of the
// delivery for every write not delivered by the first poll.
func BenchmarkNearDelivery(b *testing.B) {
	srv := startServer(b)
	ctx := context.Background()
	_, js1 := connect(b, srv.url())
	_, js2 := connect(b, srv.url())
	writer, err := tiered.NewVersioned[int64](newStore[int64](b, js1, "near"), tiered.NearTTL(time.Hour))
	if err != nil {
		b.Fatal(err)
	}
	defer writer.Close(ctx)
	far := &signalFar[int64]{Store: newStore[int64](b, js2, "near"), handled: make(chan time.Time, 1)}
	reader, err := tiered.NewVersioned[int64](far, tiered.NearTTL(time.Hour))
	if err != nil {
		b.Fatal(err)
	}
	defer reader.Close(ctx)
	var drop, read []time.Duration
	n := int64(0)
	for b.Loop() {
		n++
		if err := writer.Set(ctx, "k", store.Entry[int64]{Value: n}); err != nil {
			b.Fatal(err)
		}
		far.wait(b) // its echo: the reader's near copy of n is not dropped later
		if e, ok, err := reader.Get(ctx, "k"); err != nil || !ok || e.Value != n {
			b.Fatalf("reader: %d, %v, %v; want %d", e.Value, ok, err, n)
		}
		start := time.Now()
		if err := writer.Set(ctx, "k", store.Entry[int64]{Value: -n}); err != nil {
			b.Fatal(err)
		}
		at := far.wait(b)
		e, ok, err := reader.Get(ctx, "k")
		if err != nil || !ok || e.Value != -n {
			b.Fatalf("reader after the change: %d, %v, %v; want %d", e.Value, ok, err, -n)
		}
		read = append(read, time.Since(start))
		drop = append(drop, at.Sub(start))
	}
	report(b, "near-drop", drop)
	report(b, "near-read", read)
}

// A signalFar is a far store whose watch says when the two-level store
// over it has handled a change of the key "k".
type signalFar[T any] struct {
	*natsstore.Store[T]
	handled chan time.Time // buffered(1)
}

// Watch wraps fn so that, once fn has returned for a change of "k", the
// time is sent on handled.
func (f *signalFar[T]) Watch(ctx context.Context, fn func(store.Change)) (store.Watch, error) {
	return f.Store.Watch(ctx, func(c store.Change) {
		fn(c)
		if c.Key == "k" {
			select {
			case f.handled <- time.Now():
			default: // one not waited for: the benchmark waits for each
			}
		}
	})
}

// wait returns the time at which the next change of "k" was handled.
func (f *signalFar[T]) wait(b *testing.B) time.Time {
	b.Helper()
	select {
	case at := <-f.handled:
		return at
	case <-time.After(10 * time.Second):
		b.Fatal("no change of k handled within 10s")
		return time.Time{}
	}
}
