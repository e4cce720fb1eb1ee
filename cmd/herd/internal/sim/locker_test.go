package sim

import (
	"context"
	"testing"
	"testing/synctest"
	"time"

	"github.com/herdcache/herd/store"
	"github.com/herdcache/herd/store/memory"
	"github.com/herdcache/herd/store/storetest"
)

// lockingStore is a memory store with the locker beside it, as a backend
// that stores and locks.
type lockingStore struct {
	*memory.Store[storetest.Value]
	*locker
}

// The locker holds to the lock part of the stores' conformance suite (whose
// subtests cannot run in a synctest bubble; its lease tests wait about
// 100ms of real time).
func TestLockerConformance(t *testing.T) {
	mem := memory.New[storetest.Value]()
	defer mem.Close(context.Background())
	lk := newLocker()
	storetest.Run(t, func(*testing.T) store.Store[storetest.Value] {
		return lockingStore{mem, lk}
	})
}

func TestLockerSweepsExpiredLeases(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		lk := newLocker()
		ctx := context.Background()
		for i := range 5000 {
			if _, err := lk.TryLock(ctx, "k"+string(rune('a'+i%26))+string(rune(i)), time.Millisecond); err != nil {
				t.Fatal(err)
			}
			if i%100 == 99 {
				time.Sleep(time.Millisecond)
			}
		}
		if n := len(lk.leases); n > 2048 {
			t.Fatalf("%d leases held after 5000 of 1ms each, want expired ones swept", n)
		}
	})
}
