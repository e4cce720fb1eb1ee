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
	sub := &subscription{
		kv: s.kv, fn: fn, last: info.StreamInfo().State.LastSeq,
		stop: make(chan struct{}), done: make(chan struct{}),
	}
	nc := s.js.Conn()
	sub.reconnected = nc.StatusChanged(nats.CONNECTED)
	if sub.w, err = sub.watch(ctx); err != nil {
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
	fn          func(string)
	reconnected chan nats.Status
	forget      func()
	stop, done  chan struct{}
	once        sync.Once

	// Owned by run after Subscribe returns.
	w    jetstream.KeyWatcher
	last uint64 // the last revision delivered (or seen at start)
}

func (sub *subscription) watch(ctx context.Context) (jetstream.KeyWatcher, error) {
	return sub.kv.Watch(ctx, "n.>", jetstream.ResumeFromRevision(sub.last+1))
}

func (sub *subscription) run() {
	defer close(sub.done)
	defer func() {
		if sub.w != nil {
			_ = sub.w.Stop()
		}
	}()
	var updates <-chan jetstream.KeyValueEntry
	if sub.w != nil {
		updates = sub.w.Updates()
	}
	retry := time.NewTimer(time.Hour)
	retry.Stop()
	defer retry.Stop()
	backoff := 50 * time.Millisecond
	restart := func() {
		if sub.w != nil {
			_ = sub.w.Stop()
			sub.w, updates = nil, nil
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		w, err := sub.watch(ctx)
		cancel()
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
		case <-sub.reconnected:
			restart()
		case <-retry.C:
			restart()
		case e, ok := <-updates:
			if !ok { // the watcher stopped under us: watch again
				sub.w, updates = nil, nil
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

// Close stops the watch and waits for the delivering goroutine to return.
func (sub *subscription) Close() error {
	sub.once.Do(func() {
		close(sub.stop)
		<-sub.done
		sub.forget()
	})
	return nil
}
