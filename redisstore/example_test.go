package redisstore_test

import (
	"context"
	"errors"
	"fmt"
	"log"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/herdcache/herd"
	"github.com/herdcache/herd/redisstore"
	"github.com/herdcache/herd/store"
)

type User struct {
	ID   string `json:"id"`
	Name string `json:"name"`
}

func loadUser(_ context.Context, id string) (User, error) {
	return User{ID: id, Name: "Ada"}, nil // from the database
}

// newRedisClient is a client set up so that a Redis server that is down or
// stopped answering costs a cache a load within its callers' deadlines, not
// a wait of the client's defaults (see "Client settings" in the package
// documentation).
func newRedisClient(addr string) *redis.Client {
	return redis.NewClient(&redis.Options{
		Addr:                  addr,
		ContextTimeoutEnabled: true,                   // calls end at their context's deadline
		DialTimeout:           500 * time.Millisecond, // default 5s
		DialerRetries:         1,                      // default 5 dials per call
		ReadTimeout:           500 * time.Millisecond, // default 5s
		WriteTimeout:          500 * time.Millisecond, // default ReadTimeout
		PoolTimeout:           time.Second,            // default ReadTimeout + 1s
		MaxRetries:            1,                      // default 3
	})
}

// A cache of users shared by every instance of a service: one load per key
// across the fleet, entries refreshed in the background by one instance, and
// served stale for an hour if the database is down.
//
// This example needs a Redis server on localhost:6379, so it is compiled but
// not run by go test.
func Example() {
	ctx := context.Background()
	client := newRedisClient("localhost:6379")
	defer client.Close() // the caller owns the client; the store never closes it

	users := redisstore.New[User](client, redisstore.Prefix("myapp-users"))
	defer users.Close(ctx)
	cache := herd.New(users,
		herd.TTL(10*time.Minute), herd.RefreshAfter(time.Minute), herd.StaleIfError(time.Hour),
		herd.StoreTimeout(200*time.Millisecond), herd.WithLocker(users, 10*time.Second))
	defer cache.Close(ctx)

	u, err := cache.Get(ctx, "42", loadUser)
	if err != nil {
		log.Print(err)
		return
	}
	fmt.Println(u.Name)
}

// Dropping local copies of entries whenever any client changes them in
// Redis, or they expire there. Compiled, not run: it needs a Redis server.
func ExampleStore_Watch() {
	ctx := context.Background()
	client := newRedisClient("localhost:6379")
	defer client.Close()
	users := redisstore.New[User](client, redisstore.Prefix("myapp-users"))
	defer users.Close(ctx)

	w, err := users.Watch(ctx, func(c store.Change) {
		switch {
		case c.All:
			fmt.Println("drop every local copy")
		case c.Down:
			fmt.Println("the stream is cut: changes may go unreported")
		case c.Gap:
			fmt.Println("back: check every local copy's version, or drop it")
		case c.Up: // Redis reports Gap, never Up
		default:
			fmt.Println("changed:", c.Key) // drop the local copy of c.Key
		}
	})
	if err != nil {
		log.Print(err)
		return
	}
	defer w.Close()

	// Any write of the key, by this process or another, with herd or not:
	if err := users.Set(ctx, "42", store.Entry[User]{Value: User{ID: "42", Name: "Ada"}}); err != nil {
		log.Print(err)
	}
}

// Writing a loaded value back only if nobody wrote the key since the load
// began. Compiled, not run: it needs a Redis server.
func ExampleStore_SetIf() {
	ctx := context.Background()
	client := newRedisClient("localhost:6379")
	defer client.Close()
	users := redisstore.New[User](client, redisstore.Prefix("myapp-users"))

	_, v, ok, err := users.GetVersion(ctx, "42")
	if err != nil || ok {
		return // an error, or a hit: nothing to load
	}
	u, _ := loadUser(ctx, "42")
	err = users.SetIf(ctx, "42", store.Entry[User]{Value: u, StoredAt: time.Now()}, v)
	switch {
	case errors.Is(err, store.ErrConflict):
		fmt.Println("written meanwhile; the newer write stays")
	case err != nil:
		log.Print(err)
	}
}

// Reading many keys in one round trip.
func ExampleStore_GetMany() {
	ctx := context.Background()
	client := newRedisClient("localhost:6379")
	defer client.Close()
	users := redisstore.New[User](client, redisstore.Prefix("myapp-users"))

	found, err := users.GetMany(ctx, []string{"1", "2", "3"})
	if err != nil {
		log.Print(err) // found still holds what was read
	}
	for id, e := range found {
		fmt.Println(id, e.Value.Name)
	}
}

// A batch of loads under the fleet's locks, in a round trip per step: lock
// the keys (another process loads those it holds), read their entries and
// versions, load the misses, write them back where nothing wrote the key
// meanwhile, unlock. Compiled, not run: it needs a Redis server.
func ExampleStore_WriteIf() {
	ctx := context.Background()
	client := newRedisClient("localhost:6379")
	defer client.Close()
	users := redisstore.New[User](client, redisstore.Prefix("myapp-users"))

	ids := []string{"1", "2", "3"}
	var (
		mine  []string
		locks []store.Lock
	)
	for i, r := range users.TryLockMany(ctx, ids, 10*time.Second) {
		if r.Err == nil { // ErrLocked: another process loads it
			mine, locks = append(mine, ids[i]), append(locks, r.Lock)
		}
	}
	defer users.UnlockMany(ctx, locks)
	var writes []store.ConditionalWrite[User]
	for i, r := range users.GetVersions(ctx, mine) {
		if r.Err != nil || r.Found {
			continue // a failure, or a hit: nothing to load
		}
		u, _ := loadUser(ctx, mine[i])
		writes = append(writes, store.ConditionalWrite[User]{Key: mine[i], Version: r.Version, Entry: store.Entry[User]{Value: u, StoredAt: time.Now()}})
	}
	for i, err := range users.WriteIf(ctx, writes) {
		if errors.Is(err, store.ErrConflict) {
			fmt.Println(writes[i].Key, "written meanwhile; the newer write stays")
		}
	}
}

// A lease on a key across processes, with a fencing token that grows with
// every acquisition. Compiled, not run: it needs a Redis server.
func ExampleStore_TryLock() {
	ctx := context.Background()
	client := newRedisClient("localhost:6379")
	defer client.Close()
	jobs := redisstore.New[string](client, redisstore.Prefix("myapp-jobs"))

	l, err := jobs.TryLock(ctx, "nightly-report", 30*time.Second)
	switch {
	case errors.Is(err, store.ErrLocked):
		fmt.Println("another process runs it")
		return
	case err != nil:
		log.Print(err)
		return
	}
	defer func() { _ = l.Unlock(ctx) }()
	fmt.Println("running with fencing token", l.Token())
}

// A store needs a valid Prefix: no ':', '{' or '}'. An invalid one is a
// programming error, caught when the option is built.
func ExamplePrefix() {
	defer func() { fmt.Println(recover()) }()
	redisstore.Prefix("myapp:users")
	// Output: redisstore: Prefix must be non-empty without ':', '{' or '}', got "myapp:users"
}
