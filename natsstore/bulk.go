package natsstore

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"

	"github.com/herdcache/herd/store"
)

// GetMany reads keys with concurrent gets, at most [BulkConcurrency] at a
// time (16 by default), and returns the live entries it found; a key missing
// from the map has no live entry. Duplicate keys are read once. When some
// gets fail (or ctx ends before they run), it returns the entries it did
// read with an error that counts the keys it could not read and wraps the
// first failure.
func (s *Store[T]) GetMany(ctx context.Context, keys []string) (map[string]store.Entry[T], error) {
	if ctx == nil {
		panic("natsstore: nil Context")
	}
	if s.closed.Load() {
		return nil, fmt.Errorf("natsstore: get many: %w", ErrClosed)
	}
	unique := make([]string, 0, len(keys))
	seen := make(map[string]struct{}, len(keys))
	for _, k := range keys {
		if _, ok := seen[k]; !ok {
			seen[k] = struct{}{}
			unique = append(unique, k)
		}
	}
	type result struct {
		e   store.Entry[T]
		ok  bool
		err error
	}
	results := make([]result, len(unique))
	var next atomic.Int64
	var wg sync.WaitGroup
	for range min(s.bulk, len(unique)) {
		wg.Go(func() {
			for {
				i := int(next.Add(1) - 1)
				if i >= len(unique) {
					return
				}
				r := &results[i]
				if err := ctx.Err(); err != nil {
					r.err = err
					continue
				}
				r.e, r.ok, r.err = s.Get(ctx, unique[i])
			}
		})
	}
	wg.Wait()
	found := make(map[string]store.Entry[T], len(unique))
	var first error
	failures := 0
	for i, r := range results {
		switch {
		case r.err != nil:
			failures++
			if first == nil {
				first = r.err
			}
		case r.ok:
			found[unique[i]] = r.e
		}
	}
	if first != nil {
		return found, fmt.Errorf("natsstore: get many: %d of %d keys not read: %w", failures, len(unique), first)
	}
	return found, nil
}
