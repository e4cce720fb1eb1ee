package tiered_test

import (
	"context"
	"fmt"
	"time"

	"github.com/herdcache/herd"
	"github.com/herdcache/herd/store"
	"github.com/herdcache/herd/store/memory"
	"github.com/herdcache/herd/store/tiered"
)

// Two instances of a fleet over one shared far store (here a memory store;
// in production redisstore or natsstore): a write on one is read on the
// other, and the writer reads its own write from its near tier.
func ExampleNew() {
	ctx := context.Background()
	far := memory.New[string]() // stands for the server the fleet shares
	defer far.Close(ctx)        // after the tiered stores: they never close it

	a, err := tiered.New[string](far, tiered.NearMaxEntries(1000), tiered.NearTTL(time.Minute))
	if err != nil {
		panic(err) // the far store's change stream could not be started
	}
	defer a.Close(ctx)
	b, err := tiered.New[string](far)
	if err != nil {
		panic(err)
	}
	defer b.Close(ctx)

	if err := a.Set(ctx, "greeting", store.Entry[string]{Value: "hello"}); err != nil {
		panic(err)
	}
	fromA, _, _ := a.Get(ctx, "greeting") // a's near tier
	fromB, _, _ := b.Get(ctx, "greeting") // a near miss on b: the far tier
	fmt.Println(fromA.Value, fromB.Value)
	fmt.Println("b read the far tier", b.Stats().FarReads, "time")
	// Output:
	// hello hello
	// b read the far tier 1 time
}

// A herd.Cache per instance over a two-level store: hits are memory hits,
// loads are coordinated across the fleet by the far store's locks, written
// back conditionally on the far store's versions, and a Set anywhere
// reaches every instance.
func ExampleNewVersioned() {
	ctx := context.Background()
	far := memory.New[string]() // redisstore.New or natsstore.New in a fleet
	defer far.Close(ctx)

	newCache := func() *herd.Cache[string] {
		near, err := tiered.NewVersioned[string](far)
		if err != nil {
			panic(err)
		}
		// The cache's Close closes near, not far.
		return herd.New[string](near, herd.TTL(time.Hour), herd.WithLocker(far, 10*time.Second))
	}
	a, b := newCache(), newCache()
	defer a.Close(ctx)
	defer b.Close(ctx)

	load := func(_ context.Context, key string) (string, error) { return "loaded " + key, nil }
	v, _ := a.Get(ctx, "user:42", load)
	fmt.Println(v)
	_ = a.Set(ctx, "user:42", "set by a")
	v, _ = b.Get(ctx, "user:42", load) // from the far tier: no second load
	fmt.Println(v)
	// Output:
	// loaded user:42
	// set by a
}
