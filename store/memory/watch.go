package memory

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"sync/atomic"

	"github.com/herdcache/herd/store"
)

// ErrClosed is returned by [Store.Watch] after [Store.Close].
var ErrClosed = errors.New("memory: store closed")

// maxPending bounds the changes a watch holds for its callback; past it, the
// watch drops them and reports one Change with All set instead.
const maxPending = 4096

// Watch calls fn with every change of the store's keys from now on: each
// Set, Delete, SetIf and DeleteIf, and each entry that the store drops on its
// own (expiry, eviction). fn runs on a goroutine of the watch, one call at a
// time, never under a lock of the store, so it may call the store. When fn
// falls more than 4,096 changes behind, they are replaced by one Change with
// All set; a panic in fn is recovered, logged, and followed by such a
// change. The context is not used. See [store.ChangeStream].
func (s *Store[T]) Watch(_ context.Context, fn func(store.Change)) (store.Watch, error) {
	return s.watches.add(fn)
}

// watchers are the running watches of a store.
type watchers struct {
	n      atomic.Int32 // len(set), read without the lock by publish
	mu     sync.Mutex
	set    map[*watch]struct{}
	closed bool
}

type watch struct {
	ws *watchers
	fn func(store.Change)

	mu       sync.Mutex
	pending  []store.Change
	overflow bool

	wake    chan struct{} // buffered(1): pending has changes
	stop    chan struct{} // closed by Close
	stopped chan struct{} // closed when the goroutine returns
	once    sync.Once
}

func (ws *watchers) add(fn func(store.Change)) (*watch, error) {
	w := &watch{ws: ws, fn: fn, wake: make(chan struct{}, 1), stop: make(chan struct{}), stopped: make(chan struct{})}
	ws.mu.Lock()
	defer ws.mu.Unlock()
	if ws.closed {
		return nil, ErrClosed
	}
	if ws.set == nil {
		ws.set = make(map[*watch]struct{})
	}
	ws.set[w] = struct{}{}
	ws.n.Store(int32(len(ws.set)))
	go w.run()
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
		w.push(c)
	}
}

// close closes every watch and keeps new ones from starting.
func (ws *watchers) close(ctx context.Context) error {
	ws.mu.Lock()
	ws.closed = true
	all := make([]*watch, 0, len(ws.set))
	for w := range ws.set {
		all = append(all, w)
	}
	ws.mu.Unlock()
	for _, w := range all {
		w.once.Do(func() { close(w.stop) })
	}
	for _, w := range all {
		select {
		case <-w.stopped:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	ws.mu.Lock()
	clear(ws.set)
	ws.n.Store(0)
	ws.mu.Unlock()
	return nil
}

func (w *watch) push(c store.Change) {
	w.mu.Lock()
	if len(w.pending) >= maxPending {
		w.pending, w.overflow = w.pending[:0], true
	} else if !w.overflow {
		w.pending = append(w.pending, c)
	}
	w.mu.Unlock()
	select {
	case w.wake <- struct{}{}:
	default:
	}
}

func (w *watch) run() {
	defer close(w.stopped)
	for {
		select {
		case <-w.stop:
			return
		case <-w.wake:
		}
		w.mu.Lock()
		batch := w.pending
		if w.overflow {
			batch = []store.Change{{All: true}}
		}
		w.pending, w.overflow = nil, false
		w.mu.Unlock()
		for _, c := range batch {
			select {
			case <-w.stop:
				return
			default:
			}
			if !w.deliver(c) {
				w.deliver(store.Change{All: true})
			}
		}
	}
}

// deliver calls fn with c and reports whether it returned normally.
func (w *watch) deliver(c store.Change) (ok bool) {
	defer func() {
		if r := recover(); r != nil {
			slog.Default().Error("memory: watch callback panicked; reporting every key as changed", slog.Any("err", r))
		}
	}()
	w.fn(c)
	return true
}

// Close stops the watch and waits for its callback to return if it is
// running. It must not be called from the callback itself.
func (w *watch) Close() error {
	w.once.Do(func() { close(w.stop) })
	<-w.stopped
	ws := w.ws
	ws.mu.Lock()
	delete(ws.set, w)
	ws.n.Store(int32(len(ws.set)))
	ws.mu.Unlock()
	return nil
}
