// Package clock is the clock of herd's in-process stores: the time in Unix
// nanoseconds, read on every hit, at the cost of one atomic load while the
// store is busy.
//
// Reading the system clock costs a vDSO call, which on many virtual
// machines (the kvm-clock and xen sources) is a third of a cache hit. A
// coarse [Clock] reads it instead from a goroutine, once per resolution,
// and hands the reading on through one word. The goroutine runs only while
// the clock is read: after [idleTicks] ticks without a read it parks, and
// the next read, which then reads the system clock itself, wakes it. An
// idle store therefore costs no CPU, and in a testing/synctest bubble a
// sleep is not cut into a tick per resolution.
//
// A coarse reading is never ahead of the system clock, and lags it by at
// most the resolution (and 3ns: the word's two low bits carry flags) while
// the goroutine runs on time; a starved process may let it lag more, as it
// delays everything else. Deadlines judged on it pass up to that much
// late, never early.
package clock

import (
	"sync"
	"sync/atomic"
	"time"
)

// idleTicks is how many ticks without a read park the goroutine.
const idleTicks = 8

// LagStep is how far the lagging reading ([Clock.NowNano]) of a clock that
// reads the system clock on every read (resolution 0) may fall behind
// while the clock is read.
const LagStep = time.Millisecond

// The word holds a reading with its two low bits cleared (4ns less), and
// two flags in them.
const (
	ticking = 1 << 0 // the goroutine runs: the reading is at most one tick old
	used    = 1 << 1 // read since the last tick
	flags   = ticking | used
)

// A Clock reads the time in Unix nanoseconds. It is the otter.Clock of the
// store's otter cache too: [Clock.NowNano] and [Clock.Tick].
type Clock struct {
	_    [64]byte // the word is read on every hit: keep it on its own line
	word atomic.Int64
	_    [56]byte

	res       time.Duration // 0: the system clock on every read
	start     time.Time     // the monotonic base of readings
	startNano int64
	closed    atomic.Bool

	mu      sync.Mutex
	running bool          // the goroutine exists
	wake    chan struct{} // a read restarted the ticks (buffered, 1)
	stop    chan struct{} // closed by Close
	clean   *time.Timer   // otter's clean-up ticks, once it asked for them
}

// New returns a clock of resolution res; 0 reads the system clock on every
// read.
func New(res time.Duration) *Clock {
	now := time.Now()
	c := &Clock{
		res: res, start: now, startNano: now.UnixNano(),
		wake: make(chan struct{}, 1), stop: make(chan struct{}),
	}
	c.word.Store(c.startNano &^ flags)
	return c
}

// system reads the system clock: one monotonic reading, rather than
// time.Now's wall and monotonic two.
func (c *Clock) system() int64 { return c.startNano + int64(time.Since(c.start)) }

// Exact reads the system clock, whatever the resolution: for the start of
// a span that must not end early, such as a version's retention.
func (c *Clock) Exact() int64 { return c.system() }

// Now returns the time in Unix nanoseconds: the last tick's reading while
// the ticks run, the system clock's otherwise (which restarts the ticks).
func (c *Clock) Now() int64 {
	w := c.word.Load()
	if w&ticking == 0 {
		return c.slow()
	}
	if w&used == 0 {
		c.word.Or(used)
	}
	return w &^ flags
}

// slow reads the system clock, hands the reading on, and starts the ticks
// of a coarse clock.
func (c *Clock) slow() int64 {
	n := c.system()
	w := c.word.Load()
	if w&ticking != 0 {
		return n // another read started the ticks meanwhile
	}
	if c.res == 0 || c.closed.Load() {
		if n-w >= int64(LagStep) {
			c.word.CompareAndSwap(w, n&^flags)
		}
		return n
	}
	if c.word.CompareAndSwap(w, n&^flags|ticking|used) {
		c.resume()
	}
	return n
}

