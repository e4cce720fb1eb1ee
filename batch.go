package herd

import (
	"context"
	"slices"
	"sync"
	"time"

	"github.com/herdcache/herd/flight"
	"github.com/herdcache/herd/internal/catch"
	"github.com/herdcache/herd/internal/check"
	"github.com/herdcache/herd/internal/wait"
)

// Batch returns a [Loader] that gathers the keys of concurrent calls into
// calls of load: the dataloader pattern. Give it to [Cache.Get] from
// independent callers (the resolvers of a GraphQL query, the fan-out of a
// request), and the source sees one call for the keys that missed within a
// short window instead of one call per key:
//
//	loadUser := herd.Batch(loadUsers, herd.MaxBatch(100), herd.MaxWait(2*time.Millisecond))
//	u, err := users.Get(ctx, "user:42", loadUser) // from many goroutines at once
//
// The first key of a batch opens it; keys that arrive within [MaxWait] join
// it (a key already in it is asked once). The batch goes to load when it
// holds [MaxBatch] keys, at once, or when MaxWait has passed since it
// opened: a lone key waits at most MaxWait. At most [MaxConcurrentBatches]
// calls of load run at once; a batch ready while they all run waits for one
// to end.
//
// Each caller waits on its own context and returns ctx.Err() when it ends;
// the batch goes on for the others. load runs on a goroutine of its own, on
// the context of the caller that opened the batch without its cancellation,
// cancelled once every caller of the batch has left: in a [Cache], the
// callers are loads, whose contexts end at [LoadTimeout], so the batch is
// bounded by it. A key load leaves out of its map gets [ErrNotFound]; an
// error of load reaches every caller of the batch, and a panic in load does
// as a [*flight.PanicError]. [SetTTL] and [SetKeyTTL] on load's context set
// the lifetimes of the entries of the callers' keys.
//
// Batch starts no goroutine of its own while it is idle: a batch that fills
// up is run on a new goroutine, one that waits for MaxWait on a timer's, and
// either ends when load returns (and, for a batch waiting for a slot, when
// its callers have all left). The returned Loader is safe for concurrent
// use. Batch panics if an option is invalid.
func Batch[T any](load BatchLoader[T], opts ...BatchOption) Loader[T] {
	check.That(load != nil, "herd", "Batch needs a batch loader, got nil")
	b := &batcher[T]{load: load, cfg: newBatchConfig(opts)}
	b.slots = make(chan struct{}, b.cfg.concurrency)
	return b.get
}

// A batcher gathers keys into windows.
type batcher[T any] struct {
	load  BatchLoader[T]
	cfg   batchConfig
	slots chan struct{} // one per batch loader call running

	mu   sync.Mutex
	open *window[T] // the batch taking keys, or nil
}

// A window is one batch: its keys, then its result.
type window[T any] struct {
	ctx   context.Context // the context of the caller that opened it
	timer *time.Timer

	// Guarded by batcher.mu.
	keys    []string
	has     map[string]struct{}
	callers int
	closed  bool               // no longer open: full, timed out or abandoned
	cancel  context.CancelFunc // cancels the batch's context; set before the batch starts

	done chan struct{} // closed when the fields below are set
	vals map[string]T
	ttl  *batchTTL
	err  error
}

// get is the Loader: it adds key to the open window and waits for its
// result on ctx.
func (b *batcher[T]) get(ctx context.Context, key string) (T, error) {
	check.Context(ctx, "herd")
	var zero T
	if err := ctx.Err(); err != nil {
		return zero, err
	}
	b.mu.Lock()
	w := b.open
	if w == nil {
		w = &window[T]{has: make(map[string]struct{}), done: make(chan struct{})}
		w.ctx, w.cancel = context.WithCancel(context.WithoutCancel(ctx))
		b.open = w
		w.timer = time.AfterFunc(b.cfg.maxWait, func() { b.timeout(w) })
	}
	if _, dup := w.has[key]; !dup {
		w.has[key] = struct{}{}
		w.keys = append(w.keys, key)
	}
	w.callers++
	full := len(w.keys) >= b.cfg.maxBatch
	if full {
		b.closeLocked(w)
	}
	b.mu.Unlock()
	if full {
		go b.run(w)
	}

	if !wait.For(ctx, w.done) {
		b.leave(w)
		return zero, ctx.Err()
	}
	if w.err != nil {
		return zero, w.err
	}
	v, ok := w.vals[key]
	if !ok {
		return zero, ErrNotFound
	}
	if t := w.ttl.of(key); t.set {
		SetTTL(ctx, t.ttl)
	}
	return v, nil
}

// closeLocked stops w from taking keys.
func (b *batcher[T]) closeLocked(w *window[T]) {
	w.closed = true
	if b.open == w {
		b.open = nil
	}
	w.timer.Stop()
}

// timeout runs w when MaxWait has passed, unless it filled up first.
func (b *batcher[T]) timeout(w *window[T]) {
	b.mu.Lock()
	if w.closed {
		b.mu.Unlock()
		return
	}
	b.closeLocked(w)
	b.mu.Unlock()
	b.run(w)
}

// leave is a caller of w leaving on its own context. The last one to leave
// cancels the batch: nobody waits for its result. A window still open is
// closed then, so that a later key opens a new one.
func (b *batcher[T]) leave(w *window[T]) {
	b.mu.Lock()
	defer b.mu.Unlock()
	w.callers--
	if w.callers > 0 {
		return
	}
	w.cancel()
	if !w.closed {
		b.closeLocked(w)
		w.finish(nil, nil, context.Canceled)
	}
}

// finish sets w's result and wakes its callers.
func (w *window[T]) finish(vals map[string]T, ttl *batchTTL, err error) {
	if ttl == nil {
		ttl = &batchTTL{}
	}
	w.vals, w.ttl, w.err = vals, ttl, err
	close(w.done)
}

// run calls load for w's keys, within a slot, and hands out the result.
// The result is handed out by a deferred call, so that the callers get
// ErrGoexit if load calls runtime.Goexit, which ends this goroutine.
func (b *batcher[T]) run(w *window[T]) {
	var (
		vals map[string]T
		ttl  *batchTTL
		err  = flight.ErrGoexit
	)
	defer func() {
		w.cancel()
		w.finish(vals, ttl, err)
	}()
	select {
	case b.slots <- struct{}{}:
	case <-w.ctx.Done():
		err = w.ctx.Err()
		return
	}
	defer func() { <-b.slots }()
	ttl = &batchTTL{}
	ctx := context.WithValue(context.WithValue(w.ctx, entryTTLKey{}, &ttl.all), batchTTLKey{}, ttl)
	vals, err = callBatch(ctx, slices.Clone(w.keys), b.load)
}

// callBatch calls load, turning a panic into a *flight.PanicError. A
// runtime.Goexit cannot be stopped: it goes on up the goroutine.
func callBatch[T any](ctx context.Context, keys []string, load BatchLoader[T]) (vals map[string]T, err error) {
	if p := catch.Call(func() { vals, err = load(ctx, keys) }, nil); p != nil {
		return nil, panicErrors{}.Panic(p)
	}
	return vals, err
}
