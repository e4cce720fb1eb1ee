package redisstore

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/herdcache/herd/store"
)

const (
	// topologyEvery is how often a watch on a Cluster or Ring looks for
	// masters added or removed while every node is connected.
	topologyEvery = 2 * time.Second
	// topologyLost is how often it looks while a node is down: a Cluster
	// that promotes a replica of a lost master is followed that soon.
	topologyLost = 100 * time.Millisecond
)

// A master is a server a watch follows: the options to connect to it, and
// a client of it for the watch's marker key, nil on a Cluster (which has
// neither SWAPDB nor databases to swap).
type master struct {
	opts   *redis.Options
	client *redis.Client
}

// masters returns the masters of client. On a Cluster, it reloads the
// client's slot map first, so that the client itself follows a failover
// as soon as the watch does.
func masters(ctx context.Context, client redis.UniversalClient) ([]master, error) {
	var (
		mu sync.Mutex
		ms []master
	)
	each := func(marker bool) func(context.Context, *redis.Client) error {
		return func(_ context.Context, c *redis.Client) error {
			m := master{opts: c.Options()}
			if marker {
				m.client = c
			}
			mu.Lock()
			ms = append(ms, m)
			mu.Unlock()
			return nil
		}
	}
	var err error
	switch c := client.(type) {
	case *redis.Client:
		return []master{{opts: c.Options(), client: c}}, nil
	case *redis.ClusterClient:
		err = c.ForEachMaster(ctx, each(false)) // reloads the slot map
	case *redis.Ring:
		err = c.ForEachShard(ctx, each(true))
	default:
		return nil, fmt.Errorf("cannot follow the masters of a %T", client)
	}
	return ms, err
}

// readsFromMasters returns an error wrapping ErrReplicaReads if client is
// a Cluster client that routes reads to replicas. (A node checks the role
// of the server it follows when it connects: see node.master.)
func readsFromMasters(client redis.UniversalClient) error {
	if c, ok := client.(*redis.ClusterClient); ok {
		if o := c.Options(); o.ReadOnly || o.RouteByLatency || o.RouteRandomly {
			return fmt.Errorf("%w (ReadOnly %v, RouteByLatency %v, RouteRandomly %v)",
				ErrReplicaReads, o.ReadOnly, o.RouteByLatency, o.RouteRandomly)
		}
	}
	return nil
}

// follow starts a node for every master that joins the Cluster or Ring,
// and stops the nodes of masters that left, looking every topologyEvery,
// and every topologyLost while a node is down.
func (w *watch) follow(client redis.UniversalClient) {
	defer w.wg.Done()
	t := time.NewTimer(topologyEvery)
	defer t.Stop()
	for {
		select {
		case <-w.ctx.Done():
			return
		case <-t.C:
		case <-w.look:
		}
		w.lookAtMasters(client)
		w.mu.Lock()
		next := topologyEvery
		if len(w.down) > 0 {
			next = topologyLost
		}
		w.mu.Unlock()
		t.Reset(next)
	}
}

// lookAtMasters reads the masters of client, starts a node for each new
// one and stops those of masters that left.
func (w *watch) lookAtMasters(client redis.UniversalClient) {
	ctx, cancel := context.WithTimeout(w.ctx, reconnectTimeout)
	defer cancel()
	ms, err := masters(ctx, client)
	if err != nil {
		return // the nodes find what is broken
	}
	now := make(map[string]bool, len(ms))
	joined := false
	for _, m := range ms {
		now[m.opts.Addr] = true
		w.mu.Lock()
		_, known := w.nodes[m.opts.Addr]
		w.mu.Unlock()
		if known {
			continue
		}
		n, err := w.connect(ctx, m)
		if err != nil {
			w.log.LogAttrs(w.ctx, slog.LevelWarn, "redisstore: watch: new master",
				slog.String("addr", m.opts.Addr), slog.Any("err", err))
			continue
		}
		w.mu.Lock()
		if w.closed {
			w.mu.Unlock()
			n.stop()
			n.close()
			return
		}
		w.runLocked(n)
		w.mu.Unlock()
		joined = true
	}
	var gone []*node
	w.mu.Lock()
	defer w.mu.Unlock()
	wasDown := len(w.down) > 0
	for addr, n := range w.nodes {
		if !now[addr] {
			w.removeLocked(n)
			gone = append(gone, n)
		}
	}
	if joined && !wasDown {
		// The new masters' keys may have changed before their nodes
		// began. With a node down, the Gap that ends the Down says it.
		w.feed.Push(store.Change{Gap: true})
	}
	for _, n := range gone {
		n.stop()
	}
}
