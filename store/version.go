package store

import (
	"context"
	"errors"
	"time"
)

// ErrConflict is returned by a conditional write ([Versioned.SetIf],
// [Versioned.DeleteIf]) when the key was written after its version was read.
// Nothing was written.
var ErrConflict = errors.New("store: key written since its version was read")

// A Version identifies the state of a key's writes in a [Versioned] store.
// Every write of the key (Set, Delete, SetIf, DeleteIf) leaves it with a
// version it did not have before within the store's
// [Versioned.VersionRetention]. A store whose backend drops an entry at its
// KeepUntil may count that drop as a write too (the Redis and NATS stores
// do; store/memory keeps the version of an expired entry). The zero Version
// means the store has no record of a write of the key within that time.
// Versions are opaque: compare them only by handing them back to the store.
type Version uint64

// A Versioned store checks and bumps a per-key version atomically on the
// backend, so that a write can be made conditional on nothing having written
// the key since a version was read: by this process, by another process
// sharing the store, or by a later holder of the key's lock. A cache writes a
// loaded value back with SetIf and the version it read before the load began,
// so that a Set or Delete that landed meanwhile, anywhere, wins, and the store
// never goes back to an older value.
//
// The contract, for every implementation:
//   - Set, Delete, SetIf and DeleteIf that succeed change the key's version,
//     also when the key had no entry (Delete of an absent key records a
//     tombstone); Get and GetVersion never change it.
//   - A version read by GetVersion matches in SetIf or DeleteIf only if no
//     write of the key happened since, for at least VersionRetention after
//     that write. A store keeps the version of a deleted or expired entry for
//     that long, then may forget it (the key's version is then zero again).
//   - Among concurrent conditional writers holding the same version, exactly
//     one succeeds.
type Versioned[T any] interface {
	Store[T]
	// GetVersion is Get that also returns the key's version, whether or not
	// the key has a live entry.
	GetVersion(ctx context.Context, key string) (e Entry[T], v Version, ok bool, err error)
	// SetIf stores e as Set does, if the key's version is still v; otherwise
	// it writes nothing and returns ErrConflict.
	SetIf(ctx context.Context, key string, e Entry[T], v Version) error
	// DeleteIf removes the key as Delete does, if its version is still v;
	// otherwise it writes nothing and returns ErrConflict.
	DeleteIf(ctx context.Context, key string, v Version) error
	// VersionRetention is how long the store remembers that a key was
	// written. A cache does not write back a load that took longer than
	// this, since the store may have forgotten a write made meanwhile.
	VersionRetention() time.Duration
}

// DefaultVersionRetention is the [Versioned.VersionRetention] of herd's
// stores unless configured otherwise: longer than any load should take.
const DefaultVersionRetention = 5 * time.Minute

// A VersionReporter is a [Versioned] store whose writes report the version
// they gave their key: the version its change stream reports for that
// write ([Change.Version]). A receiver of the stream that keeps the
// writer's own copy (a near tier) then tells the change of its own write
// from a later one, even where the stream reports only the last of several
// quick changes of a key, as a NATS KV watch does.
type VersionReporter[T any] interface {
	Versioned[T]
	// SetVersioned is Set, and returns the version the write gave key.
	SetVersioned(ctx context.Context, key string, e Entry[T]) (Version, error)
	// SetIfVersioned is SetIf, and returns the version the write gave key.
	SetIfVersioned(ctx context.Context, key string, e Entry[T], v Version) (Version, error)
}
