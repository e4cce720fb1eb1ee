package keymap

import (
	"runtime"
	"strconv"
	"testing"
)

func heapAfterGC() uint64 {
	var ms runtime.MemStats
	runtime.GC()
	runtime.GC()
	runtime.ReadMemStats(&ms)
	return ms.HeapAlloc
}

// After a burst of keys drains to a few, the map holds about what a map of
// those few would; once empty, nothing.
func TestMapGivesBackABurst(t *testing.T) {
	const burst = 100_000
	var m Map[string, int]
	keys := make([]string, burst)
	for i := range keys {
		keys[i] = strconv.Itoa(i)
		m.Put(keys[i], i)
	}
	for _, k := range keys[1:] {
		m.Delete(k)
	}
	if m.Len() != 1 {
		t.Fatalf("Len = %d, want 1", m.Len())
	}
	if v, ok := m.Get(keys[0]); !ok || v != 0 {
		t.Fatalf("Get of the key left = %d, %v", v, ok)
	}
	one := heapAfterGC()
	m.Delete(keys[0])
	if m.m != nil {
		t.Fatal("the map of a burst is kept once empty")
	}
	// A map of 100,000 keys holds megabytes; one rebuilt for the key left
	// holds a few hundred bytes.
	excess := int64(one) - int64(heapAfterGC())
	runtime.KeepAlive(keys) // measured with the keys alive both times
	if excess > 64<<10 {
		t.Fatalf("drained to one key, the map held %d KiB more than none", excess>>10)
	}
}

// A map that never passed ShrinkAfter keys keeps its buckets: it is the
// steady state, worth reusing.
func TestSmallMapIsKept(t *testing.T) {
	var m Map[int, int]
	for i := range ShrinkAfter {
		m.Put(i, i)
	}
	for i := range ShrinkAfter {
		m.Delete(i)
	}
	if m.m == nil || m.Len() != 0 {
		t.Fatalf("a map of %d keys was dropped when it emptied", ShrinkAfter)
	}
}

func TestStripedSpreadsKeys(t *testing.T) {
	var s Striped[int]
	used := map[*Stripe[int]]bool{}
	for i := range 1000 {
		st := s.Stripe(strconv.Itoa(i))
		st.Mu.Lock()
		st.Put(strconv.Itoa(i), i)
		st.Mu.Unlock()
		used[st] = true
	}
	if len(used) < 32 {
		t.Fatalf("1000 keys fell in %d of 64 stripes", len(used))
	}
	n := 0
	s.Each(func(st *Stripe[int]) { n += st.Len() })
	if n != 1000 {
		t.Fatalf("Each saw %d keys, want 1000", n)
	}
}
