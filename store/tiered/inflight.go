package tiered

import (
	"hash/maphash"
	"sync"
)

// inflight tracks, per key, the far-tier operations of this instance that
// have begun and not yet finished, so that their near-tier step can tell
// whether the key was invalidated since they began: every invalidation of a
// key (a change from the stream, a write through this instance, a flush)
// bumps the generation of the key's record, and an operation that began at
// another generation does not fill the near tier.
//
// A record lives only while an operation of its key is in flight, so the
// maps hold at most as many keys as there are operations in flight. They are
// split into stripes so that operations on different keys rarely share a
// mutex; no mutex is held during a far-tier call.
type inflight struct {
	seed    maphash.Seed
	stripes [64]stripe
}

type stripe struct {
	mu sync.Mutex
	m  map[string]*record
}

// A record is the bookkeeping of one key with operations in flight.
// Guarded by its stripe's mutex.
type record struct {
	refs int    // operations in flight
	gen  uint64 // bumped by every invalidation of the key
}

// A ticket is one operation in flight: the record it registered with and
// the generation it saw when it began.
type ticket struct {
	s   *stripe
	r   *record
	gen uint64
}

func newInflight() *inflight { return &inflight{seed: maphash.MakeSeed()} }

func (f *inflight) stripe(key string) *stripe {
	return &f.stripes[maphash.String(f.seed, key)%uint64(len(f.stripes))]
}

// begin registers an operation on key.
func (f *inflight) begin(key string) ticket {
	s := f.stripe(key)
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.m == nil {
		s.m = make(map[string]*record)
	}
	r := s.m[key]
	if r == nil {
		r = &record{}
		s.m[key] = r
	}
	r.refs++
	return ticket{s: s, r: r, gen: r.gen}
}

// finish runs step under the stripe's mutex, telling it whether the key was
// left alone since t began, then unregisters t. A step that changes the
// near tier runs under the mutex so that no invalidation can pass between
// its check and its change. If bump is set, the operation counts as an
// invalidation of the key for the others in flight.
func (f *inflight) finish(key string, t ticket, bump bool, step func(unchanged bool)) {
	s := t.s
	s.mu.Lock()
	defer s.mu.Unlock()
	unchanged := t.r.gen == t.gen
	if bump {
		t.r.gen++
	}
	t.r.refs--
	if t.r.refs == 0 && s.m[key] == t.r {
		delete(s.m, key)
	}
	if step != nil {
		step(unchanged)
	}
}

// invalidate bumps the generation of key's operations in flight, if any,
// and runs drop under the stripe's mutex.
func (f *inflight) invalidate(key string, drop func()) {
	s := f.stripe(key)
	s.mu.Lock()
	defer s.mu.Unlock()
	if r := s.m[key]; r != nil {
		r.gen++
	}
	drop()
}

// invalidateAll bumps the generation of every operation in flight. A caller
// that then empties the near tier knows that whatever was filled before is
// gone and whatever is filled after began after the flush, or is discarded.
func (f *inflight) invalidateAll() {
	for i := range f.stripes {
		s := &f.stripes[i]
		s.mu.Lock()
		for _, r := range s.m {
			r.gen++
		}
		s.mu.Unlock()
	}
}

// len returns the number of keys with operations in flight.
func (f *inflight) len() int {
	n := 0
	for i := range f.stripes {
		s := &f.stripes[i]
		s.mu.Lock()
		n += len(s.m)
		s.mu.Unlock()
	}
	return n
}
