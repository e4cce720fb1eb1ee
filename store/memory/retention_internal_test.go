package memory

import (
	"context"
	"testing"
	"testing/synctest"
	"time"

	"github.com/herdcache/herd/internal/clock"
	"github.com/herdcache/herd/store"
)

// A deleted key keeps its version for the whole retention, counted on the
// store's clock, though otter's may lag.
func TestTombstoneRetentionCountsFromTheDeletion(t *testing.T) {
	for name, o := range map[string]Option{"coarse": CoarseClock(DefaultResolution), "exact": ExactClock()} {
		t.Run(name, func(t *testing.T) { testTombstoneRetention(t, o) })
	}
}

func testTombstoneRetention(t *testing.T, clockOption Option) {
	synctest.Test(t, func(t *testing.T) {
		s := New[int](VersionRetention(time.Minute), clockOption)
		defer func() { _ = s.Close(context.Background()) }()
		ctx := context.Background()
		if err := s.Set(ctx, "k", store.Entry[int]{Value: 1}); err != nil {
			t.Fatal(err)
		}
		time.Sleep(clock.LagStep / 2) // otter's reading falls behind
		if err := s.Delete(ctx, "k"); err != nil {
			t.Fatal(err)
		}
		_, v, _, _ := s.GetVersion(ctx, "k")
		time.Sleep(time.Minute - time.Nanosecond)
		_, _, _ = s.Get(ctx, "other") // brings otter's reading up to date
		if _, got, _, _ := s.GetVersion(ctx, "k"); got != v || v == 0 {
			t.Fatalf("version %d just before the retention ends, want %d", got, v)
		}
	})
}
