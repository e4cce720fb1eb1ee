package autorefresh

// lru is an intrusive doubly linked list of the entries of a set, from most
// recently used (head) to least (tail), through their prev and next fields.
// Every operation is O(1). It is not safe for concurrent use: the cache's
// mutex guards it.
type lru[K comparable, V any] struct {
	head, tail *entry[K, V]
}

func (l *lru[K, V]) push(e *entry[K, V]) {
	e.prev, e.next = nil, l.head
	if l.head != nil {
		l.head.prev = e
	} else {
		l.tail = e
	}
	l.head = e
}

func (l *lru[K, V]) remove(e *entry[K, V]) {
	if e.prev != nil {
		e.prev.next = e.next
	} else {
		l.head = e.next
	}
	if e.next != nil {
		e.next.prev = e.prev
	} else {
		l.tail = e.prev
	}
	e.prev, e.next = nil, nil
}

func (l *lru[K, V]) touch(e *entry[K, V]) {
	if l.head != e {
		l.remove(e)
		l.push(e)
	}
}

func (l *lru[K, V]) oldest() *entry[K, V] { return l.tail }
