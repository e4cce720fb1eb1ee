package slot_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/herdcache/herd/slot"
)

type Config struct {
	Version int
}

func ExampleSlot_Get() {
	ctx := context.Background()
	var (
		cfg     slot.Slot[Config] // the zero value is ready
		fetches int
	)
	fetchConfig := func(ctx context.Context, prev Config) (Config, time.Duration, error) {
		fetches++
		return Config{Version: prev.Version + 1}, time.Minute, nil // fresh for a minute
	}
	for range 3 {
		c, err := cfg.Get(ctx, fetchConfig)
		fmt.Println("version", c.Version, err)
	}
	fmt.Println("fetches:", fetches)
	// Output:
	// version 1 <nil>
	// version 1 <nil>
	// version 1 <nil>
	// fetches: 1
}

func ExampleSlot_Get_failedRefresh() {
	ctx := context.Background()
	token := slot.New[string](
		slot.RetryDelay(time.Minute),
		slot.WithLogger(slog.New(slog.DiscardHandler)), // failed refreshes are logged here
	)
	authDown := false
	fetchToken := func(ctx context.Context, prev string) (string, time.Duration, error) {
		if authDown {
			return "", 0, errors.New("auth server down")
		}
		return "token-1", slot.ExpiresImmediately, nil // refetch on the next Get
	}

	t1, err := token.Get(ctx, fetchToken)
	fmt.Println(t1, err)
	authDown = true
	t2, err := token.Get(ctx, fetchToken) // the refresh fails: the old token, no error
	fmt.Println(t2, err)
	// Output:
	// token-1 <nil>
	// token-1 <nil>
}

func ExampleSlot_Get_background() {
	ctx := context.Background()
	table := slot.New[int](slot.Background()) // no caller waits for a refresh
	var fetches atomic.Int32
	fetchTable := func(ctx context.Context, prev int) (int, time.Duration, error) {
		fetches.Add(1)
		return prev + 1, slot.ExpiresImmediately, nil
	}

	v, _ := table.Get(ctx, fetchTable) // the first fetch is waited for
	fmt.Println("first:", v)
	v, _ = table.Get(ctx, fetchTable) // expired: the old value at once, refreshed in the background
	fmt.Println("served at once:", v)

	// Close waits for the refresh in flight, so that no goroutine is left.
	if err := table.Close(ctx); err != nil {
		fmt.Println(err)
	}
	fmt.Println("fetches:", fetches.Load())
	// Output:
	// first: 1
	// served at once: 1
	// fetches: 2
}

func ExampleSlot_Close() {
	ctx := context.Background()
	s := slot.New[int](slot.Background())
	fetch := func(context.Context, int) (int, time.Duration, error) {
		return 1, slot.ExpiresImmediately, nil
	}
	_, _ = s.Get(ctx, fetch)
	// Close twice: each call waits for the same shutdown.
	fmt.Println(s.Close(ctx), s.Close(ctx))
	_, err := s.Get(ctx, fetch)
	fmt.Println(errors.Is(err, slot.ErrClosed))
	// Output:
	// <nil> <nil>
	// true
}
