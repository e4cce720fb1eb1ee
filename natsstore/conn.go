package natsstore

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
)

// connState follows the connection's status so that calls in flight when
// the connection drops end at once with ErrUnavailable instead of waiting
// for an answer that will not come (the client keeps a request open until
// its context ends, even across a reconnection).
type connState struct {
	nc      *nats.Conn
	events  chan nats.Status
	stop    chan struct{}
	stopped chan struct{}
	once    sync.Once

	mu     sync.Mutex
	up     context.Context // cancelled when the connection drops
	cancel context.CancelCauseFunc
	closed bool
}

func watchConn(nc *nats.Conn) *connState {
	c := &connState{
		nc:     nc,
		events: nc.StatusChanged(nats.CONNECTED, nats.DISCONNECTED, nats.RECONNECTING, nats.CLOSED),
		stop:   make(chan struct{}), stopped: make(chan struct{}),
	}
	c.up, c.cancel = context.WithCancelCause(context.Background())
	if !nc.IsConnected() {
		c.cancel(ErrUnavailable)
	}
	go c.run()
	return c
}

// statusPoll is how often the status is read even without an event: the
// client drops a listener that has an unread event when it sends the next
// one, so events alone could be lost.
const statusPoll = 200 * time.Millisecond

func (c *connState) run() {
	defer close(c.stopped)
	tick := time.NewTicker(statusPoll)
	defer tick.Stop()
	events := c.events
	for {
		select {
		case <-c.stop:
			return
		case _, ok := <-events:
			if !ok {
				events = nil
			}
		case <-tick.C:
		}
		connected := c.nc.IsConnected()
		c.mu.Lock()
		switch {
		case !connected:
			c.cancel(ErrUnavailable)
		case c.up.Err() != nil:
			c.up, c.cancel = context.WithCancelCause(context.Background())
		}
		c.mu.Unlock()
	}
}

// bind returns ctx, also cancelled when the connection drops, or an error
// wrapping ErrUnavailable if it is down now.
func (c *connState) bind(ctx context.Context, op, key string) (context.Context, context.CancelFunc, error) {
	c.mu.Lock()
	up, closed := c.up, c.closed
	c.mu.Unlock()
	if !closed && up.Err() != nil || !c.nc.IsConnected() {
		return nil, nil, fmt.Errorf("natsstore: %s %q: %w", op, key, ErrUnavailable)
	}
	if closed { // no longer followed: calls end with their own context only
		return ctx, func() {}, nil
	}
	ctx, cancel := context.WithCancelCause(ctx)
	stop := context.AfterFunc(up, func() { cancel(ErrUnavailable) })
	return ctx, func() {
		stop()
		cancel(nil)
	}, nil
}

// close stops following the connection and waits for the goroutine.
func (c *connState) close() {
	c.once.Do(func() {
		close(c.stop)
		<-c.stopped
		c.nc.RemoveStatusListener(c.events)
		c.mu.Lock()
		c.closed = true
		c.mu.Unlock()
	})
}

// failed rewrites err as ErrUnavailable when ctx ended because the
// connection dropped.
func failed(ctx context.Context, err error) error {
	if cause := context.Cause(ctx); cause == ErrUnavailable { //nolint:errorlint // our own sentinel, never wrapped as a cause
		return fmt.Errorf("%w (%w)", ErrUnavailable, err)
	}
	return err
}
