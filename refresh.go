package herd

import (
	"context"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	"github.com/herdcache/herd/internal/keymap"
	"github.com/herdcache/herd/internal/local"
	"github.com/herdcache/herd/store"
)

// refresher runs background refreshes on a pool of at most cfg.workers
// goroutines, started when there is work and gone when there is none, fed by
// a queue of at most cfg.queueSize keys. A key is queued or running at most
// once at a time, and not while it backs off after a failure.
type refresher[T any] struct {
	c *Cache[T]

	mu      sync.Mutex
	queue   []refreshTask[T] // ring buffer of cfg.queueSize tasks, allocated on first use
	head, n int
	keys    keymap.Map[string, struct{}] // queued or running
	// peak is the most keys queued or running since the queue was made:
	// past keymap.ShrinkAfter, the queue is dropped when the pool idles.
	peak    int
	running int
	closed  bool
	workers sync.WaitGroup

	// listed tells, for the entries of an in-process store, which have
	// a refresh queued or running, so that a stale read of such an entry
	// (the usual case: a hot key is read many times while its refresh
	// runs) is answered without the lock. It is a table by the entry's
	// address, made with the queue and twice its size: an entry goes in
	// one of two slots when its refresh is queued, and leaves when the
	// refresh ends. An entry that finds both taken is not listed, and its
	// reads take the locked way, which is always right.
	listed atomic.Pointer[entryTable[T]]
}

type entryTable[T any] struct {
	slots []atomic.Pointer[local.Entry[T]]
	shift uint // 64 - log2(len(slots))
}

func newEntryTable[T any](capacity int) *entryTable[T] {
	n, shift := 2, uint(63)
	for n < 2*capacity {
		n, shift = n*2, shift-1
	}
	return &entryTable[T]{slots: make([]atomic.Pointer[local.Entry[T]], n), shift: shift}
}

// pair returns e's two slots: the first by the entry's address, hashed,
// and the next.
func (t *entryTable[T]) pair(e *local.Entry[T]) (first, second *atomic.Pointer[local.Entry[T]]) {
	i := uintptr(uint64(uintptr(unsafe.Pointer(e))>>4) * 0x9E3779B97F4A7C15 >> t.shift)
	return &t.slots[i], &t.slots[(i+1)&uintptr(len(t.slots)-1)]
}

func (t *entryTable[T]) has(e *local.Entry[T]) bool {
	a, b := t.pair(e)
	return a.Load() == e || b.Load() == e
}

// add lists e, if one of its slots is free. Under the refresher's lock.
func (t *entryTable[T]) add(e *local.Entry[T]) {
	if a, b := t.pair(e); !a.CompareAndSwap(nil, e) {
		b.CompareAndSwap(nil, e)
	}
}

// remove unlists e. Under the refresher's lock.
func (t *entryTable[T]) remove(e *local.Entry[T]) {
	if a, b := t.pair(e); !a.CompareAndSwap(e, nil) {
		b.CompareAndSwap(e, nil)
	}
}

type refreshTask[T any] struct {
	ctx   context.Context // the reader's values, without its cancellation
	key   string
	load  Loader[T]
	entry *local.Entry[T] // the stale entry of an in-process store, or nil
}

func (r *refresher[T]) init(c *Cache[T]) { r.c = c }

// listsRefreshing reports whether a refresh of the in-process entry e is queued
// or running; false may also mean that the table does not know.
func (r *refresher[T]) listsRefreshing(e *local.Entry[T]) bool {
	t := r.listed.Load()
	return t != nil && t.has(e)
}

// schedule queues a refresh of key unless one is queued or running, the key
// backs off after a failure, or the cache is closed. A full queue drops it.
// It never blocks on the refresh. e is the stale entry, if it is an
// in-process store's.
func (r *refresher[T]) schedule(ctx context.Context, key string, load Loader[T], now time.Time, e *local.Entry[T]) {
	queued, dropped := r.enqueue(ctx, key, load, now, e)
	switch {
	case queued:
		r.c.record(ctx, &r.c.stats.refreshesQueued, Event{Kind: EventRefreshQueued, Key: key})
	case dropped:
		r.c.record(ctx, &r.c.stats.refreshesDropped, Event{Kind: EventRefreshDropped, Key: key})
	}
}

