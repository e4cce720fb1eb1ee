package tiered

import (
	"context"
	"fmt"
	"time"

	"github.com/herdcache/herd/internal/check"
	"github.com/herdcache/herd/internal/local"
	"github.com/herdcache/herd/store"
)

// A VersionedStore is a [Store] over a far store that implements
// [store.Versioned], and implements it too, and [store.BulkVersioned]:
// versions and conditional writes are the far tier's. Build it with
// [NewVersioned].
type VersionedStore[T any] struct {
	*Store[T]
	vfar  store.Versioned[T]
	bvfar store.BulkVersioned[T] // vfar, if it reads versions and writes in bulk

	// lending is the Store's hit path, lent in the VersionedStore's name.
	lending[T]
}

var _ store.Versioned[int] = (*VersionedStore[int])(nil)

// NewVersioned is [New] for a far store that implements
// [store.Versioned]: the store it returns implements [store.Versioned] by
// passing versions and conditional writes to the far tier.
func NewVersioned[T any](far store.Versioned[T], opts ...Option) (*VersionedStore[T], error) {
	check.That(far != nil, "tiered", "NewVersioned needs a far store, got nil")
	s, err := New[T](far, opts...)
	if err != nil {
		return nil, err
	}
	vs := &VersionedStore[T]{Store: s, vfar: far}
	vs.lending = local.Lend[T](vs, s.peekNear, true, s.fallback)
	vs.bvfar, _ = far.(store.BulkVersioned[T])
	return vs, nil
}

// GetVersion reads key and its version from the far tier (never from the
// near tier, which has no versions) and, like a near miss, keeps a copy of
// the entry in the near tier. Errors: the far store's, wrapped; [ErrClosed]
// after Close.
func (s *VersionedStore[T]) GetVersion(ctx context.Context, key string) (store.Entry[T], store.Version, bool, error) {
	mustContext(ctx)
	if s.closed.Load() {
		return store.Entry[T]{}, 0, false, ErrClosed
	}
	s.farReads.Add(1)
	start := s.clock.Exact()
	t := s.flights.begin(key)
	e, v, ok, err := s.vfar.GetVersion(ctx, key)
	switch {
	case err != nil:
		s.flights.finish(key, t, false, nil)
		return store.Entry[T]{}, 0, false, fmt.Errorf("tiered: get version %q: %w", key, err)
	case !ok:
		s.absent(key, t)
		return store.Entry[T]{}, v, false, nil
	}
	s.fillVersion(key, t, e, v, start)
	return e, v, true, nil
}

// SetIf is the far store's SetIf, then, if it succeeded, [Store.Set]'s
// near-tier step; on any failure the near copy of key is dropped. A refused
// write returns an error wrapping [store.ErrConflict].
func (s *VersionedStore[T]) SetIf(ctx context.Context, key string, e store.Entry[T], v store.Version) error {
	return s.write(ctx, "set if", key, &e, func() (store.Version, error) {
		if s.reporter != nil {
			return s.reporter.SetIfVersioned(ctx, key, e, v)
		}
		return 0, s.vfar.SetIf(ctx, key, e, v)
	})
}

// DeleteIf is the far store's DeleteIf, then drops the near copy of key. A
// refused write returns an error wrapping [store.ErrConflict].
func (s *VersionedStore[T]) DeleteIf(ctx context.Context, key string, v store.Version) error {
	return s.write(ctx, "delete if", key, nil, func() (store.Version, error) { return 0, s.vfar.DeleteIf(ctx, key, v) })
}

// VersionRetention is the far store's.
func (s *VersionedStore[T]) VersionRetention() time.Duration { return s.vfar.VersionRetention() }
