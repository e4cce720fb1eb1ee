package tiered

import "github.com/herdcache/herd/internal/local"

// PeekNear is peekNear, for the package's external tests.
func PeekNear[T any](s *Store[T], key string) (e *local.Entry[T], now int64, ok bool) {
	return s.peekNear(key)
}
