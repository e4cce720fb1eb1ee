package natsstore

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/herdcache/herd/internal/changefeed"
	"github.com/herdcache/herd/internal/check"
	"github.com/herdcache/herd/store"
)

// Tunables of a watch.
const (
	// hashedKeysKept bounds the hashed keys a watch remembers, to report the
	// expiry of a hashed key (whose marker does not name it) by its key.
	hashedKeysKept = 1024
	// watchHeartbeat is how often the server tells an idle consumer it is
	// alive; two missed heartbeats count as a lost consumer.
	watchHeartbeat = 2 * time.Second
	// watchStartTimeout bounds the creation of a consumer after a loss.
	watchStartTimeout = 5 * time.Second
	// watchCheck is how often a watch looks at its stream's state while it
	// replays, and on a bucket whose limits discard messages silently.
	watchCheck = time.Second
	// purgeSettle is how long after a purge request (and an answer of the
	// server to a request of the watch sent after it) the watch reports
	// All: the server applies a purge as it answers it.
	purgeSettle = 250 * time.Millisecond
	// cutSlack is how long before the watch noticed a cut the cut may have
	// begun: two missed heartbeats, and some.
	cutSlack = 2*watchHeartbeat + time.Second
)

// Watch calls fn with every change of the bucket's data keys from the
// moment it returns, under the rules of [store.ChangeStream]: a value
// written, a key deleted or purged, an entry expired by the server (or
// dropped at the bucket's max age), by herd or by any other client of the
// bucket, each with its Version: the stream sequence of its message, which
// is the key's version as GetVersion reads it.
//
//   - Down: the connection dropped, or the consumer was lost (missed
//     heartbeats, deleted, a delivery skipped).
//   - Up: the watch resumed once the connection was back, with a new
//     consumer that started right after the last message it delivered, and
//     has delivered every change made meanwhile (the bucket keeps each key's
//     last message, so the replay names exactly the keys changed since).
//   - All (then Up): it could not resume from there: the stream was
//     recreated, or its first message is past the watch's position (a
//     purge, or the bucket's limits discarded messages), or the cut lasted
//     so long that a delete's marker may have expired meanwhile (see
//     [Store.VersionRetention]).
//   - Down, then All and Up: a purge of the bucket's stream, whole or of some
//     subjects, by any client through the JetStream API, which leaves no
//     marker, seen as its request (the watch needs permission to subscribe
//     to $JS.API.STREAM.PURGE.KV_<bucket>): Down at once, All once the
//     server has answered a request sent after it, and 250ms more.
//   - All: the first message of a bucket that discards messages without a
//     marker moved, at a look every second: a bucket with a max age and no
//     marker TTL, whose first message was older than the max age; a stream
//     made to discard old messages (a KV bucket refuses new ones instead)
//     at its MaxMsgs or MaxBytes. An expiry of a hashed key that the
//     watch has not seen written. And as [store.ChangeStream] says for every
//     store (a queue of 16,384 changes overflowed, a panic in fn, logged
//     with the key "err").
//
// A purge made while the watch is disconnected, of some subjects only, is
// not seen: the server keeps no record of it.
//
// Watch returns an error wrapping [ErrUnavailable] while the connection is
// down, the error of the consumer's creation if that fails within ctx, and
// [ErrClosed] after Close. ctx bounds only the start; the watch runs until
// its Close or the store's Close.
func (s *Store[T]) Watch(ctx context.Context, fn func(store.Change)) (store.Watch, error) {
	check.That(fn != nil, "natsstore", "Watch must be given a function, got nil")
	bctx, done, err := s.begin(ctx, "watch", "")
	if err != nil {
		return nil, err
	}
	defer done()
	w := &watch{
		js: s.js, name: "KV_" + s.bucket,
		subject: s.prefix + "d.>", prefix: s.prefix + "d.",
		retention: s.retention, conn: s.conn, logger: s.logger, logCtx: context.WithoutCancel(ctx),
		wake: make(chan struct{}, 1), stop: make(chan struct{}), done: make(chan struct{}),
		hashed: make(map[string]string),
	}
	w.stopCtx, w.cancelStop = context.WithCancel(context.Background())
	w.feed = changefeed.New(fn, s.logger, "natsstore")
	s.mu.Lock()
	if s.closed.Load() {
		s.mu.Unlock()
		w.feed.Close()
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
	if err := w.begin(bctx); err != nil {
		w.feed.Close()
		w.unsubscribe()
		close(w.done) // a Close of the store that already holds w returns at once
		w.cancelStop()
		w.forget()
		return nil, fmt.Errorf("natsstore: watch: %w", failed(bctx, err))
	}
	go w.run(up)
	return w, nil
}

type watch struct {
	js        jetstream.JetStream
	stream    jetstream.Stream // the watch's own handle, set by begin
	name      string           // the stream's, "KV_<bucket>"
	subject   string           // the filter, "$KV.<bucket>.d.>"
	prefix    string           // "$KV.<bucket>.d."
	retention time.Duration    // how long a delete's marker lives
	conn      *connState
	feed      *changefeed.Feed
	logger    *slog.Logger
	logCtx    context.Context
	forget    func()

	wake chan struct{} // buffered(1): see lostEpoch and purged
	stop chan struct{}
	done chan struct{}
	once sync.Once
	// stopCtx ends when the watch is closed, to end a consumer's creation.
	stopCtx    context.Context
	cancelStop context.CancelFunc
	purges     *nats.Subscription // of the purge requests

	// Owned by the watch's goroutine after Watch.
	cc      jetstream.ConsumeContext
	cons    jetstream.Consumer
	created time.Time              // the stream's creation, as the watch knows it
	config  jetstream.StreamConfig // the stream's, at the last look
	first   jetstream.StreamState  // the stream's state at the last look

	// epoch numbers the consumers; a consumer's handler drops what arrives
	// once a newer one is started. It changes under mu.
	epoch atomic.Uint64

	mu        sync.Mutex
	last      uint64    // the stream sequence of the last message delivered
	lostEpoch uint64    // a consumer that may have lost changes, until the goroutine looks
	purged    bool      // a purge was requested, until the goroutine looks
	replaying bool      // Up is due once the consumer has caught up
	downSince time.Time // when the running cut began; zero while up
	// hashed maps the hashed tokens last seen written to their keys, at most
	// hashedKeysKept of them, oldest first in order.
	hashed map[string]string
	order  []string
}

// begin reads the stream's state, subscribes to the purge requests of the
// stream and starts a consumer of the data keys from the stream's end.
func (w *watch) begin(ctx context.Context) error {
	// A handle of the watch's own: Info updates it, and the store's
	// handle is read by every Get.
	stream, err := w.js.Stream(ctx, w.name)
	if err != nil {
		return err
	}
	w.stream = stream
	info := stream.CachedInfo()
	w.created, w.config, w.first = info.Created, info.Config, info.State
	nc := w.js.Conn()
	sub, err := nc.Subscribe("$JS.API.STREAM.PURGE."+w.name, func(*nats.Msg) {
		w.mu.Lock()
		w.purged = true
		w.mu.Unlock()
		w.signal()
	})
	if err != nil {
		return err
	}
	w.purges = sub
	// The server registers the subscriptions before it reads the
	// consumer's creation, sent after them on the same connection.
	cons, err := w.consumer(ctx, 0)
	if err != nil {
		return err
	}
	w.mu.Lock()
	w.last = cons.CachedInfo().Delivered.Stream
	w.mu.Unlock()
	return w.consume(cons)
}

func (w *watch) unsubscribe() {
	if w.purges != nil {
		_ = w.purges.Unsubscribe()
	}
}

// consumer creates a consumer of the data keys from the stream sequence
// from, or from the stream's end if from is 0.
func (w *watch) consumer(ctx context.Context, from uint64) (jetstream.Consumer, error) {
	cfg := jetstream.ConsumerConfig{
		DeliverPolicy:     jetstream.DeliverNewPolicy,
		AckPolicy:         jetstream.AckNonePolicy,
		FilterSubject:     w.subject,
		HeadersOnly:       true,
		MemoryStorage:     true,
		Replicas:          1,
		InactiveThreshold: 30 * time.Second, // the server removes it once we are gone
	}
	if from > 0 {
		cfg.DeliverPolicy, cfg.OptStartSeq = jetstream.DeliverByStartSequencePolicy, from
	}
	return w.js.CreateConsumer(ctx, w.name, cfg)
}

// consume starts consuming cons as a new epoch.
func (w *watch) consume(cons jetstream.Consumer) error {
	w.mu.Lock()
	epoch := w.epoch.Add(1)
	w.mu.Unlock()
	var delivered uint64 // the consumer's sequence, owned by the handler
	handler := func(m jetstream.Msg) {
		meta, merr := m.Metadata()
		w.mu.Lock()
		defer w.mu.Unlock()
		if w.epoch.Load() != epoch {
			return
		}
		if merr != nil || meta.Sequence.Consumer != delivered+1 {
			w.lostLocked(epoch)
			return
		}
		delivered = meta.Sequence.Consumer
		if seq := meta.Sequence.Stream; seq > w.last {
			w.last = seq
			w.reportLocked(strings.TrimPrefix(m.Subject(), w.prefix), m.Headers().Get(keyHeader), store.Version(seq))
		}
		if w.replaying && meta.NumPending == 0 {
			w.replaying = false
			w.feed.Push(store.Change{Up: true})
		}
	}
	cc, err := cons.Consume(handler,
		jetstream.PullHeartbeat(watchHeartbeat),
		jetstream.ConsumeErrHandler(func(jetstream.ConsumeContext, error) {
			w.mu.Lock()
			w.lostLocked(epoch)
			w.mu.Unlock()
		}))
	if err != nil {
		return err
	}
	w.cc, w.cons = cc, cons
	return nil
}

// lostLocked records that the consumer of epoch may have lost changes, if
// it is the current one: the record stays until the goroutine looks, so a
// stale consumer's loss never hides a real one. w.mu is held.
func (w *watch) lostLocked(epoch uint64) {
	if epoch == w.epoch.Load() {
		w.lostEpoch = epoch
		w.signal()
	}
}

func (w *watch) signal() {
	select {
	case w.wake <- struct{}{}:
	default:
	}
}

// stopConsumer stops the current consumer and waits for its delivery to end
// (for at most a second: a connection that is gone may not confirm it).
func (w *watch) stopConsumer() {
	w.mu.Lock()
	w.epoch.Add(1)
	w.mu.Unlock()
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
	w.cc, w.cons = nil, nil
}

func (w *watch) run(up context.Context) {
	defer close(w.done)
	defer w.stopConsumer()
	defer w.unsubscribe()
	tick := time.NewTicker(watchCheck)
	defer tick.Stop()
	for {
		select {
		case <-w.stop:
			return
		case <-up.Done():
			w.logger.DebugContext(w.logCtx, "natsstore: watch lost its connection")
			if up = w.restart(); up == nil {
				return
			}
		case <-w.wake:
			w.mu.Lock()
			lost := w.lostEpoch == w.epoch.Load()
			purged := w.purged
			w.purged = false
			w.mu.Unlock()
			if purged && !w.purge(up) {
				return
			}
			if lost {
				w.logger.WarnContext(w.logCtx, "natsstore: watch may have lost changes; resuming", "bucket", w.name)
				if up = w.restart(); up == nil {
					return
				}
			}
		case <-tick.C:
			w.look(up)
		}
	}
}

// restart reports Down, then resumes once the connection is up (retrying
// with backoff). It returns the context of the connection the new consumer
// runs on, or nil if the watch was closed.
func (w *watch) restart() context.Context {
	w.mu.Lock()
	if w.downSince.IsZero() {
		w.downSince = time.Now()
	}
	w.mu.Unlock()
	w.feed.Push(store.Change{Down: true})
	w.stopConsumer()
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
		err := w.resume(ctx)
		stop()
		cancel()
		if err == nil {
			return up
		}
		w.logger.WarnContext(w.logCtx, "natsstore: watch could not start its consumer", "bucket", w.name, "err", err)
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

// resume starts a consumer right after the last message delivered, to
// replay what the watch missed, and reports Up once it has; if the stream
// cannot replay from there, it starts one from the stream's end and reports
// All and Up.
func (w *watch) resume(ctx context.Context) error {
	info, err := w.stream.Info(ctx)
	if err != nil {
		return err
	}
	w.config, w.first = info.Config, info.State
	w.mu.Lock()
	from, since := w.last+1, w.downSince
	w.mu.Unlock()
	st := info.State
	if info.Created.Equal(w.created) && st.FirstSeq <= from && from <= st.LastSeq+1 &&
		time.Since(since)+cutSlack < w.retention {
		w.mu.Lock()
		w.replaying = true
		w.mu.Unlock()
		cons, cerr := w.consumer(ctx, from)
		if cerr == nil {
			cerr = w.consume(cons)
		}
		w.mu.Lock()
		defer w.mu.Unlock()
		if cerr != nil {
			w.replaying = false
			return cerr
		}
		w.downSince = time.Time{}
		if w.replaying && cons.CachedInfo().NumPending == 0 {
			w.replaying = false
			w.feed.Push(store.Change{Up: true})
		}
		return nil
	}
	w.logger.WarnContext(w.logCtx, "natsstore: watch cannot replay what it missed; reporting every key as changed",
		"bucket", w.name, "from", from, "first", st.FirstSeq, "last", st.LastSeq)
	cons, err := w.consumer(ctx, 0)
	if err != nil {
		return err
	}
	w.mu.Lock()
	w.last = cons.CachedInfo().Delivered.Stream // the new position, even below the old one
	w.mu.Unlock()
	if err := w.consume(cons); err != nil {
		return err
	}
	w.created = info.Created
	w.mu.Lock()
	defer w.mu.Unlock()
	w.replaying, w.downSince = false, time.Time{}
	w.feed.Push(store.Change{All: true})
	w.feed.Push(store.Change{Up: true})
	return nil
}

// purge reports a purge request: Down at once, then All and Up once the
// server has answered a request of the watch sent after it, and
// purgeSettle more. It returns false if the watch was closed meanwhile.
func (w *watch) purge(up context.Context) bool {
	w.feed.Push(store.Change{Down: true})
	ctx, cancel := context.WithTimeout(up, watchStartTimeout)
	stop := context.AfterFunc(w.stopCtx, cancel)
	_, _ = w.stream.Info(ctx) // its answer or its failure: the purge went before
	stop()
	cancel()
	t := time.NewTimer(purgeSettle)
	defer t.Stop()
	select {
	case <-w.stop:
		return false
	case <-t.C:
	}
	w.logger.WarnContext(w.logCtx, "natsstore: the bucket's stream was purged; reporting every key as changed", "bucket", w.name)
	w.mu.Lock()
	defer w.mu.Unlock()
	w.feed.Push(store.Change{All: true})
	if w.downSince.IsZero() && !w.replaying {
		w.feed.Push(store.Change{Up: true})
	}
	return true
}

// look, every watchCheck, ends a replay whose last messages were removed
// before the consumer delivered them (the consumer has nothing left, yet no
// message said so), and reports All on a bucket whose limits may have
// discarded messages without a marker since the last look.
func (w *watch) look(up context.Context) {
	w.mu.Lock()
	replaying, last := w.replaying, w.last
	w.mu.Unlock()
	discards := discarding(w.config)
	if !replaying && !discards {
		return
	}
	ctx, cancel := context.WithTimeout(up, watchStartTimeout)
	defer cancel()
	defer context.AfterFunc(w.stopCtx, cancel)()
	if replaying && w.cons != nil {
		if info, err := w.cons.Info(ctx); err == nil && info.NumPending == 0 && info.Delivered.Stream <= last {
			w.mu.Lock()
			if w.replaying {
				w.replaying = false
				w.feed.Push(store.Change{Up: true})
			}
			w.mu.Unlock()
		}
	}
	if !discards {
		return
	}
	info, err := w.stream.Info(ctx)
	if err != nil {
		return
	}
	prev, st, cfg := w.first, info.State, info.Config
	w.config, w.first = cfg, st
	if st.FirstSeq <= prev.FirstSeq {
		return
	}
	// The first message went: superseded by a newer one of its key (no
	// news), or discarded by a limit, which only a stream at its limit or
	// past its max age does.
	old := cfg.Discard == jetstream.DiscardOld
	atLimit := (old && cfg.MaxMsgs > 0 && st.Msgs >= uint64(cfg.MaxMsgs)) ||
		(old && cfg.MaxBytes > 0 && st.Bytes+uint64(max(cfg.MaxMsgSize, 1<<20)) >= uint64(cfg.MaxBytes)) ||
		(cfg.MaxAge > 0 && cfg.SubjectDeleteMarkerTTL == 0 && time.Since(prev.FirstTime) >= cfg.MaxAge)
	if atLimit {
		w.logger.WarnContext(w.logCtx, "natsstore: the bucket's limits may have discarded messages; reporting every key as changed", "bucket", w.name)
		w.feed.Push(store.Change{All: true})
	}
}

// discarding reports whether a stream of cfg removes messages without
// leaving a marker: by its max age without a marker TTL, or by its limits
// when it discards old messages to take new ones.
func discarding(cfg jetstream.StreamConfig) bool {
	return (cfg.MaxAge > 0 && cfg.SubjectDeleteMarkerTTL == 0) ||
		(cfg.Discard == jetstream.DiscardOld && (cfg.MaxMsgs > 0 || cfg.MaxBytes > 0))
}

// reportLocked gives fn the key of a message on token (the subject after
// "$KV.<bucket>.d."), at version v, or All when the key cannot be told.
// named is the message's Herd-Key header. w.mu is held.
func (w *watch) reportLocked(token, named string, v store.Version) {
	switch {
	case strings.HasPrefix(token, "k"):
		key, err := decodeKey(token)
		if err != nil {
			return // not a key this package wrote
		}
		w.feed.Push(store.Change{Key: key, Version: v})
	case strings.HasPrefix(token, "h"):
		if named != "" {
			key, err := unescape(named)
			if err != nil {
				return
			}
			w.rememberLocked(token, key)
			w.feed.Push(store.Change{Key: key, Version: v})
			return
		}
		if key, ok := w.hashed[token]; ok {
			w.feed.Push(store.Change{Key: key, Version: v})
			return
		}
		// An expiry, or a write by another client, of a hashed key this
		// watch has not seen written: it cannot say which key changed.
		w.feed.Push(store.Change{All: true})
	}
}

// rememberLocked records the key of a hashed token, forgetting the oldest
// one past hashedKeysKept. w.mu is held.
func (w *watch) rememberLocked(token, key string) {
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

// Close stops the deliveries and waits for fn to return if it is running.
// It is idempotent, and must not be called from fn.
func (w *watch) Close() error {
	w.once.Do(func() {
		w.feed.Close()
		close(w.stop)
		w.cancelStop()
		<-w.done
		w.forget()
	})
	return nil
}
