package memory

import (
	"context"

	"github.com/herdcache/herd/store"
)

// GetVersions is [Store.GetVersion] for each of keys, in their order, with
// one reading of the clock. It never fails.
func (s *Store[T]) GetVersions(_ context.Context, keys []string) []store.VersionedRead[T] {
	out := make([]store.VersionedRead[T], len(keys))
	now := s.nowNano()
	for i, k := range keys {
		it, ok := s.c.GetIfPresent(k)
		if !ok {
			continue
		}
		r := &out[i]
		r.Version = it.Version()
		if it.Live(now) {
			r.Entry, r.Found = it.Entry(), true
		}
	}
	return out
}

// WriteIf makes each write as [Store.SetIf] or [Store.DeleteIf] does, in
// order, and returns [store.ErrConflict] for those whose key's version was
// not the write's. Each key is checked and written atomically; the batch as
// a whole is not.
func (s *Store[T]) WriteIf(_ context.Context, writes []store.ConditionalWrite[T]) []error {
	errs := make([]error, len(writes))
	for i := range writes {
		w := &writes[i]
		it := s.tombstone()
		if !w.Delete {
			it = s.newItem(&w.Entry)
		}
		if s.write(w.Key, it, w.Version, true) == 0 {
			errs[i] = store.ErrConflict
		}
	}
	return errs
}
