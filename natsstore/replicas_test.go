package natsstore_test

import (
	"context"
	"fmt"
	"log/slog"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/herdcache/herd/natsstore"
	"github.com/herdcache/herd/store"
)

// newReplicated opens a store of strings on a bucket of the given replicas
// through js, retrying while the cluster places the bucket.
func newReplicated(t *testing.T, js jetstream.JetStream, bucket string, replicas int) *natsstore.Store[string] {
	t.Helper()
	var (
		s   *natsstore.Store[string]
		err error
	)
	waitFor(t, 20*time.Second, "the bucket placed", func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		s, err = natsstore.New[string](ctx, js, bucket, natsstore.Replicas(replicas), natsstore.WithLogger(slog.New(slog.DiscardHandler)))
		return err == nil
	})
	t.Cleanup(func() { _ = s.Close(context.Background()) })
	return s
}

// On a bucket of three replicas, the store reads from the stream's leader
// (a JetStream API get) and never by a direct get, which a follower that has
// not applied the change just reported could answer; on one replica, reads
// are direct gets. Seen by a client that listens to both kinds of request.
func TestReplicatedBucketReadsFromTheLeader(t *testing.T) {
	c := startCluster(t)
	ctx := context.Background()
	spy, _ := connect(t, c.url(1))
	var direct, leader atomic.Int64
	count := func(n *atomic.Int64) nats.MsgHandler { return func(*nats.Msg) { n.Add(1) } }
	for subj, n := range map[string]*atomic.Int64{
		"$JS.API.DIRECT.GET.>":     &direct,
		"$JS.API.STREAM.MSG.GET.>": &leader,
	} {
		if _, err := spy.Subscribe(subj, count(n)); err != nil {
			t.Fatal(err)
		}
	}
	if err := spy.Flush(); err != nil {
		t.Fatal(err)
	}
	_, js := connect(t, c.url(0))
	for _, tc := range []struct {
		replicas             int
		wantDirect, wantLead int64
	}{{3, 0, 3}, {1, 3, 0}} {
		s := newReplicated(t, js, fmt.Sprintf("r%d", tc.replicas), tc.replicas)
		if err := s.Set(ctx, "k", store.Entry[string]{Value: "v"}); err != nil {
			t.Fatal(err)
		}
		direct.Store(0)
		leader.Store(0)
		if e, ok, err := s.Get(ctx, "k"); err != nil || !ok || e.Value != "v" {
			t.Fatalf("Get on %d replicas = %+v, %v, %v", tc.replicas, e, ok, err)
		}
		if _, v, ok, err := s.GetVersion(ctx, "k"); err != nil || !ok || v == 0 {
			t.Fatalf("GetVersion on %d replicas = %d, %v, %v", tc.replicas, v, ok, err)
		}
		if _, ok, err := s.Get(ctx, "absent"); err != nil || ok {
			t.Fatalf("Get of an absent key on %d replicas = %v, %v", tc.replicas, ok, err)
		}
		waitFor(t, 10*time.Second, "the spy to see the three reads", func() bool {
			return direct.Load()+leader.Load() >= 3
		})
		if d, l := direct.Load(), leader.Load(); d != tc.wantDirect || l != tc.wantLead {
			t.Fatalf("%d replicas: %d direct gets and %d leader gets, want %d and %d", tc.replicas, d, l, tc.wantDirect, tc.wantLead)
		}
	}
}

// On a bucket of three replicas, the server leading its stream killed: the
// watch, connected to another server, reports Down if it lost its consumer,
// resumes on a new one from where it left off, reports Up with the changes
// made meanwhile and no loss, and changes arrive after.
func TestReplicatedBucketLeaderKilled(t *testing.T) {
	c := startCluster(t)
	ctx := context.Background()
	_, admin := connect(t, c.url(0))
	newReplicated(t, admin, "lead", 3) // creates the bucket
	stream, err := admin.Stream(ctx, "KV_lead")
	if err != nil {
		t.Fatal(err)
	}
	info, err := stream.Info(ctx)
	if err != nil || info.Cluster == nil {
		t.Fatalf("stream info: %+v, %v", info, err)
	}
	lead := -1
	for i := range c.srvs {
		if fmt.Sprintf("herd-%d", i) == info.Cluster.Leader {
			lead = i
		}
	}
	if lead < 0 {
		t.Fatalf("leader %q is none of the servers", info.Cluster.Leader)
	}
	_, pubJS := connect(t, c.url(lead+1))
	_, subJS := connect(t, c.url(lead+2))
	pub := newReplicated(t, pubJS, "lead", 3)
	sub := newReplicated(t, subJS, "lead", 3)
	got := watchChanges(t, sub)
	if err := pub.Set(ctx, "before", store.Entry[string]{Value: "v"}); err != nil {
		t.Fatal(err)
	}
	got.key(t, "before")
	c.srvs[lead].Shutdown()
	waitFor(t, 30*time.Second, "a write after the leader went", func() bool {
		wctx, cancel := context.WithTimeout(ctx, time.Second)
		defer cancel()
		return pub.Set(wctx, "during", store.Entry[string]{Value: "v"}) == nil
	})
	// The watch lost its consumer if the consumer was on the leader: then a
	// Down, a replay with "during" and Up. Else "during" comes as it is.
	for delivered := false; !delivered; {
		c := got.next(t, 30*time.Second, "the change made after the leader went")
		switch {
		case c.All || c.Gap:
			t.Fatalf("%+v after the leader went: the watch should resume", c)
		case c.Down:
			// The watch may resume before or after "during" is written: in
			// the replay before Up, or as a change after it. A resumption
			// from the wrong place never delivers it and fails below.
			t.Log("the consumer was lost with the leader: Down, then a replay")
			for _, r := range got.until(t, 30*time.Second, "Up", isUp) {
				if r.All || r.Gap || r.Down {
					t.Fatalf("a loss while resuming: %+v", r)
				}
				delivered = delivered || r.Key == "during"
			}
		case c.Key == "during":
			delivered = true
		}
	}
	waitFor(t, 30*time.Second, "a write after the resumption", func() bool {
		wctx, cancel := context.WithTimeout(ctx, time.Second)
		defer cancel()
		return pub.Set(wctx, "after", store.Entry[string]{Value: "v"}) == nil
	})
	for {
		c := got.next(t, 30*time.Second, "after")
		if c.All || c.Gap {
			t.Fatalf("%+v after the resumption", c)
		}
		if c.Key == "after" {
			return
		}
	}
}
