package natsstore_test

import (
	"context"
	"errors"
	"fmt"
	"log"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/herdcache/herd"
	"github.com/herdcache/herd/natsstore"
	"github.com/herdcache/herd/store"
)

// A cache shared by a fleet through a JetStream KV bucket: one load per key
// across every process, with the store as the cache's Locker. The client
// settings make a dead or hung server cost a load within seconds rather
// than a wait of minutes. (No Output line: it needs a running nats-server.)
func Example() {
	nc, err := nats.Connect(nats.DefaultURL,
		nats.MaxReconnects(-1), nats.ReconnectWait(time.Second),
		nats.PingInterval(5*time.Second), nats.MaxPingsOutstanding(2),
		nats.FlusherTimeout(time.Second))
	if err != nil {
		log.Fatal(err)
	}
	defer nc.Close() // the caller owns the connection; the store never closes it
	js, err := jetstream.New(nc, jetstream.WithDefaultTimeout(time.Second))
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
	defer c.Close(ctx) // also closes the store

	name, err := c.Get(ctx, "user:42", func(ctx context.Context, key string) (string, error) {
		return "Ada", nil // the slow source of truth
	})
	fmt.Println(name, err)
}

func exampleStore() *natsstore.Store[string] {
	nc, err := nats.Connect(nats.DefaultURL)
	if err != nil {
		log.Fatal(err)
	}
	js, err := jetstream.New(nc)
	if err != nil {
		log.Fatal(err)
	}
	s, err := natsstore.New[string](context.Background(), js, "users")
	if err != nil {
		log.Fatal(err)
	}
	return s
}

// A conditional write-back: the value loaded is written only if nothing
// wrote the key since its version was read, anywhere in the fleet.
func ExampleStore_SetIf() {
	s := exampleStore()
	ctx := context.Background()
	_, v, _, err := s.GetVersion(ctx, "user:42")
	if err != nil {
		log.Fatal(err)
	}
	loaded := "Ada" // from the source, which took a while
	err = s.SetIf(ctx, "user:42", store.Entry[string]{Value: loaded, StoredAt: time.Now()}, v)
	switch {
	case errors.Is(err, store.ErrConflict):
		fmt.Println("a newer write won; the load is not written")
	case err != nil:
		log.Fatal(err)
	}
}

// A batch of loads written back with one wait for all the acks: each key
// is written only if nothing wrote it since its version was read.
func ExampleStore_WriteIf() {
	s := exampleStore()
	ctx := context.Background()
	keys := []string{"user:1", "user:2"}
	var writes []store.ConditionalWrite[string]
	for i, r := range s.GetVersions(ctx, keys) {
		if r.Err != nil || r.Found {
			continue // a failure, or a hit: nothing to load
		}
		loaded := "Ada" // from the source
		writes = append(writes, store.ConditionalWrite[string]{Key: keys[i], Version: r.Version, Entry: store.Entry[string]{Value: loaded, StoredAt: time.Now()}})
	}
	for i, err := range s.WriteIf(ctx, writes) {
		switch {
		case errors.Is(err, store.ErrConflict):
			fmt.Println(writes[i].Key, "written meanwhile; the load is not written")
		case err != nil:
			log.Print(err)
		}
	}
}

// Following every change of the bucket's keys, whoever made it, to drop
// local copies.
func ExampleStore_Watch() {
	s := exampleStore()
	local := map[string]string{} // touched by fn only: it runs on one goroutine
	w, err := s.Watch(context.Background(), func(c store.Change) {
		if c.All {
			clear(local) // the watch cannot vouch for what it missed
			return
		}
		delete(local, c.Key)
	})
	if err != nil {
		log.Fatal(err)
	}
	defer w.Close()
}

// Reading many keys at once; on an error, the entries read are still
// returned.
func ExampleStore_GetMany() {
	s := exampleStore()
	found, err := s.GetMany(context.Background(), []string{"user:1", "user:2", "user:1"})
	if err != nil {
		log.Print(err) // some keys were not read: treat them as missing
	}
	for k, e := range found {
		fmt.Println(k, e.Value)
	}
}
