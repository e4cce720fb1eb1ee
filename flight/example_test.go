package flight_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"

	"github.com/herdcache/herd/flight"
)

type User struct {
	ID   string
	Name string
}

func ExampleGroup_Do() {
	var (
		g     flight.Group[string, User] // the zero value is ready
		got   atomic.Int32
		start = make(chan struct{})
		wg    sync.WaitGroup
	)
	loadUser := func(ctx context.Context) (User, error) {
		<-start // a slow database: callers arriving meanwhile share this load
		id, _ := flight.KeyFromContext[string](ctx)
		return User{ID: id, Name: "Ada"}, nil
	}

	for range 10 {
		wg.Go(func() {
			u, err := g.Do(context.Background(), "user:42", loadUser)
			if err == nil && u.ID == "user:42" {
				got.Add(1)
			}
		})
	}
	close(start)
	wg.Wait()
	fmt.Println("callers served:", got.Load())

	// A panicking function reaches its callers as an error.
	_, err := g.Do(context.Background(), "user:0", func(context.Context) (User, error) {
		panic("corrupt row")
	})
	var pe *flight.PanicError
	fmt.Println(errors.As(err, &pe), pe.Value)
	// Output:
	// callers served: 10
	// true corrupt row
}

func ExampleGroup_DoShared() {
	var g flight.Group[string, int]
	v, shared, err := g.DoShared(context.Background(), "answer", func(context.Context) (int, error) {
		return 42, nil
	})
	fmt.Println(v, shared, err)
	// Output: 42 false <nil>
}

func ExampleKeyFromContext() {
	var g flight.Group[int, string]
	v, _ := g.Do(context.Background(), 7, func(ctx context.Context) (string, error) {
		key, _ := flight.KeyFromContext[int](ctx)
		return fmt.Sprint("loaded key ", key), nil
	})
	fmt.Println(v)
	// Output: loaded key 7
}
