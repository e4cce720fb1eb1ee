package herd_test

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/herdcache/herd"
	"github.com/herdcache/herd/store/memory"
)

type User struct {
	ID   string
	Name string
}

func ExampleNew() {
	ctx := context.Background()
	users := herd.New(memory.New[User](memory.MaxEntries(100_000)),
		herd.TTL(10*time.Minute), herd.RefreshAfter(time.Minute), herd.StaleIfError(time.Hour))
	defer users.Close(ctx)

	loadUser := func(ctx context.Context, id string) (User, error) {
		fmt.Println("loading", id) // a database query
		return User{ID: id, Name: "Ada"}, nil
	}
	for range 3 {
		u, err := users.Get(ctx, "user:42", loadUser)
		fmt.Println(u.Name, err)
	}
	fmt.Println("loads:", users.Stats().Loads)
	// Output:
	// loading user:42
	// Ada <nil>
	// Ada <nil>
	// Ada <nil>
	// loads: 1
}

func ExampleCache_Get_notFound() {
	ctx := context.Background()
	users := herd.New(memory.New[User](), herd.TTL(time.Minute), herd.NegativeTTL(30*time.Second))
	defer users.Close(ctx)

	loadUser := func(ctx context.Context, id string) (User, error) {
		fmt.Println("query", id)
		return User{}, fmt.Errorf("no row for %s: %w", id, herd.ErrNotFound)
	}
	for range 2 {
		_, err := users.Get(ctx, "user:0", loadUser)
		fmt.Println(errors.Is(err, herd.ErrNotFound))
	}
	// Output:
	// query user:0
	// true
	// true
}

// With RefreshAfter, a stale value is returned at once while one background
// refresh replaces it.
func ExampleRefreshAfter() {
	ctx := context.Background()
	s := memory.New[string]()
	config := herd.New(s, herd.TTL(time.Hour), herd.RefreshAfter(time.Nanosecond))

	refreshing := make(chan struct{}, 1)
	load := func(context.Context, string) (string, error) {
		refreshing <- struct{}{}
		return "config v2", nil
	}
	_ = config.Set(ctx, "config", "config v1") // as if loaded a moment ago
	r, _ := config.Fetch(ctx, "config", load)  // stale: returned at once, refresh queued
	fmt.Println(r.Value, r.Status)

	<-refreshing          // a worker runs the refresh
	_ = config.Close(ctx) // and Close waits for it
	e, _, _ := s.Get(ctx, "config")
	fmt.Println(e.Value)
	// Output:
	// config v1 stale
	// config v2
}

// With StaleIfError, an expired value is served when the source is down.
func ExampleStaleIfError() {
	ctx := context.Background()
	prices := herd.New(memory.New[int](), herd.TTL(time.Nanosecond), herd.StaleIfError(time.Hour))
	defer prices.Close(ctx)

	_ = prices.Set(ctx, "sku:1", 1299) // loaded earlier; its TTL has passed
	down := func(context.Context, string) (int, error) {
		return 0, errors.New("pricing service unavailable")
	}
	r, err := prices.Fetch(ctx, "sku:1", down)
	fmt.Println(r.Value, r.Status, err)
	// Output:
	// 1299 stale-on-error <nil>
}

func ExampleCache_Fetch() {
	ctx := context.Background()
	pages := herd.New(memory.New[string](), herd.TTL(time.Minute))
	defer pages.Close(ctx)

	load := func(context.Context, string) (string, error) { return "<html>…</html>", nil }
	r, _ := pages.Fetch(ctx, "/home", load)
	fmt.Println(r.Status, r.Age())

	_ = pages.Set(ctx, "/about", "<html>…</html>")
	r, _ = pages.Fetch(ctx, "/about", load)
	// r.Age() fits an HTTP Age header: int(r.Age().Seconds()).
	fmt.Println(r.Status, r.Age() < time.Second)
	// Output:
	// loaded 0s
	// fresh true
}

// A loader that knows how long its answer is good for, here from an HTTP
// Cache-Control: max-age=30, says so with SetTTL.
func ExampleSetTTL() {
	ctx := context.Background()
	s := memory.New[string]()
	rates := herd.New(s, herd.TTL(time.Hour))
	defer rates.Close(ctx)

	load := func(ctx context.Context, key string) (string, error) {
		herd.SetTTL(ctx, 30*time.Second)
		return "1.0842", nil
	}
	v, _ := rates.Get(ctx, "EUR/USD", load)
	e, _, _ := s.Get(ctx, "EUR/USD")
	fmt.Println(v, e.ExpiresAt.Sub(e.StoredAt))
	// Output: 1.0842 30s
}
