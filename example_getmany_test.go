package herd_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/herdcache/herd"
	"github.com/herdcache/herd/store/memory"
)

// loadUsers is a batch loader: one query for many users
// (SELECT … WHERE id IN (…)). A user it leaves out does not exist.
func loadUsers(ctx context.Context, ids []string) (map[string]User, error) {
	slices.Sort(ids)
	fmt.Println("query", ids)
	users := make(map[string]User, len(ids))
	for _, id := range ids {
		if id != "user:0" {
			users[id] = User{ID: id, Name: "name of " + id}
		}
	}
	return users, nil
}

func ExampleCache_GetMany() {
	ctx := context.Background()
	users := herd.New(memory.New[User](), herd.TTL(10*time.Minute), herd.NegativeTTL(time.Minute))
	defer users.Close(ctx)

	if _, err := users.Get(ctx, "user:1", func(ctx context.Context, id string) (User, error) {
		return User{ID: id, Name: "cached"}, nil
	}); err != nil {
		fmt.Println(err)
	}

	// One read of the store, one query for the keys it did not have.
	got, err := users.GetMany(ctx, []string{"user:1", "user:2", "user:3", "user:0", "user:2"}, loadUsers)
	fmt.Println(len(got), got["user:1"].Name, got["user:2"].Name, err)
	_, found := got["user:0"]
	fmt.Println("user:0 found:", found)

	// All cached now, "user:0 does not exist" included: no query.
	got, err = users.GetMany(ctx, []string{"user:0", "user:1", "user:2", "user:3"}, loadUsers)
	fmt.Println(len(got), err)
	st := users.Stats()
	fmt.Println("batch loads:", st.BatchLoads, "keys:", st.BatchKeys)
	// Output:
	// query [user:0 user:2 user:3]
	// 3 cached name of user:2 <nil>
	// user:0 found: false
	// 3 <nil>
	// batch loads: 1 keys: 3
}

// FetchMany says where each value came from; a failed batch fails its keys
// only, reported in a KeyErrors.
func ExampleCache_FetchMany() {
	ctx := context.Background()
	users := herd.New(memory.New[User](), herd.TTL(10*time.Minute))
	defer users.Close(ctx)
	if err := users.Set(ctx, "user:1", User{ID: "user:1", Name: "Ada"}); err != nil {
		fmt.Println(err)
	}

	down := errors.New("database down")
	failing := func(ctx context.Context, ids []string) (map[string]User, error) { return nil, down }
	got, err := users.FetchMany(ctx, []string{"user:1", "user:2"}, failing)
	fmt.Println(got["user:1"].Value.Name, got["user:1"].Status)
	var perKey herd.KeyErrors
	fmt.Println(errors.As(err, &perKey), len(perKey), errors.Is(perKey["user:2"], down))
	// Output:
	// Ada fresh
	// true 1 true
}

// Batch turns a batch loader into a Loader: Gets of different keys from
// different goroutines within MaxWait reach the source as one call.
func ExampleBatch() {
	ctx := context.Background()
	users := herd.New(memory.New[User](), herd.TTL(10*time.Minute))
	defer users.Close(ctx)

	loadUser := herd.Batch(loadUsers, herd.MaxBatch(3), herd.MaxWait(time.Hour))
	var wg sync.WaitGroup
	for _, id := range []string{"user:1", "user:2", "user:3"} {
		wg.Go(func() {
			if _, err := users.Get(ctx, id, loadUser); err != nil {
				fmt.Println(err)
			}
		})
	}
	wg.Wait() // a full batch goes at once, without waiting for MaxWait
	u, err := users.Get(ctx, "user:2", loadUser)
	fmt.Println(u.Name, err)
	// Output:
	// query [user:1 user:2 user:3]
	// name of user:2 <nil>
}

// Within a batch loader, SetKeyTTL gives one key's entry its own lifetime,
// and SetTTL every entry of the call.
func ExampleSetKeyTTL() {
	ctx := context.Background()
	prices := herd.New(memory.New[int](), herd.TTL(time.Hour))
	defer prices.Close(ctx)

	load := func(ctx context.Context, ids []string) (map[string]int, error) {
		herd.SetKeyTTL(ctx, "volatile", time.Second) // changes often
		out := make(map[string]int, len(ids))
		for i, id := range ids {
			out[id] = i
		}
		return out, nil
	}
	got, err := prices.GetMany(ctx, []string{"volatile", "stable"}, load)
	fmt.Println(len(got), err)
	// Output:
	// 2 <nil>
}
