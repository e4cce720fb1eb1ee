package memory

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"sync/atomic"

	"github.com/herdcache/herd/internal/changefeed"
	"github.com/herdcache/herd/internal/check"
	"github.com/herdcache/herd/store"
)

// ErrClosed is returned by [Store.Watch] after [Store.Close].
var ErrClosed = errors.New("memory: store closed")

// Watch calls fn with every change of the store's keys from now on, under
// the rules of [store.ChangeStream]: each Set, Delete, SetIf and DeleteIf,
// with the version it gave the key, and each entry that the store drops on
// its own (eviction, or the end of a deleted key's retention), with version
// zero. The stream is never cut: it reports All only when fn falls more
// than 16,384 changes behind, panics or calls runtime.Goexit (logged
// through [slog.Default]). fn may call the store. The context is not used.
// After [Store.Close], Watch returns [ErrClosed].
func (s *Store[T]) Watch(_ context.Context, fn func(store.Change)) (store.Watch, error) {
	check.That(fn != nil, "memory", "Watch needs a function, got nil")
	return s.watches.add(fn)
}

// watchers are the running watches of a store.
type watchers struct {
	n      atomic.Int32 // len(set), read without the lock by publish
	mu     sync.Mutex
	set    map[*watch]struct{}
	closed bool
}

// A watch is a running [Store.Watch]: a feed that the store's writes push
// to.
type watch struct {
	ws   *watchers
	feed *changefeed.Feed
}

func (ws *watchers) add(fn func(store.Change)) (*watch, error) {
	ws.mu.Lock()
	defer ws.mu.Unlock()
	if ws.closed {
		return nil, ErrClosed
	}
	if ws.set == nil {
		ws.set = make(map[*watch]struct{})
	}
	w := &watch{ws: ws, feed: changefeed.New(fn, slog.Default(), "memory")}
	ws.set[w] = struct{}{}
	ws.n.Store(int32(len(ws.set)))
	return w, nil
}

// publish queues c for every watch. It costs one atomic load when there is
// no watch.
func (ws *watchers) publish(c store.Change) {
	if ws.n.Load() == 0 {
		return
	}
	ws.mu.Lock()
	defer ws.mu.Unlock()
	for w := range ws.set {
		w.feed.Push(c)
	}
}

// close closes every watch, within ctx, and keeps new ones from starting.
func (ws *watchers) close() []*watch {
	ws.mu.Lock()
	defer ws.mu.Unlock()
	ws.closed = true
	all := make([]*watch, 0, len(ws.set))
	for w := range ws.set {
		all = append(all, w)
	}
	clear(ws.set)
	ws.n.Store(0)
	return all
}

// Close stops the watch and waits for its function to return if it is
// running (see [store.Watch]). It must not be called from the function.
func (w *watch) Close() error {
	w.feed.Close()
	ws := w.ws
	ws.mu.Lock()
	delete(ws.set, w)
	ws.n.Store(int32(len(ws.set)))
	ws.mu.Unlock()
	return nil
}
