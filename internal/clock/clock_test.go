package clock

import (
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

const res = time.Millisecond

// While the clock is read, a reading is never ahead of the system clock
// and lags it by at most the resolution.
func TestCoarseReadingLagsByAtMostTheResolution(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c := New(res)
		defer c.Close()
		for i := range 1000 {
			time.Sleep(time.Duration(i%7) * 100 * time.Microsecond)
			got, want := c.Now(), time.Now().UnixNano()
			if lag := time.Duration(want - got); lag < 0 || lag > res {
				t.Fatalf("read %d: the reading lags by %v", i, lag)
			}
		}
		if c.word.Load()&ticking == 0 {
			t.Fatal("the clock read the system clock all along")
		}
	})
}

// An idle clock parks its goroutine: a sleep is not cut into ticks, and the
// next read is the system clock's, exact.
func TestIdleClockParksAndReadsExactly(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c := New(res)
		defer c.Close()
		c.Now()
		time.Sleep((idleTicks + 1) * res)
		synctest.Wait()
		if c.word.Load()&ticking != 0 {
			t.Fatalf("still ticking after %d idle ticks", idleTicks+1)
		}
		for range 3 {
			time.Sleep(time.Hour + 123*time.Nanosecond)
			if got, want := c.Now(), time.Now().UnixNano(); got != want {
				t.Fatalf("after an idle hour, read %d, want %d", got, want)
			}
			if c.word.Load()&ticking == 0 {
				t.Fatal("a read did not restart the ticks")
			}
			time.Sleep(res / 2)
			if lag := time.Duration(time.Now().UnixNano() - c.Now()); lag < res/2 || lag > res/2+flags {
				t.Fatalf("half a tick after the read that woke it, the reading lags by %v, want %v", lag, res/2)
			}
		}
	})
}

// Each tick with a read keeps the clock ticking.
func TestReadEveryFewTicksKeepsTicking(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c := New(res)
		defer c.Close()
		for range 100 {
			c.Now()
			time.Sleep((idleTicks - 2) * res)
			synctest.Wait()
			if c.word.Load()&ticking == 0 {
				t.Fatal("parked though read within every idleTicks ticks")
			}
		}
	})
}

// After Close no goroutine is left (synctest.Test fails otherwise), and
// every read is the system clock's.
func TestClosedClockReadsTheSystemClock(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c := New(res)
		c.Now()
		c.Close()
		c.Close()
		for range 10 {
			time.Sleep(res / 3)
			if got, want := c.Now(), time.Now().UnixNano(); got != want {
				t.Fatalf("after Close, read %d, want %d", got, want)
			}
		}
		if c.Tick(time.Second) != nil {
			t.Fatal("ticks after Close")
		}
	})
}

// A clock that was never read starts no goroutine.
func TestUnreadClockStartsNothing(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c := New(res)
		time.Sleep(time.Second)
		if c.running {
			t.Fatal("a goroutine started without a read")
		}
		c.Close()
	})
}

// Resolution 0 reads the system clock every time; the lagging reading
// stays within LagStep while it is read.
func TestExactClockReadsTheSystemClock(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c := New(0)
		defer c.Close()
		for range 100 {
			time.Sleep(300 * time.Microsecond)
			now := c.Now()
			if now != time.Now().UnixNano() {
				t.Fatalf("read %d, the clock says %d", now, time.Now().UnixNano())
			}
			if lag := now - c.NowNano(); lag < 0 || lag >= int64(LagStep) {
				t.Fatalf("the lagging reading lags by %v", time.Duration(lag))
			}
		}
		if c.running {
			t.Fatal("an exact clock started a goroutine")
		}
	})
}

// Otter's clean-up ticks bring the lagging reading up to date, and stop at
// Close.
func TestCleanUpTicks(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c := New(res)
		ticks := c.Tick(time.Second)
		if c.Tick(time.Second) != nil {
			t.Fatal("a second Tick got ticks of its own")
		}
		time.Sleep(10 * time.Second) // idle: no read
		synctest.Wait()              // the tick due at this instant has run
		<-ticks
		if lag := time.Now().UnixNano() - c.NowNano(); lag < 0 || lag > int64(flags) {
			t.Fatalf("after a tick, the lagging reading lags by %v", time.Duration(lag))
		}
		c.Close()
		time.Sleep(10 * time.Second)
		select {
		case <-ticks: // at most one left from before Close
		default:
		}
		select {
		case <-ticks:
			t.Fatal("ticks after Close")
		default:
		}
	})
}

// Many readers while the clock parks and wakes, on the real clock: no
// reading is ahead of the system clock.
func TestConcurrentReadsAcrossParkAndWake(t *testing.T) {
	c := New(100 * time.Microsecond)
	defer c.Close()
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Go(func() {
			for i := range 20_000 {
				got := c.Now()
				if sys := c.system(); got > sys {
					t.Errorf("reader %d: reading %d ahead of the system clock %d", g, got, sys)
					return
				}
				if i%1000 == g {
					time.Sleep(2 * time.Millisecond) // long enough to park
				}
			}
		})
	}
	wg.Wait()
}

// The passive reading is exact while the clock is parked and coarse while
// it ticks, and it neither starts, wakes nor keeps awake the goroutine.
func TestPassiveReadingNeverWakesTheClock(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c := New(res)
		defer c.Close()
		p := c.Passive()
		time.Sleep(time.Second + 7)
		if got, want := p.NowNano(), time.Now().UnixNano(); got != want || c.running {
			t.Fatalf("on an unread clock, read %d (want %d), goroutine started %v", got, want, c.running)
		}
		c.Now()
		time.Sleep(res / 2)
		if lag := time.Now().UnixNano() - p.NowNano(); lag < int64(res/2) || lag > int64(res/2)+flags {
			t.Fatalf("while ticking, the passive reading lags by %v, want the tick's", time.Duration(lag))
		}
		for range 100 * idleTicks {
			p.NowNano()
			time.Sleep(res / 3)
		}
		if c.Ticking() {
			t.Fatal("passive reads kept the clock ticking")
		}
	})
}
