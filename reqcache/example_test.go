package reqcache_test

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"sync"
	"time"

	"github.com/herdcache/herd"
	"github.com/herdcache/herd/reqcache"
	"github.com/herdcache/herd/store/memory"
)

type User struct {
	ID   string
	Name string
}

// db stands in for a slow source of truth and counts its queries.
type db struct {
	mu      sync.Mutex
	queries int
}

func (d *db) LoadUser(_ context.Context, id string) (User, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.queries++
	return User{ID: id, Name: "Ada"}, nil
}

func ExampleGet() {
	var store db
	ctx := reqcache.With(context.Background()) // once, where the request starts

	// Deep code paths of the request load the same user...
	for range 3 {
		u, err := reqcache.Get(ctx, "user", "42", func(ctx context.Context) (User, error) {
			return store.LoadUser(ctx, "42")
		})
		fmt.Println(u.Name, err)
	}
	// ...and the database sees one query.
	fmt.Println("queries:", store.queries)
	// Output:
	// Ada <nil>
	// Ada <nil>
	// Ada <nil>
	// queries: 1
}

func ExampleWith() {
	ctx := reqcache.With(context.Background(), reqcache.Lifetime(time.Minute))
	// A nested With (another middleware, a library) reuses the cache.
	nested := reqcache.With(ctx)
	fmt.Println(nested == ctx)

	reqcache.Set(ctx, "flag", "beta", true)
	on, _ := reqcache.Get(nested, "flag", "beta", func(context.Context) (bool, error) {
		return false, nil // not called: the value set above is served
	})
	fmt.Println(on)
	// Output:
	// true
	// true
}

func ExampleWithout() {
	var store db
	load := func(ctx context.Context) (User, error) { return store.LoadUser(ctx, "42") }
	ctx := reqcache.With(context.Background())
	_, _ = reqcache.Get(ctx, "user", "42", load)

	// Work that goes on after the response must not read or fill the request's
	// cache; WithoutCancel also frees it from the request's cancellation.
	bg := context.WithoutCancel(reqcache.Without(ctx))
	_, _ = reqcache.Get(bg, "user", "42", load)  // loads again
	_, _ = reqcache.Get(ctx, "user", "42", load) // the request's cache still serves
	fmt.Println("queries:", store.queries)
	// Output: queries: 2
}

func ExampleSet() {
	ctx := reqcache.With(context.Background())
	// A handler that has just written a user stores it for the rest of the request.
	reqcache.Set(ctx, "user", "42", User{ID: "42", Name: "Grace"})
	u, _ := reqcache.Get(ctx, "user", "42", func(context.Context) (User, error) {
		return User{}, fmt.Errorf("not called")
	})
	fmt.Println(u.Name)
	// Output: Grace
}

func ExampleDelete() {
	var store db
	load := func(ctx context.Context) (User, error) { return store.LoadUser(ctx, "42") }
	ctx := reqcache.With(context.Background())
	_, _ = reqcache.Get(ctx, "user", "42", load)
	reqcache.Delete(ctx, "user", "42") // the user changed: the next Get loads it
	_, _ = reqcache.Get(ctx, "user", "42", load)
	reqcache.Delete(ctx, "user", "7") // a missing key: nothing happens
	fmt.Println("queries:", store.queries)
	// Output: queries: 2
}

func ExampleMiddleware() {
	var store db
	loadUser := func(r *http.Request) User {
		u, _ := reqcache.Get(r.Context(), "user", "42", func(ctx context.Context) (User, error) {
			return store.LoadUser(ctx, "42")
		})
		return u
	}
	page := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		header, body := loadUser(r), loadUser(r) // two components, one load
		fmt.Fprintf(w, "%s/%s", header.Name, body.Name)
	})
	h := reqcache.Middleware(page)

	for range 2 {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/", http.NoBody))
		fmt.Println(rec.Body.String(), "queries so far:", store.queries)
	}
	// Output:
	// Ada/Ada queries so far: 1
	// Ada/Ada queries so far: 2
}

func ExampleNewMiddleware() {
	mw := reqcache.NewMiddleware(reqcache.Lifetime(30*time.Second), reqcache.MaxEntries(1000))
	h := mw(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n, _ := reqcache.Get(r.Context(), "answer", "", func(context.Context) (int, error) { return 42, nil })
		fmt.Fprint(w, n)
	}))
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/", http.NoBody))
	fmt.Println(rec.Body.String())
	// Output: 42
}

// A request cache in front of a process-wide herd.Cache: within a request,
// the user is read once from the shared cache; across requests, the database
// is queried once.
func ExampleGet_layered() {
	var source db
	shared := herd.New(memory.New[User](), herd.TTL(time.Minute))
	defer shared.Close(context.Background())
	reads := 0
	user := func(ctx context.Context, id string) (User, error) {
		return reqcache.Get(ctx, "user", id, func(ctx context.Context) (User, error) {
			reads++
			return shared.Get(ctx, id, source.LoadUser)
		})
	}

	for request := 1; request <= 2; request++ {
		ctx := reqcache.With(context.Background())
		for range 3 {
			_, _ = user(ctx, "42")
		}
		fmt.Printf("request %d: shared cache reads %d, database queries %d\n", request, reads, source.queries)
	}
	// Output:
	// request 1: shared cache reads 1, database queries 1
	// request 2: shared cache reads 2, database queries 1
}

func ExamplePeek() {
	ctx := reqcache.With(context.Background())
	// Code that only wants a user if the request has already loaded it.
	_, ok := reqcache.Peek[User](ctx, "user", "42")
	fmt.Println(ok)

	reqcache.Set(ctx, "user", "42", User{ID: "42", Name: "Ada"})
	u, ok := reqcache.Peek[User](ctx, "user", "42")
	fmt.Println(u.Name, ok)
	// Output:
	// false
	// Ada true
}

func ExampleClose() {
	ctx := reqcache.With(context.Background())
	reqcache.Set(ctx, "user", "42", User{ID: "42", Name: "Ada"})
	// The request is over: the cache lets go of its values at once. (The
	// middleware does this, and so does the end of the request's context.)
	fmt.Println(reqcache.Close(ctx))
	_, ok := reqcache.Peek[User](ctx, "user", "42")
	fmt.Println(ok)
	// Output:
	// <nil>
	// false
}