// resume wakes the goroutine, or starts it on the first read.
func (c *Clock) resume() {
	c.mu.Lock()
	defer c.mu.Unlock()
	switch {
	case c.closed.Load():
		c.word.And(^int64(ticking))
	case !c.running:
		c.running = true
		go c.run()
	default:
		select {
		case c.wake <- struct{}{}:
		default: // already woken
		}
	}
}

// run ticks while the clock is read, and parks when it is not. While it
// ticks, the word changes only by its ticks, by reads marking it used, and
// by Close clearing ticking.
func (c *Clock) run() {
	t := time.NewTicker(c.res)
	defer t.Stop()
	for {
		for idle := 0; idle < idleTicks; {
			select {
			case <-t.C:
			case <-c.stop:
				return
			}
			n := c.system() &^ flags
			for w := c.word.Load(); ; w = c.word.Load() {
				if w&ticking == 0 {
					return // closed
				}
				if w&used != 0 {
					idle = 0
				} else {
					idle++
				}
				next := n | ticking
				if idle >= idleTicks {
					next = n // park: the next read reads the system clock
				}
				if c.word.CompareAndSwap(w, next) {
					break
				}
				idle = 0 // a read marked the word meanwhile
			}
		}
		t.Stop()
		select {
		case <-c.wake:
		case <-c.stop:
			return
		}
		t.Reset(c.res)
	}
}

// Ticking reports whether the goroutine is ticking (not parked, not
// closed), for tests and diagnostics.
func (c *Clock) Ticking() bool { return c.word.Load()&ticking != 0 }

// NowNano is a reading that never reads the system clock, for otter's
// bookkeeping: the last one handed on, which lags by at most the
// resolution (or [LagStep]) while the clock is read, and is brought up to
// date by each of otter's clean-up ticks while it is not.
func (c *Clock) NowNano() int64 { return c.word.Load() &^ flags }

// Tick returns the ticks of otter's periodic clean-up, each of which first
// brings the lagging reading up to date. Nil after Close, or on a second
// call: no ticks.
func (c *Clock) Tick(d time.Duration) <-chan time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed.Load() || c.clean != nil {
		return nil
	}
	ticks := make(chan time.Time, 1)
	c.clean = time.AfterFunc(d, func() {
		n := c.system()
		if w := c.word.Load(); w&ticking == 0 {
			c.word.CompareAndSwap(w, n&^flags)
		}
		select {
		case ticks <- time.Unix(0, n):
		default: // the clean-up is still busy with the previous tick
		}
		c.mu.Lock()
		defer c.mu.Unlock()
		if !c.closed.Load() {
			c.clean.Reset(d)
		}
	})
	return ticks
}

// Close stops the ticks, for good: afterwards every read reads the system
// clock. The goroutine returns on its own soon after.
func (c *Clock) Close() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed.Swap(true) {
		return
	}
	close(c.stop)
	if c.clean != nil {
		c.clean.Stop()
	}
	c.word.And(^int64(ticking))
}

// Passive is c as the otter.Clock of a cache whose entries' snapshot times
// are the hit path's reading (store/tiered's near tier). Its NowNano is the
// coarse reading while the clock ticks and the system clock's otherwise,
// and it neither wakes the clock nor keeps it awake: otter also reads it for
// its clean-up, once a second, which must not keep an idle clock ticking.
// The hit path calls [Clock.Now] for that.
func (c *Clock) Passive() Passive { return Passive{c} }

// Passive is a [Clock] read without waking it; see [Clock.Passive].
type Passive struct{ c *Clock }

// NowNano is the coarse reading while the clock ticks, the system clock's
// otherwise.
func (p Passive) NowNano() int64 {
	if w := p.c.word.Load(); w&ticking != 0 {
		return w &^ flags
	}
	return p.c.system()
}

// Tick is [Clock.Tick].
func (p Passive) Tick(d time.Duration) <-chan time.Time { return p.c.Tick(d) }
