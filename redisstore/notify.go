package redisstore

import (
	"context"
	"fmt"
	"sync"

	"github.com/redis/go-redis/v9"

	"github.com/herdcache/herd/store"
)

// Publish announces on the store's channel that key changed, in one round
// trip. Subscribers that are disconnected at that moment miss it.
func (s *Store[T]) Publish(ctx context.Context, key string) error {
	if err := s.client.Publish(ctx, s.channel, key).Err(); err != nil {
		return fmt.Errorf("redisstore: publish %q: %w", key, err)
	}
	return nil
}

// Subscribe calls fn with every key published on the store's channel from
// the moment it returns, in order, from one goroutine, until the
// subscription or the store is closed. It returns once Redis has confirmed
// the subscription, or an error if it could not within ctx. A broken
// connection is re-established and the channel subscribed again by go-redis;
// keys published in between are lost. fn must not block for long: go-redis
// buffers 100 messages, then waits up to a minute before it drops one.
func (s *Store[T]) Subscribe(ctx context.Context, fn func(key string)) (store.Subscription, error) {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil, ErrClosed
	}
	s.pending.Add(1)
	s.mu.Unlock()

	// go-redis dials and subscribes under the PubSub's own lock, honouring
	// only ctx's deadline, not its cancellation: a goroutine does it, so
	// that this call returns when ctx ends, and closes the PubSub if the
	// caller has gone by the time it is confirmed. Store.Close waits for it.
	type result struct {
		ps  *redis.PubSub
		err error
	}
	res := make(chan result) // unbuffered: handed over, or abandoned
	abandon := make(chan struct{})
	go func() {
		defer s.pending.Done()
		ps, err := s.subscribe(ctx)
		select {
		case res <- result{ps, err}:
		case <-abandon:
			if ps != nil {
				_ = ps.Close()
			}
		}
	}()
	var r result
	select {
	case r = <-res:
	case <-ctx.Done():
		close(abandon)
		return nil, fmt.Errorf("redisstore: subscribe to %s: %w", s.channel, context.Cause(ctx))
	}
	if r.err != nil {
		return nil, fmt.Errorf("redisstore: subscribe to %s: %w", s.channel, r.err)
	}
	ps := r.ps

	sub := &subscription{ps: ps, stop: make(chan struct{}), done: make(chan struct{}), forget: s.forget}
	s.mu.Lock()
	if s.closed { // closed while we subscribed
		s.mu.Unlock()
		_ = ps.Close()
		return nil, ErrClosed
	}
	s.subs[sub] = struct{}{}
	s.mu.Unlock()
	msgs := ps.Channel()
	go func() {
		defer close(sub.done)
		for {
			select {
			case m, ok := <-msgs:
				if !ok {
					return
				}
				select {
				case <-sub.stop: // closed meanwhile: deliver nothing more
					continue
				default:
				}
				fn(m.Payload)
			case <-sub.stop:
				// Drain what go-redis still sends until it closes msgs once
				// the PubSub is closed, so that its goroutine never waits
				// on a full channel.
				for range msgs {
				}
				return
			}
		}
	}()
	return sub, nil
}

// subscribe subscribes a new PubSub to the store's channel and waits for
// Redis to confirm it.
func (s *Store[T]) subscribe(ctx context.Context) (*redis.PubSub, error) {
	ps := s.client.Subscribe(ctx, s.channel)
	// Receive honours only ctx's deadline: closing ps when ctx ends
	// unblocks it.
	stop := context.AfterFunc(ctx, func() { _ = ps.Close() })
	msg, err := ps.Receive(ctx)
	if !stop() {
		return nil, context.Cause(ctx)
	}
	if err == nil {
		if sub, ok := msg.(*redis.Subscription); !ok || sub.Kind != "subscribe" {
			err = fmt.Errorf("unexpected reply %v", msg)
		}
	}
	if err != nil {
		_ = ps.Close()
		return nil, err
	}
	return ps, nil
}

func (s *Store[T]) forget(sub *subscription) {
	s.mu.Lock()
	delete(s.subs, sub)
	s.mu.Unlock()
}

// A subscription is a running [Store.Subscribe].
type subscription struct {
	ps     *redis.PubSub
	stop   chan struct{} // closed by Close: deliver nothing more
	done   chan struct{} // closed when the delivering goroutine returns
	once   sync.Once
	forget func(*subscription)
}

// Close stops the deliveries and waits for the delivering goroutine to
// return (after the call of fn in progress, if any). Closing twice is fine.
// Close must not be called from fn.
func (sub *subscription) Close() error {
	sub.once.Do(func() {
		close(sub.stop)
		_ = sub.ps.Close()
		sub.forget(sub)
	})
	<-sub.done
	return nil
}
