package reqcache

import "net/http"

// Middleware returns a handler that attaches a request cache with the
// default options to each request's context and calls next. Every handler
// and function that the request reaches through its context shares that
// cache; two requests never share one.
func Middleware(next http.Handler) http.Handler {
	return NewMiddleware()(next)
}

// NewMiddleware returns a middleware like [Middleware] whose caches are
// configured by opts. A request whose context already carries a cache (an
// outer middleware attached one) keeps it.
func NewMiddleware(opts ...Option) func(http.Handler) http.Handler {
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			ctx := r.Context()
			if with := With(ctx, opts...); with != ctx {
				r = r.WithContext(with)
			}
			next.ServeHTTP(w, r)
		})
	}
}
