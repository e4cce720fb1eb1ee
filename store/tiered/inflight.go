package tiered

import (
	"github.com/herdcache/herd/internal/keymap"
	"github.com/herdcache/herd/store"
)

// inflight tracks, per key, the far-tier operations of this instance that
// have begun and not yet finished, so that their near-tier step can tell
// whether the key was invalidated since they began: every invalidation of a
// key (a change from the stream, a write through this instance, a flush)
// bumps the generation of the key's record, and an operation that began at
// another generation does not fill the near tier.
//
// A record lives only while an operation of its key is in flight, so the
// registry holds at most as many keys as there are operations in flight;
// it is striped, so that operations on different keys rarely share a
// mutex, and gives back its memory after a burst (see keymap). No mutex is
// held during a far-tier call.
type inflight struct {
	keys keymap.Striped[*record]
}

// A record is the bookkeeping of one key with operations in flight.
// Guarded by its stripe's mutex.
type record struct {
	refs        int    // operations in flight
	gen         uint64 // bumped by every invalidation of the key
	streamed    uint64 // bumped by the invalidations that are changes from the stream
	unversioned uint64 // bumped by those of them that came without a version
	last        store.Version
	reads       uint64 // bumped by every far read of the key that ends
}

// A ticket is one operation in flight: the record it registered with and
// the generation it saw when it began.
type ticket struct {
	s                     *keymap.Stripe[*record]
	r                     *record
	gen                   uint64
	streamed, unversioned uint64
	reads                 uint64
}

// A verdict is what befell a key while an operation was in flight.
type verdict struct {
	// unchanged: nothing invalidated the key since the operation began.
	unchanged bool
	// streamed is the number of changes of the key that the stream
	// delivered meanwhile, when they were its only invalidations (zero
	// otherwise); unversioned how many of them came without a version, and
	// last the version of the last one.
	streamed, unversioned uint64
	last                  store.Version
	// reads is the number of far reads of the key that ended meanwhile.
	reads uint64
}

func newInflight() *inflight { return &inflight{} }

// begin registers an operation on key.
func (f *inflight) begin(key string) ticket {
	s := f.keys.Stripe(key)
	s.Mu.Lock()
	defer s.Mu.Unlock()
	r, _ := s.Get(key)
	if r == nil {
		r = &record{}
		s.Put(key, r)
	}
	r.refs++
	return ticket{s: s, r: r, gen: r.gen, streamed: r.streamed, unversioned: r.unversioned, reads: r.reads}
}

// finish runs step under the stripe's mutex, telling it what befell the
// key since t began, then unregisters t. A step that changes the near tier
// runs under the mutex so that no invalidation can pass between its check
// and its change. If bump is set, the operation counts as an invalidation
// of the key for the others in flight; else, with a step, it counts as a
// far read of the key that ended with an answer (a failed read has none).
func (f *inflight) finish(key string, t ticket, bump bool, step func(verdict)) {
	s := t.s
	s.Mu.Lock()
	defer s.Mu.Unlock()
	v := verdict{unchanged: t.r.gen == t.gen, reads: t.r.reads - t.reads}
	if n := t.r.streamed - t.streamed; n > 0 && n == t.r.gen-t.gen {
		v.streamed, v.unversioned, v.last = n, t.r.unversioned-t.unversioned, t.r.last
	}
	switch {
	case bump:
		t.r.gen++
	case step != nil: // a read that found something, or found nothing: not one that failed
		t.r.reads++
	}
	t.r.refs--
	if cur, _ := s.Get(key); t.r.refs == 0 && cur == t.r {
		s.Delete(key)
	}
	if step != nil {
		step(v)
	}
}

// changed handles a change of key, at version v (zero if unknown), that
// the stream delivered: under the stripe's mutex, it runs drop, which
// returns whether the near copy stays (the change is the echo of the write
// of this instance that made it, or older), and unless it does, bumps the
// generation of key's operations in flight.
func (f *inflight) changed(key string, v store.Version, drop func() (kept bool)) {
	s := f.keys.Stripe(key)
	s.Mu.Lock()
	defer s.Mu.Unlock()
	if drop() {
		return
	}
	if r, _ := s.Get(key); r != nil {
		r.gen++
		r.streamed++
		if v == 0 {
			r.unversioned++
		}
		r.last = v
	}
}

// invalidate runs drop under the stripe's mutex of key and bumps the
// generation of key's operations in flight, if any.
func (f *inflight) invalidate(key string, drop func()) {
	s := f.keys.Stripe(key)
	s.Mu.Lock()
	defer s.Mu.Unlock()
	drop()
	if r, _ := s.Get(key); r != nil {
		r.gen++
	}
}

// invalidateAll bumps the generation of every operation in flight. A caller
// that then empties the near tier knows that whatever was filled before is
// gone and whatever is filled after began after the flush, or is discarded.
func (f *inflight) invalidateAll() {
	f.keys.Each(func(s *keymap.Stripe[*record]) {
		s.All(func(_ string, r *record) bool {
			r.gen++
			return true
		})
	})
}

// len returns the number of keys with operations in flight.
func (f *inflight) len() int {
	n := 0
	f.keys.Each(func(s *keymap.Stripe[*record]) { n += s.Len() })
	return n
}
