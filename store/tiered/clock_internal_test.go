package tiered

import (
	"context"
	"testing"
	"testing/synctest"
	"time"

	"github.com/herdcache/herd/store"
	"github.com/herdcache/herd/store/memory"
)

// An idle near tier's clock parks, though otter's clean-up reads it every
// second; a near hit wakes it.
func TestIdleNearClockParks(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		far := memory.New[int]()
		defer func() { _ = far.Close(context.Background()) }()
		s, err := New[int](far, NearTTL(time.Hour))
		if err != nil {
			t.Fatal(err)
		}
		defer func() { _ = s.Close(context.Background()) }()
		ctx := context.Background()
		if err := s.Set(ctx, "k", store.Entry[int]{Value: 1}); err != nil {
			t.Fatal(err)
		}
		synctest.Wait() // the change stream has dropped the near copy of the write
		if _, ok, err := s.Get(ctx, "k"); !ok || err != nil {
			t.Fatalf("Get = %v, %v", ok, err)
		}
		time.Sleep(time.Minute) // idle: the clock parks
		synctest.Wait()
		if _, _, ok := s.peekNear("k"); !ok || !s.clock.Ticking() {
			t.Fatalf("near hit %v, clock ticking %v; want a hit that wakes the clock", ok, s.clock.Ticking())
		}
		for range 30 {
			time.Sleep(time.Second) // otter's clean-up runs
			synctest.Wait()
			if s.clock.Ticking() {
				t.Fatal("an idle near tier's clock ticks")
			}
		}
	})
}
