package herd

import (
	"context"
	"hash/maphash"
	"sync"
)

// writeGuard makes a Set or Delete win over a load of the same key that was
// in flight when it landed (invariant 4 of the design). A load registers a
// pendingWrite when it starts; Set and Delete mark the key's pendingWrite as
// superseded; the load stores its result only if it was not.
//
// The map holds only keys with a load in flight, so it is bounded by them.
// It is split into stripes so that loads of different keys rarely share a
// mutex, and no mutex is held during a store call.
type writeGuard struct {
	seed    maphash.Seed
	once    sync.Once
	stripes [64]struct {
		mu sync.Mutex
		m  map[string]*pendingWrite
	}
}

type pendingWrite struct {
	// Guarded by the stripe's mutex.
	superseded bool
	// written is made when the load starts storing its result and closed
	// when it is done, so that a Set arriving then waits for that write to
	// land before its own.
	written chan struct{}
}

func (g *writeGuard) stripe(key string) *struct {
	mu sync.Mutex
	m  map[string]*pendingWrite
} {
	g.once.Do(func() { g.seed = maphash.MakeSeed() })
	return &g.stripes[maphash.String(g.seed, key)%uint64(len(g.stripes))]
}

// begin registers a load of key.
func (g *writeGuard) begin(key string) *pendingWrite {
	p := &pendingWrite{}
	s := g.stripe(key)
	s.mu.Lock()
	if s.m == nil {
		s.m = make(map[string]*pendingWrite)
	}
	s.m[key] = p
	s.mu.Unlock()
	return p
}

// end unregisters the load of key that registered p. Removing by identity
// keeps a late load from removing a later one's registration.
func (g *writeGuard) end(key string, p *pendingWrite) {
	s := g.stripe(key)
	s.mu.Lock()
	if s.m[key] == p {
		delete(s.m, key)
	}
	s.mu.Unlock()
}

// commit runs write, the store write of a load's result, unless a Set or
// Delete superseded the load.
func (g *writeGuard) commit(key string, p *pendingWrite, write func()) {
	s := g.stripe(key)
	s.mu.Lock()
	if p.superseded {
		s.mu.Unlock()
		return
	}
	p.written = make(chan struct{})
	s.mu.Unlock()
	defer close(p.written)
	write()
}

// supersede marks the load of key in flight, if any, so that its result is
// not stored, waits within ctx for a result being stored at this moment,
// then runs write.
func (g *writeGuard) supersede(ctx context.Context, key string, write func() error) error {
	s := g.stripe(key)
	s.mu.Lock()
	var written chan struct{}
	if p := s.m[key]; p != nil {
		p.superseded = true
		written = p.written
	}
	s.mu.Unlock()
	if written != nil {
		select {
		case <-written:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return write()
}
