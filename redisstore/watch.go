package redisstore

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/herdcache/herd/flight"
	"github.com/herdcache/herd/internal/catch"
	"github.com/herdcache/herd/store"
)

// invalidations is the channel on which Redis sends the keys that client
// tracking invalidates to a RESP2 connection that asked for them.
const invalidations = "__redis__:invalidate"

const (
	// maxQueued is how many changes a watch holds for a slow fn before it
	// drops them for one Change with All set.
	maxQueued = 1 << 16
	// reconnectTimeout bounds one attempt to connect a watch again.
	reconnectTimeout = 10 * time.Second
	// topologyEvery is how often a watch on a Cluster or Ring looks for
	// masters added or removed.
	topologyEvery = 2 * time.Second
	maxBackoff    = 2 * time.Second
)

var all = store.Change{All: true}

// Watch calls fn with every change of the store's entries from the moment
// it returns on, as [store.ChangeStream] says: the keys written, deleted,
// expired or evicted on the server by any client, this process included,
// from one goroutine, in the order each master reports them (changes of
// keys on different Cluster masters or Ring shards have no order between
// them). See "Changes" in the package documentation for how.
//
// A Change with All set is delivered before anything else when a tracking
// connection was lost or did not answer a ping within [WatchPing], when the
// server flushed its keys, when a master joined a Cluster, when more than
// 65,536 changes wait for a slow fn, and after a panic in fn, which is
// recovered and logged with the key "err". fn must return quickly and must
// not call the Watch's Close.
//
// Watch returns once every master's connection has tracking enabled and is
// subscribed, or an error: when ctx ends first, when a server cannot be
// reached or refuses tracking (Redis before 6), when the client is of a kind
// the store cannot follow, or [ErrClosed] after [Store.Close]. ctx bounds
// only the start. The watch runs until its Close or the store's Close.
func (s *Store[T]) Watch(ctx context.Context, fn func(store.Change)) (store.Watch, error) {
	checkCtx(ctx)
	if fn == nil {
		panic("redisstore: Watch needs a function, got nil")
	}
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil, ErrClosed
	}
	s.pending.Add(1)
	wctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	w := &watch{
		prefix: s.prefix + "e:",
		fn:     fn,
		log:    s.log,
		ping:   s.ping,
		ctx:    wctx,
		cancel: cancel,
		wake:   make(chan struct{}, 1),
		nodes:  make(map[string]*node),
		forget: s.forget,
	}
	s.watches[w] = struct{}{}
	s.mu.Unlock()

	// The start runs on its own goroutine, so that Watch returns when ctx
	// ends even where the client honours only deadlines (cluster topology
	// reads). A start that ends after its caller left closes the watch.
	var (
		mu        sync.Mutex
		abandoned bool
		done      = make(chan error, 1)
	)
	go func() {
		defer s.pending.Done()
		err := w.start(ctx, s.client)
		mu.Lock()
		if abandoned && err == nil {
			err = context.Cause(ctx)
		}
		handed := !abandoned
		mu.Unlock()
		if err != nil {
			_ = w.Close()
		}
		if handed {
			done <- err
		}
	}()
	var err error
	select {
	case err = <-done:
	case <-ctx.Done():
		mu.Lock()
		abandoned = true
		mu.Unlock()
		select {
		case err = <-done: // handed over just before
		default:
			return nil, fmt.Errorf("redisstore: watch: %w", context.Cause(ctx))
		}
	}
	if err != nil {
		return nil, fmt.Errorf("redisstore: watch: %w", err)
	}
	return w, nil
}

func (s *Store[T]) forget(w *watch) {
	s.mu.Lock()
	delete(s.watches, w)
	s.mu.Unlock()
}

// A watch is a running [Store.Watch]: a node per master, each with a
// goroutine reading its connection, that queue changes for one goroutine
// calling fn.
type watch struct {
	prefix string // of the entry keys, stripped from the keys reported
	fn     func(store.Change)
	log    *slog.Logger
	ping   time.Duration
	ctx    context.Context // ends with Close
	cancel context.CancelFunc
	wake   chan struct{}
	forget func(*watch)
	once   sync.Once
	wg     sync.WaitGroup // every goroutine of the watch

	mu     sync.Mutex
	queue  []store.Change
	nodes  map[string]*node // by address
	closed bool
}

