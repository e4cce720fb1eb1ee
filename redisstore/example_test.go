package redisstore_test

import (
	"context"
	"fmt"
	"log"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/herdcache/herd"
	"github.com/herdcache/herd/redisstore"
)

type User struct {
	ID   string `json:"id"`
	Name string `json:"name"`
}

func loadUser(_ context.Context, id string) (User, error) {
	return User{ID: id, Name: "Ada"}, nil // from the database
}

// A cache of users shared by every instance of a service: one load per key
// across the fleet, entries refreshed in the background by one instance, and
// served stale for an hour if the database is down.
//
// This example needs a Redis server on localhost:6379, so it is compiled but
// not run by go test.
func Example() {
	ctx := context.Background()
	client := redis.NewClient(&redis.Options{
		Addr:                  "localhost:6379",
		ContextTimeoutEnabled: true, // calls return by their context's deadline
		ReadTimeout:           500 * time.Millisecond,
		WriteTimeout:          500 * time.Millisecond,
	})
	defer client.Close() // the caller owns the client; the store never closes it

	users, err := redisstore.New[User](client, redisstore.Prefix("myapp-users"))
	if err != nil {
		log.Print(err)
		return
	}
	cache := herd.New(users,
		herd.TTL(10*time.Minute), herd.RefreshAfter(time.Minute), herd.StaleIfError(time.Hour),
		herd.WithLocker(users, 10*time.Second))
	defer cache.Close(ctx)

	u, err := cache.Get(ctx, "42", loadUser)
	if err != nil {
		log.Print(err)
		return
	}
	fmt.Println(u.Name)
}

// Dropping a local copy of an entry whenever another instance changes it.
// Compiled, not run: it needs a Redis server.
func ExampleStore_Subscribe() {
	ctx := context.Background()
	client := redis.NewClient(&redis.Options{Addr: "localhost:6379", ContextTimeoutEnabled: true})
	defer client.Close()
	users, err := redisstore.New[User](client, redisstore.Prefix("myapp-users"))
	if err != nil {
		log.Print(err)
		return
	}
	sub, err := users.Subscribe(ctx, func(key string) {
		fmt.Println("changed elsewhere:", key) // drop the local copy of key
	})
	if err != nil {
		log.Print(err)
		return
	}
	defer sub.Close()

	// Elsewhere, after a write to the source of truth:
	if err := users.Publish(ctx, "42"); err != nil {
		log.Print(err)
	}
}
