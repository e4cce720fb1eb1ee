package natsstore_test

import (
	"context"
	"strconv"
	"testing"
	"time"

	"github.com/herdcache/herd"
	"github.com/herdcache/herd/store"
)

// A hit through herd.Cache over natsstore against a raw KeyValue.Get of the
// same bytes, in one run on one server.
func BenchmarkGetHit(b *testing.B) {
	srv := startServer(b)
	_, js := connect(b, srv.url())
	ctx := context.Background()
	s := newStore[string](b, js, "bench")
	c := herd.New[string](s, herd.TTL(time.Hour))
	defer c.Close(ctx)
	if err := s.Set(ctx, "user:42", store.Entry[string]{Value: "Ada", ExpiresAt: time.Now().Add(time.Hour)}); err != nil {
		b.Fatal(err)
	}
	load := func(context.Context, string) (string, error) {
		b.Fatal("loader called on a hit")
		return "", nil
	}
	b.Run("impl=herd", func(b *testing.B) {
		for b.Loop() {
			if v, err := c.Get(ctx, "user:42", load); err != nil || v != "Ada" {
				b.Fatal(v, err)
			}
		}
	})
	b.Run("impl=kv", func(b *testing.B) {
		for b.Loop() {
			if _, err := s.KeyValue().Get(ctx, "d.kuser=3A42"); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// A conditional write (SetIf, the cache's write-back) against a plain Set
// and a raw KeyValue.Put of the same bytes, each of a fresh key, one after
// the other in every iteration, so that the load of the machine weighs on
// all three alike. It reports each one's time per write and the ratio of
// SetIf to Set.
func BenchmarkSetIf(b *testing.B) {
	srv := startServer(b)
	_, js := connect(b, srv.url())
	ctx := context.Background()
	s := newStore[string](b, js, "benchwrite")
	e := store.Entry[string]{Value: "Ada", ExpiresAt: time.Now().Add(time.Hour)}
	data, err := store.Encode[string](store.JSON[string]{}, e)
	if err != nil {
		b.Fatal(err)
	}
	var set, setIf, put time.Duration
	n := 0
	for b.Loop() {
		n++
		k := strconv.Itoa(n)
		t0 := time.Now()
		if err := s.Set(ctx, "set"+k, e); err != nil {
			b.Fatal(err)
		}
		t1 := time.Now()
		if err := s.SetIf(ctx, "setif"+k, e, 0); err != nil {
			b.Fatal(err)
		}
		t2 := time.Now()
		if _, err := s.KeyValue().Put(ctx, "d.kput"+k, data); err != nil {
			b.Fatal(err)
		}
		t3 := time.Now()
		set += t1.Sub(t0)
		setIf += t2.Sub(t1)
		put += t3.Sub(t2)
	}
	b.ReportMetric(float64(set.Nanoseconds())/float64(n), "set-ns/op")
	b.ReportMetric(float64(setIf.Nanoseconds())/float64(n), "setif-ns/op")
	b.ReportMetric(float64(put.Nanoseconds())/float64(n), "kvput-ns/op")
	b.ReportMetric(float64(setIf)/float64(set), "setif/set")
	b.ReportMetric(float64(setIf)/float64(put), "setif/kvput")
}

// BenchmarkBulk100 times each bulk step of a batch of 100 keys against the
// same step made of 100 single calls, one after the other, on one embedded
// server: reads of entries and versions, conditional write-backs, and the
// locks of the batch taken and released.
func BenchmarkBulk100(b *testing.B) {
	srv := startServer(b)
	_, js := connect(b, srv.url())
	ctx := context.Background()
	s := newStore[string](b, js, "benchbulk")
	keys := make([]string, 100)
	for i := range keys {
		keys[i] = "user:" + strconv.Itoa(i)
	}
	e := store.Entry[string]{Value: "Ada", KeepUntil: time.Now().Add(time.Hour)}
	writes := func() []store.ConditionalWrite[string] {
		ws := make([]store.ConditionalWrite[string], len(keys))
		for i, r := range s.GetVersions(ctx, keys) {
			ws[i] = store.ConditionalWrite[string]{Key: keys[i], Version: r.Version, Entry: e}
		}
		return ws
	}
	must := func(errs []error) {
		for _, err := range errs {
			if err != nil {
				b.Fatal(err)
			}
		}
	}
	must(s.WriteIf(ctx, writes()))
	b.Run("GetVersions/bulk", func(b *testing.B) {
		for b.Loop() {
			for _, r := range s.GetVersions(ctx, keys) {
				if r.Err != nil {
					b.Fatal(r.Err)
				}
			}
		}
	})
	b.Run("GetVersions/single", func(b *testing.B) {
		for b.Loop() {
			for _, k := range keys {
				if _, _, _, err := s.GetVersion(ctx, k); err != nil {
					b.Fatal(err)
				}
			}
		}
	})
	b.Run("WriteIf/bulk", func(b *testing.B) {
		for b.Loop() {
			b.StopTimer()
			ws := writes()
			b.StartTimer()
			must(s.WriteIf(ctx, ws))
		}
	})
	b.Run("WriteIf/single", func(b *testing.B) {
		for b.Loop() {
			b.StopTimer()
			ws := writes()
			b.StartTimer()
			for _, w := range ws {
				if err := s.SetIf(ctx, w.Key, w.Entry, w.Version); err != nil {
					b.Fatal(err)
				}
			}
		}
	})
	b.Run("Locks/bulk", func(b *testing.B) {
		for b.Loop() {
			locks := make([]store.Lock, 0, len(keys))
			for _, r := range s.TryLockMany(ctx, keys, time.Minute) {
				if r.Err != nil {
					b.Fatal(r.Err)
				}
				locks = append(locks, r.Lock)
			}
			must(s.UnlockMany(ctx, locks))
		}
	})
	b.Run("Locks/single", func(b *testing.B) {
		for b.Loop() {
			for _, k := range keys {
				l, err := s.TryLock(ctx, k, time.Minute)
				if err != nil {
					b.Fatal(err)
				}
				if err := l.Unlock(ctx); err != nil {
					b.Fatal(err)
				}
			}
		}
	})
}
