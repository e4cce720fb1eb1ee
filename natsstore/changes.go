package natsstore

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/herdcache/herd/flight"
	"github.com/herdcache/herd/internal/catch"
	"github.com/herdcache/herd/store"
)

// Tunables of a watch.
const (
	// hashedKeysKept bounds the hashed keys a watch remembers, to report the
	// expiry of a hashed key (whose marker does not name it) by its key.
	hashedKeysKept = 1024
	// watchBuffer bounds the changes received and not yet given to fn; a
	// watch that falls further behind reports All and starts again.
	watchBuffer = 4096
	// watchHeartbeat is how often the server tells an idle consumer it is
	// alive; two missed heartbeats count as a lost consumer.
	watchHeartbeat = 2 * time.Second
	// watchStartTimeout bounds the creation of a consumer after a loss.
	watchStartTimeout = 5 * time.Second
)

// Watch calls fn with every change of the bucket's data keys from the
// moment it returns: a value written, a key deleted or purged, an entry
// expired by the server, by herd or by any other client of the bucket. fn
// runs on one goroutine, one call at a time, in the stream's order. When the
// watch may have missed a change (the connection dropped or came back, the
// consumer was lost, a delivery was skipped, or fn fell more than a few
// thousand changes behind) it calls fn with Change{All: true} at once,
// starts a new consumer from the stream's end, and calls fn with
// Change{All: true} again once that consumer runs, before any further key.
// A panic in fn is recovered, logged (key "err") and reported as
// Change{All: true}; the watch goes on.
//
// Watch returns an error wrapping [ErrUnavailable] while the connection is
// down, the error of the consumer's creation if that fails within ctx, and
// [ErrClosed] after Close. ctx bounds only the start; the watch runs until
// its Close or the store's Close.
func (s *Store[T]) Watch(ctx context.Context, fn func(store.Change)) (store.Watch, error) {
	if fn == nil {
		panic("natsstore: Watch must be given a function, got nil")
	}
	bctx, done, err := s.begin(ctx, "watch", "")
	if err != nil {
		return nil, err
	}
	defer done()
	w := &watch{
		js: s.js, stream: "KV_" + s.bucket, subject: s.prefix + "d.>", prefix: s.prefix + "d.",
		conn: s.conn, fn: fn, logger: s.logger, logCtx: context.WithoutCancel(ctx),
		items: make(chan change, watchBuffer), lost: make(chan uint64, 1),
		stop: make(chan struct{}), done: make(chan struct{}),
		hashed: make(map[string]string),
	}
	w.stopCtx, w.cancelStop = context.WithCancel(context.Background())
	s.mu.Lock()
	if s.closed.Load() {
		s.mu.Unlock()
		w.cancelStop()
		return nil, fmt.Errorf("natsstore: watch: %w", ErrClosed)
	}
	s.watches[w] = struct{}{}
	s.mu.Unlock()
	w.forget = func() {
		s.mu.Lock()
		delete(s.watches, w)
		s.mu.Unlock()
	}
	up, _ := s.conn.state()
	if err := w.start(bctx); err != nil {
		close(w.done) // a Close of the store that already holds w returns at once
		w.cancelStop()
		w.forget()
		return nil, fmt.Errorf("natsstore: watch: %w", failed(bctx, err))
	}
	go w.run(up)
	return w, nil
}

// A change is a message of the bucket's data keys as the consumer's
// handler saw it, for the watch's goroutine to report.
type change struct {
	epoch uint64
	token string // the subject after "$KV.<bucket>.d."
	named string // the Herd-Key header: the escaped key of a hashed token
}

type watch struct {
	js      jetstream.JetStream
	stream  string
	subject string // the filter, "$KV.<bucket>.d.>"
	prefix  string // "$KV.<bucket>.d."
	conn    *connState
	fn      func(store.Change)
	logger  *slog.Logger
	logCtx  context.Context
	forget  func()

	items chan change
	lost  chan uint64 // the epoch of a consumer that lost changes
	stop  chan struct{}
	done  chan struct{}
	once  sync.Once
	// stopCtx ends when the watch is closed, to end a consumer's creation.
	stopCtx    context.Context
	cancelStop context.CancelFunc

	// epoch numbers the consumers; a consumer's handler drops what arrives
	// once a newer one is started.
	epoch atomic.Uint64
	cc    jetstream.ConsumeContext // owned by the watch's goroutine after Watch

	// hashed maps the hashed tokens last seen written to their keys, at most
	// hashedKeysKept of them, oldest first in order. Owned by the goroutine.
	hashed map[string]string
	order  []string
}

