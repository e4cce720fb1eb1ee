package natsstore_test

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/herdcache/herd/natsstore"
	"github.com/herdcache/herd/store"
)

// 10,000 keys locked, half released and half left to expire, leave nothing
// in the bucket once the markers' TTL has passed: lock bookkeeping is
// bounded by the activity of the last marker TTL, not by every key ever
// locked.
func TestLockResidueBounded(t *testing.T) {
	srv := startServer(t)
	_, js := connect(t, srv.url())
	s := newStore[string](t, js, "residue", natsstore.MarkerTTL(time.Second))
	ctx := context.Background()
	const keys = 10000
	var next atomic.Int64
	var wg sync.WaitGroup
	for range 32 {
		wg.Go(func() {
			for {
				i := next.Add(1) - 1
				if i >= keys {
					return
				}
				l, err := s.TryLock(ctx, fmt.Sprintf("key-%d", i), time.Second)
				if err != nil {
					t.Error(err)
					return
				}
				if i%2 == 0 {
					if err := l.Unlock(ctx); err != nil {
						t.Error(err)
						return
					}
				}
			}
		})
	}
	wg.Wait()
	if t.Failed() {
		t.FailNow()
	}
	stream, err := js.Stream(ctx, "KV_residue")
	if err != nil {
		t.Fatal(err)
	}
	info, err := stream.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("after locking %d keys: %d messages, %d subjects", keys, info.State.Msgs, info.State.NumSubjects)
	waitFor(t, 60*time.Second, "every lock key and marker gone", func() bool {
		info, err = stream.Info(ctx)
		return err == nil && info.State.Msgs == 0 && info.State.NumSubjects == 0
	})
}

// A lock's fencing token grows with every acquisition of the key: after a
// release, and after an expiry.
func TestFencingTokensGrow(t *testing.T) {
	srv := startServer(t)
	_, js := connect(t, srv.url())
	s := newStore[string](t, js, "fence", natsstore.MarkerTTL(time.Second))
	ctx := context.Background()
	first, err := s.TryLock(ctx, "k", time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if err := first.Unlock(ctx); err != nil {
		t.Fatal(err)
	}
	second, err := s.TryLock(ctx, "k", time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if second.Token() <= first.Token() {
		t.Fatalf("token after a release: %d, not above %d", second.Token(), first.Token())
	}
	var third store.Lock // second is left to expire
	waitFor(t, 20*time.Second, "lease expires", func() bool {
		third, err = s.TryLock(ctx, "k", time.Second)
		return err == nil
	})
	if third.Token() <= second.Token() {
		t.Fatalf("token after an expiry: %d, not above %d", third.Token(), second.Token())
	}
	if err := third.Unlock(ctx); err != nil {
		t.Fatal(err)
	}
}
