// Package changefeed is the engine of herd's change streams: the bounded
// queue between a backend's reader and the watch function, the one goroutine
// that calls the function, the recovery of its panics and Goexits, the
// bookkeeping of Down, Up, Gap and All so that no loss is ever dropped, and
// a Close that waits. store/memory, redisstore and natsstore only translate
// their server's messages into [Feed.Push]; the rules are those of
// [store.ChangeStream].
package changefeed

import (
	"log/slog"
	"sync"

	"github.com/herdcache/herd/flight"
	"github.com/herdcache/herd/internal/catch"
	"github.com/herdcache/herd/store"
)

// QueueSize is how many changes a feed holds for a function that has not
// taken them yet: about 0.5 MiB of changes at most, plus their keys. A
// function further behind gets one All in place of the queued changes.
const QueueSize = 1 << 14

// A Feed delivers changes to one function, in the order they are pushed,
// from a goroutine of its own. Build it with [New]; its methods are safe for
// concurrent use.
type Feed struct {
	fn   func(store.Change)
	log  *slog.Logger
	name string // the package, which logs name first: "redisstore"
	size int

	mu       sync.Mutex
	queue    []store.Change // queue[head:] waits for fn
	head     int
	all      bool // an All is due before queue
	srcDown  bool // the source's state, as its last Down, Up or Gap said
	seenDown bool // the state fn was last told, or is being told
	wake     chan struct{}

	stop    chan struct{}
	once    sync.Once
	running sync.WaitGroup // the delivering goroutine (a new one after a Goexit)
}

// New returns a feed that calls fn with every change pushed to it, and
// starts its goroutine; [Feed.Close] stops it. A panic in fn is logged on
// log as name + ": watch function panicked", with the panic as "err" (a
// *flight.PanicError), a Goexit as name + ": watch function called
// runtime.Goexit"; either is followed by All.
func New(fn func(store.Change), log *slog.Logger, name string) *Feed {
	return newSized(fn, log, name, QueueSize)
}

func newSized(fn func(store.Change), log *slog.Logger, name string, size int) *Feed {
	f := &Feed{fn: fn, log: log, name: name, size: size, wake: make(chan struct{}, 1), stop: make(chan struct{})}
	f.running.Add(1)
	go f.run()
	return f
}

// Push queues c for the function. c is a key with its version, or one of
// Down, Up, Gap and All (see [store.Change]):
//
//   - a Down while the source is down already, and an Up while it is not,
//     say nothing new and are dropped;
//   - All replaces every change queued, as does a change that finds the
//     queue full; if the changes dropped held a Down, an Up or a Gap that
//     the function has not seen, the state they led to follows the All (a
//     Down, or an Up), so that every Down the function sees is followed by
//     an Up or a Gap.
//
// Push never blocks on the function.
func (f *Feed) Push(c store.Change) {
	f.mu.Lock()
	switch {
	case c.All:
		f.collapse()
	case c.Down && f.srcDown, c.Up && !f.srcDown:
	default:
		if len(f.queue)-f.head >= f.size {
			f.collapse()
		}
		switch {
		case c.Down:
			f.srcDown = true
		case c.Up, c.Gap:
			f.srcDown = false
		}
		f.queue = append(f.queue, c)
	}
	f.mu.Unlock()
	select {
	case f.wake <- struct{}{}:
	default:
	}
}

// collapse replaces the queue with an All, followed by the state change the
// function has not seen yet, if any. f.mu is held.
func (f *Feed) collapse() {
	clear(f.queue)
	f.queue, f.head, f.all = f.queue[:0], 0, true
	switch {
	case f.srcDown && !f.seenDown:
		f.queue = append(f.queue, store.Change{Down: true})
	case !f.srcDown && f.seenDown:
		f.queue = append(f.queue, store.Change{Up: true})
	}
}

// take returns the next change for the function. f.mu is held.
func (f *Feed) take() (store.Change, bool) {
	if f.all {
		f.all = false
		return store.Change{All: true}, true
	}
	if f.head == len(f.queue) {
		return store.Change{}, false
	}
	c := f.queue[f.head]
	f.queue[f.head] = store.Change{}
	f.head++
	if f.head == len(f.queue) {
		f.queue, f.head = f.queue[:0], 0
		if cap(f.queue) > 1024 {
			f.queue = nil // a burst is over: give its memory back
		}
	}
	switch {
	case c.Down:
		f.seenDown = true
	case c.Up, c.Gap:
		f.seenDown = false
	}
	return c, true
}

// next waits for the next change, and returns false once the feed is
// closed.
func (f *Feed) next() (store.Change, bool) {
	for {
		select {
		case <-f.stop:
			return store.Change{}, false
		default:
		}
		f.mu.Lock()
		c, ok := f.take()
		f.mu.Unlock()
		if ok {
			return c, true
		}
		select {
		case <-f.stop:
			return store.Change{}, false
		case <-f.wake:
		}
	}
}

func (f *Feed) run() {
	defer f.running.Done()
	for {
		c, ok := f.next()
		if !ok {
			return
		}
		f.call(c)
	}
}

// call calls fn with c. A panic in fn is recovered; a Goexit ends this
// goroutine, so delivery goes on from a new one. Either way the change was
// lost to the function, which then gets an All.
func (f *Feed) call(c store.Change) {
	lost := func() {
		if !c.All {
			f.mu.Lock()
			f.all = true
			f.mu.Unlock()
		}
	}
	p := catch.Call(func() { f.fn(c) }, func() {
		lost() // before the new goroutine can take the next change
		f.log.Error(f.name + ": watch function called runtime.Goexit")
		f.running.Add(1)
		go f.run()
	})
	if p != nil {
		lost()
		f.log.Error(f.name+": watch function panicked", slog.Any("err", &flight.PanicError{Value: p.Value, Stack: p.Stack}))
	}
}

// Close stops the deliveries and waits for the function to return if it is
// running; the function is not called after Close returns. Changes pushed
// after Close are dropped. Close is idempotent and safe for concurrent use;
// called from the function, it would wait for ever.
func (f *Feed) Close() {
	f.once.Do(func() { close(f.stop) })
	f.running.Wait()
}
