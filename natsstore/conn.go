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
// its context ends, even across a reconnection), and so that watches learn
// of every disconnection, however short.
type connState struct {
	nc      *nats.Conn
	events  chan nats.Status
	stop    chan struct{}
	stopped chan struct{}
	once    sync.Once

	mu         sync.Mutex
	up         context.Context // cancelled when the connection drops
	cancel     context.CancelCauseFunc
	changed    chan struct{} // closed and replaced whenever up is cancelled or replaced
	reconnects uint64        // the client's reconnections when up was made
}

func watchConn(nc *nats.Conn) *connState {
	c := &connState{
		nc:     nc,
		events: nc.StatusChanged(nats.CONNECTED, nats.DISCONNECTED, nats.RECONNECTING, nats.CLOSED),
		stop:   make(chan struct{}), stopped: make(chan struct{}),
		changed:    make(chan struct{}),
		reconnects: nc.Stats().Reconnects,
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
		c.look()
	}
}

// look reads the connection's status. A reconnection seen only through the
// client's count (the connection dropped and came back between two looks)
// ends the old up context too, so that a watch still restarts.
func (c *connState) look() {
	connected := c.nc.IsConnected()
	reconnects := c.nc.Stats().Reconnects
	c.mu.Lock()
	defer c.mu.Unlock()
	switch {
	case !connected:
		if c.up.Err() == nil {
			c.cancel(ErrUnavailable)
			c.notify()
		}
	case reconnects != c.reconnects || c.up.Err() != nil:
		c.cancel(ErrUnavailable)
		c.up, c.cancel = context.WithCancelCause(context.Background())
		c.reconnects = reconnects
		c.notify()
	}
}

// notify wakes everyone waiting for a change. c.mu is held.
func (c *connState) notify() {
	close(c.changed)
	c.changed = make(chan struct{})
}

// state returns the context that ends when the connection drops (already
// ended while it is down) and a channel closed at the next change.
func (c *connState) state() (context.Context, <-chan struct{}) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.up, c.changed
}

// bind returns ctx, also cancelled when the connection drops, or an error
// wrapping ErrUnavailable if it is down now.
func (c *connState) bind(ctx context.Context, op, key string) (context.Context, context.CancelFunc, error) {
	ctx, done, ok := c.attach(ctx)
	if !ok {
		return nil, nil, fmt.Errorf("natsstore: %s %q: %w", op, key, ErrUnavailable)
	}
	return ctx, done, nil
}

// attach returns ctx, also cancelled when the connection drops, or false if
// it is down now.
func (c *connState) attach(ctx context.Context) (context.Context, context.CancelFunc, bool) {
	up, _ := c.state()
	if up.Err() != nil || !c.nc.IsConnected() {
		return nil, nil, false
	}
	ctx, cancel := context.WithCancelCause(ctx)
	stop := context.AfterFunc(up, func() { cancel(ErrUnavailable) })
	return ctx, func() {
		stop()
		cancel(nil)
	}, true
}

// close stops following the connection and waits for the goroutine.
func (c *connState) close() {
	c.once.Do(func() {
		close(c.stop)
		<-c.stopped
		c.nc.RemoveStatusListener(c.events)
		c.mu.Lock()
		c.cancel(ErrClosed)
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
