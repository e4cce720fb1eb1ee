// Package keymap is the one per-key registry of herd: a map of the keys
// that have something in flight (a call, a load's registration, a read of
// a far tier), which holds only those keys and gives back its memory once
// a burst of them has drained, by one rule. Go maps never shrink: a map
// that held a million keys keeps their buckets after they are deleted.
//
// The rule: once a map's size has passed [ShrinkAfter], it is replaced by
// a map sized for what is left when no more than 1/[ShrinkRatio] of its
// peak is left, and dropped when it empties. Copying the keys left costs at
// most 1/(ShrinkRatio-1) of the deletes that led there, so the cost per
// key stays constant.
//
// A [Map] is one map; a [Striped] map is 64 of them, each with its own
// mutex, so that keys in flight at once rarely share one. Neither locks
// for its caller beyond what [Striped.Stripe] hands it: the caller runs
// its own bookkeeping under the stripe's mutex.
package keymap

import (
	"hash/maphash"
	"maps"
	"sync"
)

// The shrink rule (see the package documentation).
const (
	ShrinkAfter = 64
	ShrinkRatio = 8
)

// A Map is a map of keys to V that gives back its memory after a burst.
// The zero value is ready to use. It is not safe for concurrent use: its
// owner guards it.
type Map[K comparable, V any] struct {
	m      map[K]V
	peak   int  // the largest len(m) since m was made
	shrunk bool // m replaced a map past ShrinkAfter: once empty, drop it too
}

// Get returns the value of key.
func (m *Map[K, V]) Get(key K) (V, bool) {
	v, ok := m.m[key]
	return v, ok
}

// Put sets the value of key.
func (m *Map[K, V]) Put(key K, v V) {
	if m.m == nil {
		m.m = make(map[K]V)
	}
	m.m[key] = v
	m.peak = max(m.peak, len(m.m))
}

// Delete removes key, and shrinks the map by the package's rule.
func (m *Map[K, V]) Delete(key K) {
	if _, ok := m.m[key]; !ok {
		return
	}
	delete(m.m, key)
	switch {
	case len(m.m) == 0 && (m.shrunk || m.peak > ShrinkAfter):
		m.m, m.peak, m.shrunk = nil, 0, false
	case m.peak > ShrinkAfter && len(m.m) <= m.peak/ShrinkRatio:
		// Not maps.Clone, which keeps the size of the original.
		n := make(map[K]V, len(m.m))
		maps.Copy(n, m.m)
		m.m, m.peak, m.shrunk = n, len(n), true
	}
}

// Len returns the number of keys.
func (m *Map[K, V]) Len() int { return len(m.m) }

// All calls fn for each key and value, until fn returns false. fn must not
// change the map.
func (m *Map[K, V]) All(fn func(K, V) bool) {
	for k, v := range m.m {
		if !fn(k, v) {
			return
		}
	}
}

// A Striped map is 64 [Map]s of string keys, each with its own mutex. The
// zero value is ready to use.
type Striped[V any] struct {
	once    sync.Once
	seed    maphash.Seed
	stripes [64]Stripe[V]
}

// A Stripe is one map of a Striped map and its mutex.
type Stripe[V any] struct {
	Mu sync.Mutex
	Map[string, V]
}

// Stripe returns the stripe of key. Hold its Mu to use its map.
func (s *Striped[V]) Stripe(key string) *Stripe[V] {
	s.once.Do(func() { s.seed = maphash.MakeSeed() })
	return &s.stripes[maphash.String(s.seed, key)%uint64(len(s.stripes))]
}

// Each calls fn for each stripe, under its mutex.
func (s *Striped[V]) Each(fn func(*Stripe[V])) {
	for i := range s.stripes {
		st := &s.stripes[i]
		st.Mu.Lock()
		fn(st)
		st.Mu.Unlock()
	}
}
