package natsstore

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/herdcache/herd/store"
)

// Publish announces that key changed: it writes the key's notification key,
// which holds the key itself and expires after [NotifyRetention].
func (s *Store[T]) Publish(ctx context.Context, key string) error {
	ctx, done, err := s.conn.bind(ctx, "publish", key)
	if err != nil {
		return err
	}
	defer done()
	token, _ := encodeKey(key)
	m := &nats.Msg{Subject: s.prefix + "n." + token, Data: []byte(key)}
	var opts []jetstream.PublishOpt
	if s.ttl {
		opts = append(opts, jetstream.WithMsgTTL(s.notifyTTL))
	}
	if _, err := s.publish(ctx, m, opts...); err != nil {
		return fmt.Errorf("natsstore: publish %q: %w", key, failed(ctx, err))
	}
	return nil
}

// Subscribe calls fn with every key published from now on, from one
// goroutine. It returns once the watch is active. When the connection comes
// back after a disconnection, the watch is started again from the revision
// after the last one delivered, so that nothing published in between is
// missed; revisions already delivered are skipped.
func (s *Store[T]) Subscribe(ctx context.Context, fn func(key string)) (store.Subscription, error) {
	status, err := s.kv.Status(ctx)
	if err != nil {
		return nil, fmt.Errorf("natsstore: subscribe: %w", err)
	}
	info, ok := status.(*jetstream.KeyValueBucketStatus)
	if !ok {
		return nil, fmt.Errorf("natsstore: subscribe: unexpected bucket status %T", status)
	}
	nc := s.js.Conn()
	sub := &subscription{
		kv:         s.kv,
		nc:         nc,
		fn:         fn,
		stop:       make(chan struct{}),
		done:       make(chan struct{}),
		last:       info.StreamInfo().State.LastSeq,
		reconnects: nc.Stats().Reconnects,
	}
	sub.ctx, sub.cancel = context.WithCancel(context.Background())
	sub.reconnected = nc.StatusChanged(nats.CONNECTED)
	// The watch lives on sub.ctx (the client ends a watch when the context
	// of its creation ends); ctx bounds only its creation.
	stop := context.AfterFunc(ctx, sub.cancel)
	sub.w, err = sub.watch()
	stop()
	if err == nil && ctx.Err() != nil {
		sub.stopWatch()
		err = ctx.Err()
	}
	if err != nil {
		sub.cancel()
		nc.RemoveStatusListener(sub.reconnected)
		return nil, fmt.Errorf("natsstore: subscribe: %w", err)
	}
	s.mu.Lock()
	s.subs[sub] = struct{}{}
	s.mu.Unlock()
	sub.forget = func() {
		nc.RemoveStatusListener(sub.reconnected)
		s.mu.Lock()
		delete(s.subs, sub)
		s.mu.Unlock()
	}
	go sub.run()
	return sub, nil
}

type subscription struct {
	kv          jetstream.KeyValue
	nc          *nats.Conn
	fn          func(string)
	reconnected chan nats.Status
	forget      func()
	stop, done  chan struct{}
	once        sync.Once
	ctx         context.Context // cancelled by Close, to end a watch being started
	cancel      context.CancelFunc

	// Owned by run after Subscribe returns.
	w          jetstream.KeyWatcher
	wcancel    context.CancelFunc // ends w's context
	last       uint64             // the last revision delivered (or seen at start)
	reconnects uint64             // the connection's reconnections when w was started
}

// watch starts a watch of the notification keys from the revision after the
// last one delivered, on a context of its own that stopWatch cancels.
func (sub *subscription) watch() (jetstream.KeyWatcher, error) {
	ctx, cancel := context.WithCancel(sub.ctx)
	w, err := sub.kv.Watch(ctx, "n.>", jetstream.ResumeFromRevision(sub.last+1))
	if err != nil {
		cancel()
		return nil, err
	}
	sub.wcancel = cancel
	return w, nil
}

func (sub *subscription) run() {
	defer close(sub.done)
	defer sub.stopWatch()
	reconnected := sub.reconnected
	var updates <-chan jetstream.KeyValueEntry
	if sub.w != nil {
		updates = sub.w.Updates()
	}
	retry := time.NewTimer(time.Hour)
	retry.Stop()
	defer retry.Stop()
	backoff := 50 * time.Millisecond
	// The reconnection event may be lost (see statusPoll), so the count of
	// reconnections is checked every second too.
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	restart := func() {
		sub.reconnects = sub.nc.Stats().Reconnects
		sub.stopWatch()
		updates = nil
		w, err := sub.watch()
		if err != nil {
			retry.Reset(backoff)
			backoff = min(2*backoff, 2*time.Second)
			return
		}
		backoff = 50 * time.Millisecond
		sub.w, updates = w, w.Updates()
	}
	for {
		select {
		case <-sub.stop:
			return
		case _, ok := <-reconnected:
			if !ok {
				reconnected = nil
				continue
			}
			restart()
		case <-tick.C:
			if sub.nc.Stats().Reconnects != sub.reconnects && sub.nc.IsConnected() {
				restart()
			}
		case <-retry.C:
			restart()
		case e, ok := <-updates:
			if !ok { // the watcher stopped under us: watch again
				sub.stopWatch()
				updates = nil
				retry.Reset(backoff)
				continue
			}
			if e == nil || e.Revision() <= sub.last {
				continue
			}
			sub.last = e.Revision()
			if e.Operation() == jetstream.KeyValuePut {
				sub.fn(string(e.Value()))
			}
		}
	}
}

// stopWatch stops the current watch, if any, and reads what it still
// delivers until it closes its channel (for at most a second): the client's
// callback holds a lock while it blocks on a full channel, and closing the
// channel needs that lock.
func (sub *subscription) stopWatch() {
	if sub.w == nil {
		return
	}
	w := sub.w
	sub.w = nil
	defer sub.wcancel()
	_ = w.Stop()
	timeout := time.NewTimer(time.Second)
	defer timeout.Stop()
	for {
		select {
		case _, ok := <-w.Updates():
			if !ok {
				return
			}
		case <-timeout.C:
			return
		}
	}
}

// Close stops the watch and waits for the delivering goroutine to return.
func (sub *subscription) Close() error {
	sub.once.Do(func() {
		sub.cancel()
		close(sub.stop)
		<-sub.done
		sub.forget()
	})
	return nil
}
