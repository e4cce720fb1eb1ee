package herd_test

import (
	"context"
	"fmt"
	"time"

	"github.com/herdcache/herd"
	"github.com/herdcache/herd/store/memory"
)

// A loader can tell a background refresh from a load a caller waits for,
// for example to log or trace them apart.
func ExampleRefreshing() {
	ctx := context.Background()
	c := herd.New[string](memory.New[string](), herd.RefreshAfter(time.Nanosecond))
	defer c.Close(ctx)
	refreshed := make(chan struct{}, 1)
	load := func(ctx context.Context, key string) (string, error) {
		if herd.Refreshing(ctx) {
			select {
			case refreshed <- struct{}{}:
			default:
			}
			return "refreshed", nil
		}
		return "loaded", nil
	}
	v, _ := c.Get(ctx, "k", load)
	fmt.Println(v)
	for ran := false; !ran; { // the entry is stale a nanosecond after its load
		_, _ = c.Get(ctx, "k", load) // a stale read queues a refresh
		select {
		case <-refreshed:
			ran = true
		case <-time.After(time.Millisecond):
		}
	}
	fmt.Println("a refresh ran")
	// Output:
	// loaded
	// a refresh ran
}