// enqueue adds a task to the queue and starts a worker if one is missing.
// The checks come cheapest first: a stale key is read many times while its
// refresh is queued or running, and such a read (of an entry the in-flight
// table does not list: a remote store's, or one whose slots were taken)
// costs one lock and one lookup, no allocation. Every path out unlocks, so
// that nothing that panics here can leave the mutex held.
func (r *refresher[T]) enqueue(ctx context.Context, key string, load Loader[T], now time.Time, e *local.Entry[T]) (queued, dropped bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if _, busy := r.keys.Get(key); busy || r.closed || r.c.backoff.active(key, now) {
		return false, false
	}
	cfg := &r.c.cfg
	if r.n == cfg.queueSize {
		return false, true
	}
	if r.queue == nil {
		r.queue, r.head = make([]refreshTask[T], cfg.queueSize), 0
		r.listed.Store(newEntryTable[T](cfg.queueSize + cfg.workers))
	}
	r.queue[(r.head+r.n)%len(r.queue)] = refreshTask[T]{ctx: context.WithoutCancel(ctx), key: key, load: load, entry: e}
	r.n++
	r.keys.Put(key, struct{}{})
	if e != nil {
		r.listed.Load().add(e)
	}
	r.peak = max(r.peak, r.keys.Len())
	if r.running < cfg.workers {
		r.running++
		r.workers.Add(1)
		go r.work()
	}
	return true, false
}

// work runs queued refreshes until the queue is empty or the cache closes.
func (r *refresher[T]) work() {
	defer r.workers.Done()
	for {
		t, ok := r.next()
		if !ok {
			return
		}
		r.run(t)
		r.finished(&t)
	}
}

// next takes the next task, or reports that the worker should exit.
func (r *refresher[T]) next() (refreshTask[T], bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.n == 0 || r.closed {
		r.running--
		return refreshTask[T]{}, false
	}
	t := r.queue[r.head]
	r.queue[r.head] = refreshTask[T]{}
	r.head = (r.head + 1) % len(r.queue)
	r.n--
	return t, true
}

// finished lets key be queued again. The queue is dropped when the pool goes
// idle after a burst, and the key map gives back its memory (see keymap), so
// that memory returns to its idle size.
func (r *refresher[T]) finished(t *refreshTask[T]) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.keys.Delete(t.key)
	if t.entry != nil {
		r.listed.Load().remove(t.entry)
	}
	if r.keys.Len() == 0 && r.n == 0 && r.peak > keymap.ShrinkAfter {
		r.queue, r.peak = nil, 0
		r.listed.Store(nil) // empty: every listed entry's refresh has ended
	}
}

// run refreshes one key through the cache's flight group, so that a caller
// whose entry expired meanwhile joins the refresh instead of loading again.
// It recovers what escapes it (an observer or a log handler that panics), so
// that the worker lives on.
func (r *refresher[T]) run(t refreshTask[T]) {
	c := r.c
	defer c.recoverCallback(t.ctx, "refresh")
	// A context that can end makes the flight group run the load on a
	// goroutine of its own, never on this worker's: a loader that calls
	// runtime.Goexit then ends that goroutine, not the worker. The flight
	// group answers once the value is published, before it is in the store:
	// the worker waits for the load to end, so that the key is not queued
	// again meanwhile.
	ctx, cancel := context.WithCancel(context.WithValue(t.ctx, refreshingKey{}, true))
	defer cancel()
	ended := make(chan struct{})
	_, _, started, err := c.flight.DoWith(ctx, t.key, t.load, func(ctx context.Context, key string, load any) (store.Entry[T], error) {
		defer close(ended)
		return c.loadKey(ctx, key, load.(Loader[T]), true)
	})
	if started {
		<-ended
	}
	c.refreshEnded(t.ctx, t.key, err)
}

// close drops the queued refreshes and makes the workers exit after the
// refresh each is running.
func (r *refresher[T]) close() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.closed = true
	clear(r.queue)
	r.n = 0
}

// wait waits for the workers to exit.
func (r *refresher[T]) wait() { r.workers.Wait() }

type refreshingKey struct{}

// Refreshing reports whether ctx is the context of a loader called by a
// background refresh (rather than for a caller that waits): a [Loader]
// called by the refresh of a stale key that Get found, or a [BatchLoader]
// called by the refresh of the stale keys that GetMany found. A loader, a
// tracer or a log can then tell the two apart.
func Refreshing(ctx context.Context) bool {
	v, _ := ctx.Value(refreshingKey{}).(bool)
	return v
}
