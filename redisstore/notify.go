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
	closed := s.closed
	s.mu.Unlock()
	if closed {
		return nil, ErrClosed
	}
	ps := s.client.Subscribe(ctx, s.channel)
	// Receive honours only ctx's deadline, not its cancellation: closing ps
	// when ctx ends unblocks it.
	stop := context.AfterFunc(ctx, func() { _ = ps.Close() })
	msg, err := ps.Receive(ctx)
	if !stop() {
		return nil, fmt.Errorf("redisstore: subscribe to %s: %w", s.channel, context.Cause(ctx))
	}
	if err == nil {
		if sub, ok := msg.(*redis.Subscription); !ok || sub.Kind != "subscribe" {
			err = fmt.Errorf("unexpected reply %v", msg)
		}
	}
	if err != nil {
		_ = ps.Close()
		return nil, fmt.Errorf("redisstore: subscribe to %s: %w", s.channel, err)
	}
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
