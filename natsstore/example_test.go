package natsstore_test

import (
	"context"
	"fmt"
	"log"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/herdcache/herd"
	"github.com/herdcache/herd/natsstore"
)

// A cache shared by a fleet through a JetStream KV bucket: one load per key
// across every process, with the store as the cache's Locker. (No Output
// line: it needs a running nats-server.)
func Example() {
	nc, err := nats.Connect(nats.DefaultURL, nats.MaxReconnects(-1))
	if err != nil {
		log.Fatal(err)
	}
	defer nc.Close() // the caller owns the connection; the store never closes it
	js, err := jetstream.New(nc)
	if err != nil {
		fmt.Println(err)
		return
	}
	ctx := context.Background()
	s, err := natsstore.New[string](ctx, js, "users")
	if err != nil {
		fmt.Println(err)
		return
	}
	c := herd.New[string](s, herd.TTL(time.Minute), herd.WithLocker(s, 10*time.Second))
	defer c.Close(ctx) // also stops the store's own goroutines

	name, err := c.Get(ctx, "user:42", func(ctx context.Context, key string) (string, error) {
		return "Ada", nil // the slow source of truth
	})
	fmt.Println(name, err)
}
