package redisstore

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/herdcache/herd/store"
)

// invalidations is the channel on which Redis sends the keys that client
// tracking invalidates to a RESP2 connection that asked for them.
const invalidations = "__redis__:invalidate"

// A node follows one master over a connection of its own, with client
// tracking redirected to itself and subscribed to the invalidations; and,
// but on a Cluster, keeps a marker key on a second connection, which a
// swap or a flush of the database removes.
type node struct {
	w      *watch
	addr   string
	client *redis.Client // of its own, for the tracking connection
	ctx    context.Context
	cancel context.CancelFunc

	marker *redis.Client // of its own, for the marker; nil on a Cluster

	markerMu  sync.Mutex // one check at a time
	markerKey string     // a new name at every set: an old marker swapped back is not it

	mu        sync.Mutex
	ps        *redis.PubSub // nil while reconnecting
	stopped   bool
	running   bool                      // run began: a new connection means one was lost
	conns     map[*trackedConn]struct{} // open connections of client and marker
	runID     string                    // of the server, at the last connection
	restarted bool                      // the server's run_id changed at a connection
}

// markerTTL is how long a node's marker outlives its last check: long
// enough that a process paused for a while does not take the marker's
// expiry for a swap, short enough that a crashed process leaves no litter.
func (n *node) markerTTL() time.Duration { return max(30*n.w.ping, 30*time.Second) }

// A trackedConn is a connection of a node's clients, which the node closes
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

