package natsstore

import (
	"context"
	"time"

	"github.com/herdcache/herd/store"
)

// GetVersion is Get that also returns the key's version: the stream sequence
// of the last message on the key's subject, be it a value, a delete marker
// or the marker of an expiry, and 0 when the subject has no message. It
// costs one request, as Get does.
func (s *Store[T]) GetVersion(ctx context.Context, key string) (store.Entry[T], store.Version, bool, error) {
	ctx, done, err := s.begin(ctx, "get", key)
	if err != nil {
		return store.Entry[T]{}, 0, false, err
	}
	defer done()
	return s.read(ctx, key)
}

// SetIf stores e as Set does if the last message of the key's subject is
// still the one of version v (v == 0: the subject has no message). The
// server checks and writes atomically; otherwise it writes nothing and
// SetIf returns an error wrapping [store.ErrConflict].
func (s *Store[T]) SetIf(ctx context.Context, key string, e store.Entry[T], v store.Version) error {
	ctx, done, err := s.begin(ctx, "set", key)
	if err != nil {
		return err
	}
	defer done()
	_, err = s.write(ctx, key, &e, &v)
	return err
}

// SetIfVersioned is [Store.SetIf], and returns the version (the revision)
// the write gave key ([store.VersionReporter]).
func (s *Store[T]) SetIfVersioned(ctx context.Context, key string, e store.Entry[T], v store.Version) (store.Version, error) {
	ctx, done, err := s.begin(ctx, "set", key)
	if err != nil {
		return 0, err
	}
	defer done()
	return s.write(ctx, key, &e, &v)
}

// DeleteIf removes the key as Delete does if its version is still v;
// otherwise it writes nothing and returns an error wrapping
// [store.ErrConflict].
func (s *Store[T]) DeleteIf(ctx context.Context, key string, v store.Version) error {
	ctx, done, err := s.begin(ctx, "delete", key)
	if err != nil {
		return err
	}
	defer done()
	_, err = s.send(ctx, key, s.deletePub(key, &v))
	return err
}

// VersionRetention is how long the bucket keeps the marker of a deleted or
// expired key: its marker TTL (see [MarkerTTL]), or its max age if that is
// shorter. A bucket with neither keeps every marker, and VersionRetention
// is then the largest Duration.
func (s *Store[T]) VersionRetention() time.Duration { return s.retention }

var _ store.VersionReporter[int] = (*Store[int])(nil)
