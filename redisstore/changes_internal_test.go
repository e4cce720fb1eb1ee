package redisstore

import (
	"context"
	"fmt"
	"log/slog"
	"testing"

	"github.com/herdcache/herd/store"
)

// More changes waiting for a slow fn than the queue holds: they are dropped
// for one All, delivered before anything that comes after.
func TestQueueOverflowIsAll(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var got []store.Change
	entered, release, finished := make(chan struct{}), make(chan struct{}), make(chan struct{})
	w := &watch{
		fn: func(c store.Change) {
			got = append(got, c)
			switch c.Key {
			case "first":
				close(entered)
				<-release
			case "last":
				close(finished)
			}
		},
		log:  slog.New(slog.DiscardHandler),
		ctx:  ctx,
		wake: make(chan struct{}, 1),
	}
	w.wg.Add(1)
	go w.deliver()
	w.push(store.Change{Key: "first"})
	<-entered
	for i := range maxQueued + 1 {
		w.push(store.Change{Key: fmt.Sprint(i)})
	}
	w.push(store.Change{Key: "last"})
	close(release)
	<-finished
	cancel()
	w.wg.Wait()
	want := []store.Change{{Key: "first"}, {All: true}, {Key: "last"}}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("delivered %v, want %v", got, want)
	}
}
