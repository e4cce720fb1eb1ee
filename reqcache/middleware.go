package reqcache

import "net/http"

// Middleware returns a handler that attaches a request cache with the
// default options to each request's context, calls next, and ends the cache
// ([Close]) when next returns. Every handler and function that the request
// reaches through its context shares that cache; two requests never share
// one.
func Middleware(next http.Handler) http.Handler {
	return NewMiddleware()(next)
}

// NewMiddleware returns a middleware like [Middleware] whose caches are
// configured by opts. It panics when an option is out of range. A request
// whose context already carries a cache (an outer middleware attached one)
// keeps it, and this middleware leaves its end to whoever attached it.
func NewMiddleware(opts ...Option) func(http.Handler) http.Handler {
	o := newOptions(opts)
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			ctx := r.Context()
			if from(ctx) == nil {
				ctx = attach(ctx, o)
				r = r.WithContext(ctx)
				defer func() { _ = Close(ctx) }()
			}
			next.ServeHTTP(w, r)
		})
	}
}