// newNode returns a node for the master m, with clients of its own: one
// whose every new connection enables tracking, redirected to itself, before
// it subscribes; and, if m has a client (not on a Cluster), one for the
// marker key.
func newNode(w *watch, m master) *node {
	ctx, cancel := context.WithCancel(w.ctx)
	n := &node{w: w, addr: m.opts.Addr, ctx: ctx, cancel: cancel, conns: make(map[*trackedConn]struct{})}
	opt := *m.opts
	dial := opt.Dialer
	opt.Dialer = func(ctx context.Context, network, addr string) (net.Conn, error) {
		if err := ctx.Err(); err != nil {
			return nil, err
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
	opt.PoolSize, opt.MinIdleConns, opt.MaxIdleConns, opt.MaxActiveConns = 1, 0, 0, 0
	opt.ClientSideCache, opt.ClientSideCacheConfig = nil, nil
	opt.MaintNotificationsConfig = nil
	opt.Limiter = nil
	if m.client != nil {
		mopt := opt
		mopt.ContextTimeoutEnabled = true
		n.marker = redis.NewClient(&mopt)
	}
	dialMarked := opt.Dialer
	opt.Dialer = func(ctx context.Context, network, addr string) (net.Conn, error) {
		n.mu.Lock()
		running := n.running
		n.mu.Unlock()
		if running {
			// go-redis replacing a broken connection, before it tells run
			// (on run's goroutine, so in order): say so at once.
			w.lost(n)
		}
		return dialMarked(ctx, network, addr)
	}
	userOnConnect := opt.OnConnect
	opt.OnConnect = func(ctx context.Context, cn *redis.Conn) error {
		if userOnConnect != nil {
			if err := userOnConnect(ctx, cn); err != nil {
				return err
			}
		}
		info, err := cn.Info(ctx, "server").Result()
		if err != nil {
			return fmt.Errorf("info: %w", err)
		}
		n.connected(runID(info))
		id, err := cn.ClientID(ctx).Result()
		if err != nil {
			return fmt.Errorf("client id: %w", err)
		}
		err = cn.Do(ctx, "CLIENT", "TRACKING", "ON", "REDIRECT", id, "BCAST", "PREFIX", w.prefix+"e:").Err()
		if err != nil {
			return fmt.Errorf("client tracking: %w", err)
		}
		return nil
	}
	// RESP2: the invalidations arrive as messages of the subscription.
	opt.Protocol = 2
	n.client = redis.NewClient(&opt)
	return n
}

// runID returns the run_id of an INFO reply.
func runID(info string) string {
	for line := range strings.Lines(info) {
		if id, ok := strings.CutPrefix(line, "run_id:"); ok {
			return strings.TrimSpace(id)
		}
	}
	return ""
}

// connected records the run_id of the server at a new connection: another
// one than before means the server restarted.
func (n *node) connected(id string) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.runID != "" && id != n.runID {
		n.restarted = true
	}
	n.runID = id
}

// subscribe connects, enables tracking and subscribes to the invalidations,
// within ctx.
func (n *node) subscribe(ctx context.Context) (*redis.PubSub, error) {
	// go-redis honours only ctx's deadline: closing the connection when
	// ctx ends unblocks it.
	stop := context.AfterFunc(ctx, n.closeConns)
	ps := n.client.Subscribe(ctx, invalidations)
	msg, err := ps.Receive(ctx)
	if err == nil {
		if sub, ok := msg.(*redis.Subscription); !ok || sub.Kind != "subscribe" {
			err = fmt.Errorf("unexpected reply %v", msg)
		}
	}
	if !stop() {
		_ = ps.Close()
		return nil, context.Cause(ctx)
	}
	if err != nil {
		_ = ps.Close()
		return nil, err
	}
	return ps, nil
}

// setMarker checks, on a single server or a Ring, that the node's server
// is a master, and sets the marker, within ctx. On a Cluster it does
// nothing: the client's options say whether it reads from replicas.
func (n *node) setMarker(ctx context.Context) error {
	if n.marker == nil {
		return nil
	}
	stop := context.AfterFunc(ctx, n.closeConns) // as in subscribe
	defer stop()
	cause := func(err error) error {
		if ctx.Err() != nil {
			return context.Cause(ctx) // the connection closed under the call
		}
		return err
	}
	role, err := n.marker.Do(ctx, "ROLE").Slice()
	if err != nil {
		return fmt.Errorf("role: %w", cause(err))
	}
	if len(role) == 0 || role[0] != "master" {
		return fmt.Errorf("%w: %s is not a master (ROLE %v)", ErrReplicaReads, n.addr, role)
	}
	n.markerMu.Lock()
	defer n.markerMu.Unlock()
	if err := n.newMarker(ctx); err != nil {
		return fmt.Errorf("set marker: %w", cause(err))
	}
	return nil
}

// newMarker sets a marker under a new name; on failure the node has none
// until a later check sets one. n.markerMu is held.
func (n *node) newMarker(ctx context.Context) error {
	var b [8]byte
	_, _ = rand.Read(b[:])
	key := n.w.prefix + "w:" + hex.EncodeToString(b[:])
	n.markerKey = ""
	if err := n.marker.Set(ctx, key, "1", n.markerTTL()).Err(); err != nil {
		return err
	}
	n.markerKey = key
	return nil
}

// stop ends the node: its goroutines return and close its clients.
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

// close closes the node's clients.
func (n *node) close() {
	_ = n.client.Close()
	if n.marker != nil {
		_ = n.marker.Close()
	}
}

// flushed reports whether err is go-redis's refusal of the invalidation
// message whose payload is nil: Redis's "every key", sent when a database
// is flushed (FLUSHDB, FLUSHALL, DEBUG RELOAD). The connection is fine.
func flushed(err error) bool {
	return strings.Contains(err.Error(), "unsupported pubsub message payload: <nil>")
}

// run reads the node's connection until the node stops, reporting the keys
// invalidated and the flushes, and reconnects whenever the connection is
// lost or does not answer a ping; a second goroutine checks the marker.
func (n *node) run() {
	defer n.w.wg.Done()
	n.mu.Lock()
	n.running = true
	ps := n.ps
	n.mu.Unlock()
	var markers sync.WaitGroup
	if n.marker != nil {
		markers.Go(n.checkMarkers)
	}
	defer func() {
		n.cancel()
		markers.Wait()
		n.close()
	}()
	feed := n.w.feed
	pinged := false
	for {
		msg, err := ps.ReceiveTimeout(n.ctx, n.w.ping)
		if n.ctx.Err() != nil {
			_ = ps.Close()
			return
		}
		var nerr net.Error
		switch {
		case err == nil:
			pinged = false
			if m, ok := msg.(*redis.Message); ok && m.Channel == invalidations {
				for _, k := range m.PayloadSlice {
					if key, ok := strings.CutPrefix(k, n.w.prefix+"e:"); ok {
						feed.Push(store.Change{Key: key})
					}
				}
			}
		case flushed(err):
			pinged = false
			feed.Push(store.Change{All: true})
		case !pinged && errors.As(err, &nerr) && nerr.Timeout() && ps.Ping(n.ctx) == nil:
			pinged = true
		default: // lost or silent
			n.w.lost(n)
			if ps = n.reconnect(ps, err); ps == nil {
				return
			}
			n.mu.Lock()
			restarted := n.restarted
			n.restarted = false
			n.mu.Unlock()
			// A swap or a flush while the connection was lost.
			swapped := n.marker != nil && !n.checkMarker()
			n.w.back(n, restarted || swapped)
			pinged = false
		}
	}
}

// checkMarkers checks the marker every WatchPing until the node stops.
func (n *node) checkMarkers() {
	t := time.NewTicker(n.w.ping)
	defer t.Stop()
	for {
		select {
		case <-n.ctx.Done():
			return
		case <-t.C:
		}
		if !n.checkMarker() {
			n.w.feed.Push(store.Change{All: true})
		}
	}
}

// checkMarker renews the marker's TTL and reports whether it was still
// there (or could not be read: the tracking connection judges the server's
// health). A marker gone is set again.
func (n *node) checkMarker() bool {
	ctx, cancel := context.WithTimeout(n.ctx, n.w.ping)
	defer cancel()
	n.markerMu.Lock()
	defer n.markerMu.Unlock()
	if n.markerKey == "" { // the set after the last loss failed: try again
		_ = n.newMarker(ctx)
		return true
	}
	there, err := n.marker.PExpire(ctx, n.markerKey, n.markerTTL()).Result()
	if err != nil || there {
		return true
	}
	n.w.log.LogAttrs(n.ctx, slog.LevelWarn, "redisstore: watch: the database was swapped or flushed; reporting every key as changed",
		slog.String("addr", n.addr))
	_ = n.newMarker(ctx)
	return false
}

// reconnect closes ps and subscribes again, with backoff, until it succeeds
// or the node stops (then it returns nil).
func (n *node) reconnect(ps *redis.PubSub, cause error) *redis.PubSub {
	n.mu.Lock()
	n.ps = nil
	n.mu.Unlock()
	_ = ps.Close()
	n.w.log.LogAttrs(n.ctx, slog.LevelWarn, "redisstore: watch connection lost; reconnecting",
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