// masters returns the options of every master of client.
func masters(ctx context.Context, client redis.UniversalClient) ([]*redis.Options, error) {
	var (
		mu   sync.Mutex
		opts []*redis.Options
	)
	each := func(_ context.Context, c *redis.Client) error {
		mu.Lock()
		opts = append(opts, c.Options())
		mu.Unlock()
		return nil
	}
	var err error
	switch c := client.(type) {
	case *redis.Client:
		return []*redis.Options{c.Options()}, nil
	case *redis.ClusterClient:
		err = c.ForEachMaster(ctx, each)
	case *redis.Ring:
		err = c.ForEachShard(ctx, each)
	default:
		return nil, fmt.Errorf("cannot follow the masters of a %T", client)
	}
	return opts, err
}

// start connects to every master of client and starts the goroutines.
func (w *watch) start(ctx context.Context, client redis.UniversalClient) error {
	// Connecting honours ctx and ends with the watch.
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	defer context.AfterFunc(w.ctx, cancel)()
	opts, err := masters(ctx, client)
	if err != nil {
		return err
	}
	if len(opts) == 0 {
		return errors.New("no master to follow")
	}
	errs := make([]error, len(opts))
	var wg sync.WaitGroup
	for i, o := range opts {
		wg.Go(func() { errs[i] = w.add(ctx, o) })
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return err
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.closed {
		return ErrClosed
	}
	w.wg.Add(1)
	go w.deliver()
	if _, ok := client.(*redis.Client); !ok {
		w.wg.Add(1)
		go w.follow(client)
	}
	return nil
}

// add connects to the master of o and starts its goroutine.
func (w *watch) add(ctx context.Context, o *redis.Options) error {
	n := newNode(w, o)
	ps, err := n.subscribe(ctx)
	if err != nil {
		_ = n.client.Close()
		return fmt.Errorf("%s: %w", o.Addr, err)
	}
	n.ps = ps
	w.mu.Lock()
	if w.closed {
		w.mu.Unlock()
		_ = ps.Close()
		_ = n.client.Close()
		return ErrClosed
	}
	old := w.nodes[o.Addr] // a master met again
	w.nodes[o.Addr] = n
	w.wg.Add(1)
	w.mu.Unlock()
	if old != nil {
		old.stop()
	}
	go n.run(ps)
	return nil
}

// follow starts a node for every master that joins the Cluster or Ring,
// and stops the nodes of masters that left.
func (w *watch) follow(client redis.UniversalClient) {
	defer w.wg.Done()
	tick := time.NewTicker(topologyEvery)
	defer tick.Stop()
	for {
		select {
		case <-w.ctx.Done():
			return
		case <-tick.C:
		}
		ctx, cancel := context.WithTimeout(w.ctx, reconnectTimeout)
		opts, err := masters(ctx, client)
		if err != nil {
			cancel()
			continue // the nodes' own pings find what is broken
		}
		now := make(map[string]bool, len(opts))
		for _, o := range opts {
			now[o.Addr] = true
			w.mu.Lock()
			_, known := w.nodes[o.Addr]
			w.mu.Unlock()
			if known {
				continue
			}
			if err := w.add(ctx, o); err != nil {
				w.log.LogAttrs(w.ctx, slog.LevelWarn, "redisstore: watch: new master",
					slog.String("addr", o.Addr), slog.Any("err", err))
				continue
			}
			// Its keys may have changed before its node began.
			w.push(all)
		}
		cancel()
		var gone []*node
		w.mu.Lock()
		for addr, n := range w.nodes {
			if !now[addr] {
				delete(w.nodes, addr)
				gone = append(gone, n)
			}
		}
		w.mu.Unlock()
		for _, n := range gone {
			n.stop()
		}
	}
}

// push queues c for fn. All replaces whatever is queued: fn drops
// everything anyway.
func (w *watch) push(c store.Change) {
	w.mu.Lock()
	switch {
	case c.All, len(w.queue) >= maxQueued:
		w.queue = append(w.queue[:0], all)
	default:
		w.queue = append(w.queue, c)
	}
	w.mu.Unlock()
	select {
	case w.wake <- struct{}{}:
	default:
	}
}

// deliver calls fn with the queued changes, in order, until the watch is
// closed.
func (w *watch) deliver() {
	defer w.wg.Done()
	var batch []store.Change
	for {
		select {
		case <-w.ctx.Done():
			return
		case <-w.wake:
		}
		w.mu.Lock()
		batch, w.queue = w.queue, batch[:0]
		w.mu.Unlock()
		for _, c := range batch {
			if w.ctx.Err() != nil {
				return
			}
			if !w.call(c) && !c.All {
				w.call(all)
			}
		}
		clear(batch)
	}
}

// call calls fn with c, and recovers and logs a panic in it.
func (w *watch) call(c store.Change) (ok bool) {
	if p := catch.Call(func() { w.fn(c) }, nil); p != nil {
		w.log.LogAttrs(w.ctx, slog.LevelError, "redisstore: watch function panicked",
			slog.Any("err", &flight.PanicError{Value: p.Value, Stack: p.Stack}))
		return false
	}
	return true
}

// Close stops the deliveries, closes the watch's connections and waits for
// its goroutines, fn's call in progress included. It is idempotent and
// returns nil. It must not be called from fn.
func (w *watch) Close() error {
	w.once.Do(func() {
		w.cancel()
		w.mu.Lock()
		w.closed = true
		nodes := make([]*node, 0, len(w.nodes))
		for _, n := range w.nodes {
			nodes = append(nodes, n)
		}
		w.mu.Unlock()
		for _, n := range nodes {
			n.stop()
		}
		w.forget(w)
	})
	w.wg.Wait()
	return nil
}

// A node follows one master over a connection of its own.
type node struct {
	w      *watch
	addr   string
	client *redis.Client // of its own, for that one connection
	ctx    context.Context
	cancel context.CancelFunc

	mu      sync.Mutex
	ps      *redis.PubSub // nil while reconnecting
	stopped bool
	running bool                      // run began: a new connection means one was lost
	conns   map[*trackedConn]struct{} // open connections of client
}

// A trackedConn is a connection of a node's client, which the node closes
// under go-redis to end a read or a connection's setup at once: go-redis
// honours only deadlines, and holds a subscription's lock while it sets up
// its connection.
type trackedConn struct {
	net.Conn
	n    *node
	once sync.Once
}

func (c *trackedConn) Close() error {
	c.once.Do(func() {
		c.n.mu.Lock()
		delete(c.n.conns, c)
		c.n.mu.Unlock()
	})
	return c.Conn.Close()
}

// closeConns closes the node's connections under go-redis.
func (n *node) closeConns() {
	n.mu.Lock()
	conns := make([]*trackedConn, 0, len(n.conns))
	for c := range n.conns {
		conns = append(conns, c)
	}
	n.mu.Unlock()
	for _, c := range conns {
		_ = c.Close()
	}
}

// newNode returns a node for the master of o, with a client of its own whose
// every new connection enables tracking, redirected to itself, before it
// subscribes.
func newNode(w *watch, o *redis.Options) *node {
	ctx, cancel := context.WithCancel(w.ctx)
	n := &node{w: w, addr: o.Addr, ctx: ctx, cancel: cancel, conns: make(map[*trackedConn]struct{})}
	opt := *o
	dial := opt.Dialer
	opt.Dialer = func(ctx context.Context, network, addr string) (net.Conn, error) {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		n.mu.Lock()
		running := n.running
		n.mu.Unlock()
		if running {
			// go-redis replacing a broken connection, before it tells run
			// (on run's goroutine, so in order): say so at once.
			w.push(all)
		}
		conn, err := dial(ctx, network, addr)
		if err != nil {
			return nil, err
		}
		c := &trackedConn{Conn: conn, n: n}
		n.mu.Lock()
		stopped := n.stopped
		if !stopped {
			n.conns[c] = struct{}{}
		}
		n.mu.Unlock()
		if stopped {
			_ = conn.Close()
			return nil, ErrClosed
		}
		return c, nil
	}
	userOnConnect := opt.OnConnect
	opt.OnConnect = func(ctx context.Context, cn *redis.Conn) error {
		if userOnConnect != nil {
			if err := userOnConnect(ctx, cn); err != nil {
				return err
			}
		}
		id, err := cn.ClientID(ctx).Result()
		if err != nil {
			return fmt.Errorf("client id: %w", err)
		}
		err = cn.Do(ctx, "CLIENT", "TRACKING", "ON", "REDIRECT", id, "BCAST", "PREFIX", w.prefix).Err()
		if err != nil {
			return fmt.Errorf("client tracking: %w", err)
		}
		return nil
	}
	// RESP2: the invalidations arrive as messages of the subscription.
	opt.Protocol = 2
	opt.PoolSize, opt.MinIdleConns, opt.MaxIdleConns, opt.MaxActiveConns = 1, 0, 0, 0
	opt.ClientSideCache, opt.ClientSideCacheConfig = nil, nil
	opt.MaintNotificationsConfig = nil
	opt.Limiter = nil
	n.client = redis.NewClient(&opt)
	return n
}

// subscribe connects, enables tracking and subscribes to the invalidations,
// within ctx.
func (n *node) subscribe(ctx context.Context) (*redis.PubSub, error) {
	// go-redis honours only ctx's deadline: closing the connection when
	// ctx ends unblocks it.
	stop := context.AfterFunc(ctx, n.closeConns)
	ps := n.client.Subscribe(ctx, invalidations)
	msg, err := ps.Receive(ctx)
	if !stop() {
		_ = ps.Close()
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

// stop ends the node: its goroutine returns and closes the client.
func (n *node) stop() {
	n.cancel()
	n.mu.Lock()
	n.stopped = true
	ps := n.ps
	n.mu.Unlock()
	n.closeConns()
	if ps != nil {
		_ = ps.Close()
	}
}

// run reads the node's connection until the node stops, reporting the keys
// invalidated, and reconnects whenever the connection is lost, does not
// answer a ping, or the server flushes.
func (n *node) run(ps *redis.PubSub) {
	defer n.w.wg.Done()
	defer func() { _ = n.client.Close() }()
	n.mu.Lock()
	n.running = true
	n.mu.Unlock()
	pinged := false
	for {
		msg, err := ps.ReceiveTimeout(n.ctx, n.w.ping)
		if n.ctx.Err() != nil {
			_ = ps.Close()
			return
		}
		if err != nil {
			var nerr net.Error
			if !pinged && errors.As(err, &nerr) && nerr.Timeout() {
				if ps.Ping(n.ctx) == nil {
					pinged = true
					continue
				}
			}
			// Lost, silent, or a flush: go-redis cannot parse the nil
			// payload of the invalidation that says "everything".
			n.w.push(all)
			if ps = n.reconnect(ps, err); ps == nil {
				return
			}
			n.w.push(all)
			pinged = false
			continue
		}
		pinged = false
		if m, ok := msg.(*redis.Message); ok && m.Channel == invalidations {
			for _, k := range m.PayloadSlice {
				if key, ok := strings.CutPrefix(k, n.w.prefix); ok {
					n.w.push(store.Change{Key: key})
				}
			}
		}
	}
}

// reconnect closes ps and subscribes again, with backoff, until it succeeds
// or the node stops (then it returns nil).
func (n *node) reconnect(ps *redis.PubSub, cause error) *redis.PubSub {
	n.mu.Lock()
	n.ps = nil
	n.mu.Unlock()
	_ = ps.Close()
	n.w.log.LogAttrs(n.ctx, slog.LevelWarn, "redisstore: watch connection lost or flushed; reconnecting",
		slog.String("addr", n.addr), slog.Any("err", cause))
	backoff := 50 * time.Millisecond
	timer := time.NewTimer(0)
	defer timer.Stop()
	for attempt := 1; ; attempt++ {
		select {
		case <-n.ctx.Done():
			return nil
		case <-timer.C:
		}
		ctx, cancel := context.WithTimeout(n.ctx, reconnectTimeout)
		ps, err := n.subscribe(ctx)
		cancel()
		if err == nil {
			n.mu.Lock()
			defer n.mu.Unlock()
			if n.stopped {
				_ = ps.Close()
				return nil
			}
			n.ps = ps
			return ps
		}
		if attempt == 1 || attempt%10 == 0 {
			n.w.log.LogAttrs(n.ctx, slog.LevelWarn, "redisstore: watch cannot reconnect",
				slog.String("addr", n.addr), slog.Int("attempt", attempt), slog.Any("err", err))
		}
		timer.Reset(backoff)
		backoff = min(2*backoff, maxBackoff)
	}
}
