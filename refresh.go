package herd

import (
	"context"
	"errors"
	"log/slog"
	"math/rand/v2"
	"sync"
	"time"

	"github.com/herdcache/herd/store"
)

// maxBackoffKeys bounds the keys whose failures the cache remembers. When it
// is reached, an arbitrary key is forgotten: that key may then be retried
// sooner than its backoff said, which costs a load, never a wrong value.
const maxBackoffKeys = 10_000

// refresher runs background refreshes on a pool of at most cfg.workers
// goroutines, started when there is work and gone when there is none, fed by
// a queue of at most cfg.queueSize keys. A key is queued or running at most
// once at a time. It also remembers, per key, the failures of recent loads,
// and says when the key may be tried again.
type refresher[T any] struct {
	c *Cache[T]

	mu      sync.Mutex
	queue   []refreshTask[T] // ring buffer of cfg.queueSize tasks, allocated on first use
	head, n int
	keys    map[string]struct{} // queued or running
	running int
	closed  bool
	backoff map[string]backoff
	workers sync.WaitGroup
}

type refreshTask[T any] struct {
	ctx  context.Context // the reader's values, without its cancellation
	key  string
	load Loader[T]
}

type backoff struct {
	failures int
	next     time.Time
}

func (r *refresher[T]) init(c *Cache[T]) {
	r.c = c
	r.keys = make(map[string]struct{})
	r.backoff = make(map[string]backoff)
}

// schedule queues a refresh of key unless one is queued or running, the key
// backs off after a failure, or the cache is closed. A full queue drops it.
// It never blocks on the refresh.
func (r *refresher[T]) schedule(ctx context.Context, key string, load Loader[T], now time.Time) {
	r.mu.Lock()
	if _, busy := r.keys[key]; busy || r.closed {
		r.mu.Unlock()
		return
	}
	if b, ok := r.backoff[key]; ok && now.Before(b.next) {
		r.mu.Unlock()
		return
	}
	if r.n == r.c.cfg.queueSize {
		r.mu.Unlock()
		r.c.event(&r.c.stats.refreshesDropped, EventRefreshDropped, key)
		return
	}
	if r.queue == nil {
		r.queue = make([]refreshTask[T], r.c.cfg.queueSize)
	}
	r.queue[(r.head+r.n)%len(r.queue)] = refreshTask[T]{ctx: context.WithoutCancel(ctx), key: key, load: load}
	r.n++
	r.keys[key] = struct{}{}
	if r.running < r.c.cfg.workers {
		r.running++
		r.workers.Add(1)
		go r.work()
	}
	r.mu.Unlock()
	r.c.event(&r.c.stats.refreshesQueued, EventRefreshQueued, key)
}

// work runs queued refreshes until the queue is empty or the cache closes.
func (r *refresher[T]) work() {
	defer r.workers.Done()
	for {
		r.mu.Lock()
		if r.n == 0 || r.closed {
			r.running--
			r.mu.Unlock()
			return
		}
		t := r.queue[r.head]
		r.queue[r.head] = refreshTask[T]{}
		r.head = (r.head + 1) % len(r.queue)
		r.n--
		r.mu.Unlock()

		r.run(t)

		r.mu.Lock()
		delete(r.keys, t.key)
		r.mu.Unlock()
	}
}

// run refreshes one key through the cache's flight group, so that a caller
// whose entry expired meanwhile joins the refresh instead of loading again.
func (r *refresher[T]) run(t refreshTask[T]) {
	c := r.c
	_, err := c.flight.Do(t.ctx, t.key, func(ctx context.Context) (store.Entry[T], error) {
		return c.load(ctx, t.key, t.load, true)
	})
	if err == nil || errors.Is(err, ErrNotFound) || errors.Is(err, errLockedElsewhere) || errors.Is(err, ErrClosed) {
		return
	}
	c.observe(&c.stats.refreshesFailed, Event{Kind: EventRefreshFailed, Key: t.key, Err: err})
	c.refreshErrLog.Log(context.Background(), c.cfg.logger, slog.LevelWarn, "herd: background refresh failed; serving the old value",
		slog.String("key", t.key), slog.Any("error", err))
}

// failed records a failed load of key at now and sets when it may be tried
// again: exponential backoff with jitter.
func (r *refresher[T]) failed(key string, now time.Time) {
	cfg := &r.c.cfg
	r.mu.Lock()
	defer r.mu.Unlock()
	b, ok := r.backoff[key]
	if !ok && len(r.backoff) >= maxBackoffKeys {
		for k := range r.backoff {
			delete(r.backoff, k)
			break
		}
	}
	b.failures++
	d := cfg.backoffMin
	for i := 1; i < b.failures && d < cfg.backoffMax; i++ {
		d *= 2
	}
	d = min(d, cfg.backoffMax)
	d = d/2 + rand.N(d/2+1) // equal jitter: between half and all of d
	b.next = now.Add(d)
	r.backoff[key] = b
}

// succeeded forgets the failures of key.
func (r *refresher[T]) succeeded(key string) {
	r.mu.Lock()
	if len(r.backoff) > 0 {
		delete(r.backoff, key)
	}
	r.mu.Unlock()
}

// backingOff reports whether key failed recently and should not be loaded
// again before its backoff ends.
func (r *refresher[T]) backingOff(key string, now time.Time) bool {
	r.mu.Lock()
	b, ok := r.backoff[key]
	r.mu.Unlock()
	return ok && now.Before(b.next)
}

// close drops the queued refreshes and makes the workers exit after the
// refresh each is running.
func (r *refresher[T]) close() {
	r.mu.Lock()
	r.closed = true
	for i := range r.queue {
		r.queue[i] = refreshTask[T]{}
	}
	r.n = 0
	r.mu.Unlock()
}

// wait waits for the workers to exit.
func (r *refresher[T]) wait() { r.workers.Wait() }
