package herd

import (
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"
)

// maxBackoffKeys bounds the keys whose failures the cache remembers. When it
// is reached, an arbitrary key is forgotten: that key may then be retried
// sooner than its backoff said, which costs a load, never a wrong value.
const maxBackoffKeys = 10_000

// backoffs remember, per key, the failures of recent loads (foreground and
// background), and say when the key may be loaded again: exponential
// backoff with jitter, reset by a success or a Set. It is the one place
// that decides backoff; loads report to it, and serveEntry and the refresher ask
// it.
type backoffs struct {
	mu   sync.Mutex
	keys map[string]backoff
	// n is len(keys), read without the lock: while no key backs off, which
	// is most of the time, a load's success and a stale read's question
	// take no lock. A reader that sees 0 while a failure is being recorded
	// acts as if it came just before.
	n atomic.Int64
}

type backoff struct {
	failures int
	next     time.Time
}

// failed records a failed load of key at now and sets when it may be tried
// again.
func (b *backoffs) failed(key string, now time.Time, cfg *config) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.keys == nil {
		b.keys = make(map[string]backoff)
	}
	k, ok := b.keys[key]
	if !ok && len(b.keys) >= maxBackoffKeys {
		for old := range b.keys {
			delete(b.keys, old)
			break
		}
	}
	k.failures++
	k.next = now.Add(backoffDelay(k.failures, cfg.backoffMin, cfg.backoffMax))
	b.keys[key] = k
	b.n.Store(int64(len(b.keys)))
}

// backoffDelay is the wait after the given number of consecutive failures:
// minimum doubled per failure after the first, clamped to maximum without
// overflow, then jittered between half and all of it.
func backoffDelay(failures int, minimum, maximum time.Duration) time.Duration {
	d := minimum
	for i := 1; i < failures && d < maximum; i++ {
		if d > maximum/2 {
			d = maximum
			break
		}
		d *= 2
	}
	d = min(d, maximum)
	return d/2 + rand.N(d/2+1)
}

// succeeded forgets the failures of key.
func (b *backoffs) succeeded(key string) {
	if b.n.Load() == 0 {
		return
	}
	b.mu.Lock()
	if len(b.keys) > 0 {
		delete(b.keys, key)
		if len(b.keys) == 0 {
			b.keys = nil // give back the buckets of a burst of failures
		}
		b.n.Store(int64(len(b.keys)))
	}
	b.mu.Unlock()
}

// active reports whether key failed recently and should not be loaded
// again before its backoff ends.
func (b *backoffs) active(key string, now time.Time) bool {
	if b.n.Load() == 0 {
		return false
	}
	b.mu.Lock()
	k, ok := b.keys[key]
	b.mu.Unlock()
	return ok && now.Before(k.next)
}
