package sim

import (
	"context"
	"sync"
	"time"
)

// A plainCache is the TTL cache people write by hand: a map behind a mutex.
// A value is served until its TTL passes; then every request for the key
// calls the source until one of them stores a new value. There is no
// coalescing, no background refresh, and an error is passed on.
type plainCache struct {
	ttl time.Duration

	mu sync.Mutex
	m  map[string]plainEntry
}

type plainEntry struct {
	value   string
	expires time.Time
}

func newPlainCache(ttl time.Duration) *plainCache {
	return &plainCache{ttl: ttl, m: make(map[string]plainEntry)}
}

// get returns the value of key and whether it came from the map.
func (p *plainCache) get(ctx context.Context, key string, load func(context.Context, string) (string, error)) (string, bool, error) {
	p.mu.Lock()
	e, ok := p.m[key]
	p.mu.Unlock()
	if ok && time.Now().Before(e.expires) {
		return e.value, true, nil
	}
	v, err := load(ctx, key)
	if err != nil {
		return "", false, err
	}
	p.mu.Lock()
	p.m[key] = plainEntry{value: v, expires: time.Now().Add(p.ttl)}
	p.mu.Unlock()
	return v, false, nil
}