// start creates a consumer of the data keys from the stream's end and
// starts consuming it, as a new epoch.
func (w *watch) start(ctx context.Context) error {
	cons, err := w.js.CreateConsumer(ctx, w.stream, jetstream.ConsumerConfig{
		DeliverPolicy:     jetstream.DeliverNewPolicy,
		AckPolicy:         jetstream.AckNonePolicy,
		FilterSubject:     w.subject,
		HeadersOnly:       true,
		MemoryStorage:     true,
		Replicas:          1,
		InactiveThreshold: 30 * time.Second, // the server removes it once we are gone
	})
	if err != nil {
		return err
	}
	epoch := w.epoch.Add(1)
	var delivered uint64 // owned by the handler, which runs on one goroutine
	handler := func(m jetstream.Msg) {
		if w.epoch.Load() != epoch {
			return
		}
		meta, merr := m.Metadata()
		if merr != nil || meta.Sequence.Consumer != delivered+1 {
			w.signal(epoch)
			return
		}
		delivered = meta.Sequence.Consumer
		c := change{epoch: epoch, token: strings.TrimPrefix(m.Subject(), w.prefix), named: m.Headers().Get(keyHeader)}
		select {
		case w.items <- c:
		default:
			w.signal(epoch) // fn is too far behind
		}
	}
	cc, err := cons.Consume(handler,
		jetstream.PullHeartbeat(watchHeartbeat),
		jetstream.ConsumeErrHandler(func(jetstream.ConsumeContext, error) { w.signal(epoch) }))
	if err != nil {
		return err
	}
	w.cc = cc
	return nil
}

// signal tells the watch's goroutine that the consumer of epoch may have
// lost changes.
func (w *watch) signal(epoch uint64) {
	select {
	case w.lost <- epoch:
	default:
	}
}

// stopConsumer stops the current consumer and waits for its delivery to end
// (for at most a second: a connection that is gone may not confirm it).
func (w *watch) stopConsumer() {
	w.epoch.Add(1)
	if w.cc == nil {
		return
	}
	w.cc.Stop()
	t := time.NewTimer(time.Second)
	defer t.Stop()
	select {
	case <-w.cc.Closed():
	case <-t.C:
	}
	w.cc = nil
}

func (w *watch) run(up context.Context) {
	defer close(w.done)
	defer w.stopConsumer()
	for {
		select {
		case <-w.stop:
			return
		case <-up.Done():
			w.logger.DebugContext(w.logCtx, "natsstore: watch lost its connection")
			if up = w.restart(); up == nil {
				return
			}
		case e := <-w.lost:
			if e != w.epoch.Load() {
				continue
			}
			w.logger.WarnContext(w.logCtx, "natsstore: watch may have lost changes; starting again", "bucket", w.stream)
			if up = w.restart(); up == nil {
				return
			}
		case c := <-w.items:
			if c.epoch == w.epoch.Load() {
				w.report(c)
			}
		}
	}
}

// restart reports All, starts a new consumer once the connection is up
// (retrying with backoff), and reports All again. It returns the context of
// the connection the new consumer runs on, or nil if the watch was closed.
func (w *watch) restart() context.Context {
	w.stopConsumer()
	w.call(store.Change{All: true})
	backoff := 50 * time.Millisecond
	for {
		up, changed := w.conn.state()
		if up.Err() != nil {
			select {
			case <-w.stop:
				return nil
			case <-changed:
				continue
			}
		}
		ctx, cancel := context.WithTimeout(up, watchStartTimeout)
		stop := context.AfterFunc(w.stopCtx, cancel)
		err := w.start(ctx)
		stop()
		cancel()
		if err == nil {
			w.call(store.Change{All: true})
			return up
		}
		w.logger.WarnContext(w.logCtx, "natsstore: watch could not start its consumer", "bucket", w.stream, "err", err)
		t := time.NewTimer(backoff)
		select {
		case <-w.stop:
			t.Stop()
			return nil
		case <-t.C:
		}
		backoff = min(2*backoff, 2*time.Second)
	}
}

// report gives fn the key of c, or All when the key cannot be told.
func (w *watch) report(c change) {
	switch {
	case strings.HasPrefix(c.token, "k"):
		key, err := decodeKey(c.token)
		if err != nil {
			return // not a key this package wrote
		}
		w.call(store.Change{Key: key})
	case strings.HasPrefix(c.token, "h"):
		if c.named != "" {
			key, err := unescape(c.named)
			if err != nil {
				return
			}
			w.remember(c.token, key)
			w.call(store.Change{Key: key})
			return
		}
		if key, ok := w.hashed[c.token]; ok {
			w.call(store.Change{Key: key})
			return
		}
		// An expiry, or a write by another client, of a hashed key this
		// watch has not seen written: it cannot say which key changed.
		w.call(store.Change{All: true})
	}
}

// remember records the key of a hashed token, forgetting the oldest one
// past hashedKeysKept.
func (w *watch) remember(token, key string) {
	if _, ok := w.hashed[token]; ok {
		return
	}
	if len(w.order) == hashedKeysKept {
		delete(w.hashed, w.order[0])
		w.order = w.order[1:]
	}
	w.hashed[token] = key
	w.order = append(w.order, token)
}

// call runs fn with c, recovering a panic: it is logged and, unless c
// was All already, reported as All.
func (w *watch) call(c store.Change) {
	if !w.safeCall(c) && !c.All {
		w.safeCall(store.Change{All: true})
	}
}

func (w *watch) safeCall(c store.Change) (ok bool) {
	if p := catch.Call(func() { w.fn(c) }, nil); p != nil {
		w.logger.ErrorContext(w.logCtx, "natsstore: watch function panicked", "err", &flight.PanicError{Value: p.Value, Stack: p.Stack})
		return false
	}
	return true
}

// Close stops the deliveries and waits for fn to return if it is running.
// It is idempotent.
func (w *watch) Close() error {
	w.once.Do(func() {
		close(w.stop)
		w.cancelStop()
		<-w.done
		w.forget()
	})
	return nil
}
