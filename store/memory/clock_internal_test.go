package memory

import (
	"context"
	"testing"
	"testing/synctest"
	"time"

	"github.com/herdcache/herd/store"
)

// Otter's reading lags the store's by less than lagStep while the store is
// read, and the clean-up ticks bring it up to date while it is idle.
func TestLagClockHandsOnItsReadings(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c := newLagClock()
		defer c.stop()
		for range 100 {
			time.Sleep(300 * time.Microsecond)
			now := c.read()
			if now != time.Now().UnixNano() {
				t.Fatalf("read %d, the clock says %d", now, time.Now().UnixNano())
			}
			if lag := now - c.NowNano(); lag < 0 || lag >= int64(lagStep) {
				t.Fatalf("otter's reading lags by %v", time.Duration(lag))
			}
		}
		ticks := c.Tick(time.Second)
		if c.Tick(time.Second) != nil {
			t.Fatal("a second Tick got ticks of its own")
		}
		time.Sleep(10 * time.Second) // idle: no read
		synctest.Wait()              // the tick due at this instant has run
		<-ticks
		if lag := time.Now().UnixNano() - c.NowNano(); lag != 0 {
			t.Fatalf("after a tick, otter's reading lags by %v", time.Duration(lag))
		}
		c.stop()
		time.Sleep(10 * time.Second)
		select {
		case <-ticks: // at most one left from before stop
		default:
		}
		select {
		case <-ticks:
			t.Fatal("ticks after stop")
		default:
		}
	})
}

// A deleted key keeps its version for the whole retention, counted on the
// store's clock, though otter's may lag.
func TestTombstoneRetentionCountsFromTheDeletion(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := New[int](VersionRetention(time.Minute))
		defer func() { _ = s.Close(context.Background()) }()
		ctx := context.Background()
		if err := s.Set(ctx, "k", store.Entry[int]{Value: 1}); err != nil {
			t.Fatal(err)
		}
		time.Sleep(lagStep / 2) // otter's reading falls behind
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
