package reqcache_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/herdcache/herd/reqcache"
)

// userLoader counts the loads of a user.
type userLoader struct{ loads atomic.Int32 }

func (l *userLoader) load(context.Context) (string, error) {
	l.loads.Add(1)
	return "ada", nil
}

func TestMiddlewareTwoHandlersOfOneRequestShareOneLoad(t *testing.T) {
	var users userLoader
	// auth loads the user, then the page loads it again deeper down.
	auth := func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			u, err := reqcache.Get(r.Context(), "user", "42", users.load)
			if err != nil {
				http.Error(w, err.Error(), http.StatusInternalServerError)
				return
			}
			w.Header().Set("X-User", u)
			next.ServeHTTP(w, r)
		})
	}
	page := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		u, err := reqcache.Get(r.Context(), "user", "42", users.load)
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		fmt.Fprint(w, "hello ", u)
	})
	srv := httptest.NewServer(reqcache.Middleware(auth(page)))
	defer srv.Close()

	for i := int32(1); i <= 2; i++ {
		resp, err := srv.Client().Get(srv.URL)
		if err != nil {
			t.Fatal(err)
		}
		body, err := io.ReadAll(resp.Body)
		_ = resp.Body.Close()
		if err != nil {
			t.Fatal(err)
		}
		if string(body) != "hello ada" || resp.Header.Get("X-User") != "ada" {
			t.Fatalf("request %d: %q, X-User %q", i, body, resp.Header.Get("X-User"))
		}
		// One load per request: the two handlers of a request share it, two
		// requests do not.
		if got := users.loads.Load(); got != i {
			t.Fatalf("after request %d: %d loads, want %d", i, got, i)
		}
	}
}

func TestMiddlewareConcurrentWorkOfOneRequestSharesOneLoad(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var loads atomic.Int32
		slowLoad := func(context.Context) (string, error) {
			loads.Add(1)
			time.Sleep(time.Second) // a slow database, in the bubble's fake time
			return "ada", nil
		}
		h := reqcache.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			var wg sync.WaitGroup
			names := make([]string, 4)
			for i := range names {
				wg.Go(func() { names[i], _ = reqcache.Get(r.Context(), "user", "42", slowLoad) })
			}
			wg.Wait()
			fmt.Fprint(w, names)
		}))
		for want := int32(1); want <= 2; want++ {
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/", http.NoBody))
			if got := rec.Body.String(); got != "[ada ada ada ada]" {
				t.Fatalf("body %q", got)
			}
			if got := loads.Load(); got != want {
				t.Fatalf("after request %d: %d loads, want %d", want, got, want)
			}
		}
	})
}

func TestNewMiddlewareAppliesItsOptions(t *testing.T) {
	var users userLoader
	h := reqcache.NewMiddleware(reqcache.MaxEntries(1), reqcache.WithLogger(discard))(
		http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			for _, id := range []string{"1", "2", "2"} {
				_, _ = reqcache.Get(r.Context(), "user", id, users.load)
			}
		}))
	h.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest(http.MethodGet, "/", http.NoBody))
	if got := users.loads.Load(); got != 3 {
		t.Fatalf("%d loads, want 3: the second user is past MaxEntries(1)", got)
	}
}

func TestNestedMiddlewareKeepsTheOuterCache(t *testing.T) {
	var users userLoader
	setter := func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			reqcache.Set(r.Context(), "user", "42", "set by the outer handler")
			next.ServeHTTP(w, r)
		})
	}
	getter := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		u, _ := reqcache.Get(r.Context(), "user", "42", users.load)
		fmt.Fprint(w, u)
	})
	h := reqcache.Middleware(setter(reqcache.NewMiddleware()(getter)))
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/", http.NoBody))
	if got := rec.Body.String(); got != "set by the outer handler" || users.loads.Load() != 0 {
		t.Fatalf("inner handler got %q after %d loads; the inner middleware replaced the cache", got, users.loads.Load())
	}
}

// The middleware ends the request's cache when the handler returns, so that
// a context kept past the request holds no value.
func TestMiddlewareEndsTheCacheWhenTheHandlerReturns(t *testing.T) {
	var kept context.Context
	h := reqcache.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		reqcache.Set(r.Context(), "user", "42", "ada")
		if _, ok := reqcache.Peek[string](r.Context(), "user", "42"); !ok {
			t.Error("the request's cache did not keep a value during the request")
		}
		kept = r.Context()
	}))
	h.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest(http.MethodGet, "/", http.NoBody))
	if v, ok := reqcache.Peek[string](kept, "user", "42"); ok {
		t.Fatalf("after the request, its kept context still serves %q", v)
	}
}
