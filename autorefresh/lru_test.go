package autorefresh

import (
	"slices"
	"testing"
)

// order lists the ids of l from most to least recently used, checking the
// back links on the way.
func order(t *testing.T, l *lru[string, int]) []string {
	t.Helper()
	var ids []string
	var prev *entry[string, int]
	for e := l.head; e != nil; e = e.next {
		if e.prev != prev {
			t.Fatalf("entry %q links back to the wrong entry", e.id)
		}
		ids = append(ids, e.id)
		prev = e
	}
	if l.tail != prev {
		t.Fatal("tail is not the last entry")
	}
	return ids
}

func TestLRU(t *testing.T) {
	var l lru[string, int]
	if l.oldest() != nil {
		t.Fatal("an empty list has an oldest entry")
	}
	e := map[string]*entry[string, int]{}
	for _, id := range []string{"a", "b", "c"} {
		e[id] = &entry[string, int]{id: id}
		l.push(e[id])
	}
	for _, step := range []struct {
		do   func()
		want []string
	}{
		{func() {}, []string{"c", "b", "a"}},
		{func() { l.touch(e["a"]) }, []string{"a", "c", "b"}},
		{func() { l.touch(e["a"]) }, []string{"a", "c", "b"}},
		{func() { l.remove(e["c"]) }, []string{"a", "b"}},
		{func() { l.remove(l.oldest()) }, []string{"a"}},
		{func() { l.remove(e["a"]) }, nil},
	} {
		step.do()
		if got := order(t, &l); !slices.Equal(got, step.want) {
			t.Fatalf("order = %v, want %v", got, step.want)
		}
	}
}
