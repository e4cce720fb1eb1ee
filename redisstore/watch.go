package redisstore

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/herdcache/herd/internal/changefeed"
	"github.com/herdcache/herd/internal/check"
	"github.com/herdcache/herd/store"
)

// ErrReplicaReads is returned (wrapped) by [Store.Watch] when the store's
// client may read from replicas: a Cluster client with ReadOnly,
// RouteByLatency or RouteRandomly, or a client (a Sentinel client with
// ReplicaOnly among them) connected to a replica. A replica applies a write
// after its master has reported it, so a near tier filled from a replica
// right after a change could keep the value the change replaced.
var ErrReplicaReads = errors.New("redisstore: the client reads from replicas, which may lag the changes a watch reports; give the store a client that reads from masters")

// Tunables of a watch.
const (
	// reconnectTimeout bounds one attempt to connect a watch's node again.
	reconnectTimeout = 10 * time.Second
	// maxBackoff bounds the wait between two attempts.
	maxBackoff = 2 * time.Second
)

// Watch calls fn with every change of the store's entries from the moment
// it returns on, under the rules of [store.ChangeStream]: the keys written,
// deleted, expired or evicted on the server by any client, this process
// included, in the order each master reports them (changes of keys on
// different Cluster masters or Ring shards have no order between them), with
// Version zero (Redis says which keys changed, not to what). See "Changes"
// in the package documentation for how.
//
//   - Down: a master's tracking connection was lost, or did not answer a
//     ping within [WatchPing].
//   - Gap: once every master's connection is back, with tracking enabled
//     again before the Gap, so that nothing is missed from then on; also
//     when a new master joins a Cluster (a failover, a resharding), for the
//     keys it wrote before its connection began. Redis keeps no record to
//     replay: the keys changed meanwhile are unknown.
//   - All: the server flushed a database (FLUSHDB, FLUSHALL, DEBUG RELOAD),
//     swapped one (SWAPDB, found within [WatchPing] by a marker key the
//     watch keeps; not on Cluster, which has no SWAPDB), or restarted (its
//     run_id changed); and as [store.ChangeStream] says for every store
//     (a queue of 16,384 changes overflowed, a panic in fn, logged with the
//     key "err").
//
// Watch returns once every master's connection has tracking enabled and is
// subscribed, or an error: when ctx ends first, when a server cannot be
// reached or refuses tracking (Redis before 6), when the client is of a kind
// the store cannot follow, one wrapping [ErrReplicaReads] when the client
// may read from replicas, or [ErrClosed] after [Store.Close]. ctx bounds
// only the start. The watch runs until its Close or the store's Close.
func (s *Store[T]) Watch(ctx context.Context, fn func(store.Change)) (store.Watch, error) {
	checkCtx(ctx)
	check.That(fn != nil, "redisstore", "Watch needs a function, got nil")
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil, ErrClosed
	}
	s.pending.Add(1)
	wctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	w := &watch{
		prefix: s.prefix,
		log:    s.log,
		ping:   s.ping,
		ctx:    wctx,
		cancel: cancel,
		look:   make(chan struct{}, 1),
		nodes:  make(map[string]*node),
		down:   make(map[*node]struct{}),
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
		err := w.start(ctx, s.client, fn)
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

// A watch is a running [Store.Watch]: a node per master, each reading its
// own connection, that push changes to one feed; and, on a Cluster or a
// Ring, a goroutine that follows the masters.
type watch struct {
	prefix string // the store's, with its ':'
	log    *slog.Logger
	ping   time.Duration
	ctx    context.Context // ends with Close
	cancel context.CancelFunc
	look   chan struct{} // buffered(1): a node was lost, look at the masters now
	forget func(*watch)
	once   sync.Once
	wg     sync.WaitGroup // every goroutine of the watch but the feed's

	mu     sync.Mutex
	feed   *changefeed.Feed   // nil until the nodes are up
	nodes  map[string]*node   // by address
	down   map[*node]struct{} // nodes whose connection is lost
	closed bool
}

// start checks that client reads from masters, connects to every master,
// and starts the feed and the goroutines.
func (w *watch) start(ctx context.Context, client redis.UniversalClient, fn func(store.Change)) error {
	// Connecting honours ctx and ends with the watch.
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	defer context.AfterFunc(w.ctx, cancel)()
	if err := readsFromMasters(client); err != nil {
		return err
	}
	ms, err := masters(ctx, client)
	if err != nil {
		return err
	}
	if len(ms) == 0 {
		return errors.New("no master to follow")
	}
	nodes := make([]*node, len(ms))
	errs := make([]error, len(ms))
	var wg sync.WaitGroup
	for i, m := range ms {
		wg.Go(func() { nodes[i], errs[i] = w.connect(ctx, m) })
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		for _, n := range nodes {
			if n != nil {
				n.stop()
				n.close()
			}
		}
		return err
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.closed {
		for _, n := range nodes {
			n.stop()
			n.close()
		}
		return ErrClosed
	}
	w.feed = changefeed.New(fn, w.log, "redisstore")
	for _, n := range nodes {
		w.runLocked(n)
	}
	if _, ok := client.(*redis.Client); !ok {
		w.wg.Add(1)
		go w.follow(client)
	}
	return nil
}

// connect connects a node to the master m: on a single server or a Ring,
// checks that it is a master and sets the marker; then enables tracking and
// subscribes.
func (w *watch) connect(ctx context.Context, m master) (*node, error) {
	n := newNode(w, m)
	err := n.setMarker(ctx)
	var ps *redis.PubSub
	if err == nil {
		ps, err = n.subscribe(ctx)
	}
	if err != nil {
		n.close()
		return nil, fmt.Errorf("%s: %w", m.opts.Addr, err)
	}
	n.ps = ps
	return n, nil
}

// runLocked makes n the node of its master and starts its goroutine; a node
// of the same address that it replaces is stopped. w.mu is held.
func (w *watch) runLocked(n *node) {
	if old := w.nodes[n.addr]; old != nil { // a master met again
		w.removeLocked(old)
		old.stop()
	}
	w.nodes[n.addr] = n
	w.wg.Add(1)
	go n.run()
}

// lost records that n's connection is lost: the stream is down until every
// lost node is back or gone.
func (w *watch) lost(n *node) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.nodes[n.addr] != n {
		return // n was replaced or stopped: its loss is no news
	}
	w.down[n] = struct{}{}
	w.feed.Push(store.Change{Down: true})
	select {
	case w.look <- struct{}{}:
	default:
	}
}

// back records that n's connection is back, with tracking enabled, and
// reports a Gap once no node is down. restarted says the server is another
// process than before: its dataset may be anything.
func (w *watch) back(n *node, restarted bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.nodes[n.addr] != n {
		return
	}
	if restarted {
		w.feed.Push(store.Change{All: true})
	}
	delete(w.down, n)
	if len(w.down) == 0 {
		w.feed.Push(store.Change{Gap: true})
	}
}

// removeLocked forgets n, a node stopped because its server is no longer a
// master; the stream is no longer down for its loss. w.mu is held.
func (w *watch) removeLocked(n *node) {
	if w.nodes[n.addr] == n {
		delete(w.nodes, n.addr)
	}
	if _, ok := w.down[n]; ok {
		delete(w.down, n)
		if len(w.down) == 0 {
			w.feed.Push(store.Change{Gap: true})
		}
	}
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
	w.mu.Lock()
	f := w.feed
	w.mu.Unlock()
	if f != nil {
		f.Close() // the deliveries end here; the nodes' goroutines below
	}
	w.wg.Wait()
	return nil
}
