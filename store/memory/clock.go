package memory

import (
	"sync"
	"sync/atomic"
	"time"
)

// The store reads the time once per read, for the entry's deadlines. Otter
// reads it too, on every call, for its own expiry of entries past KeepUntil
// plus the version retention: that reading only decides when memory is
// reclaimed, and it may lag. So the store gives otter a lagClock, whose
// reading is a load of the last time the store read, and a hit costs one
// clock read instead of two.

// lagStep is how far otter's reading may fall behind while the store is
// read or written; while it is idle, the clean-up ticks (every second)
// advance it.
const lagStep = time.Millisecond

// A lagClock is the system clock read from a monotonic reading (one vDSO
// call rather than time.Now's two), and the otter.Clock that hands on the
// store's last reading. A synctest bubble's clock governs it as it governs
// time.Now.
type lagClock struct {
	start     time.Time
	startNano int64
	last      atomic.Int64 // the latest reading handed on; never ahead of the clock

	mu      sync.Mutex
	timer   *time.Timer // the clean-up ticks, once otter asked for them
	stopped bool
}

func newLagClock() *lagClock {
	now := time.Now()
	c := &lagClock{start: now, startNano: now.UnixNano()}
	c.last.Store(c.startNano)
	return c
}

// read returns the time in Unix nanoseconds and hands it on to otter once it
// is lagStep ahead of what otter has.
func (c *lagClock) read() int64 {
	n := c.startNano + int64(time.Since(c.start))
	if n-c.last.Load() >= int64(lagStep) {
		c.last.Store(n)
	}
	return n
}

// NowNano is otter's reading: the store's last, at most lagStep old while
// the store is in use.
func (c *lagClock) NowNano() int64 { return c.last.Load() }

// Tick returns the ticks of otter's periodic clean-up, each of which first
// brings otter's reading up to date. Nil after stop: no ticks.
func (c *lagClock) Tick(d time.Duration) <-chan time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.stopped || c.timer != nil {
		return nil
	}
	ticks := make(chan time.Time, 1)
	c.timer = time.AfterFunc(d, func() {
		c.last.Store(c.startNano + int64(time.Since(c.start)))
		select {
		case ticks <- time.Unix(0, c.last.Load()):
		default: // the clean-up is still busy with the previous tick
		}
		c.mu.Lock()
		defer c.mu.Unlock()
		if !c.stopped {
			c.timer.Reset(d)
		}
	})
	return ticks
}

// stop ends the ticks.
func (c *lagClock) stop() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.stopped = true
	if c.timer != nil {
		c.timer.Stop()
	}
}
