package store

import "context"

// A Change is one item of a store's change stream. Exactly one of these
// holds: Key names a key that changed; or one of Down, Up, Gap and All is
// set, with Key empty and Version zero.
//
// What a receiver that keeps copies of entries (a near tier) must do:
//
//   - Key: the key was written, deleted, expired or evicted. Drop the copy
//     of Key, unless Version is not zero and is the version of the copy:
//     the change is then the one that gave the copy its version (a writer
//     seeing the echo of its own write), and the copy is current.
//   - Down: the stream is cut (its connection lost, the server unreachable
//     or silent, its consumer gone). From now until Up, Gap or All, changes
//     may happen that the stream does not deliver: no copy can be trusted
//     to be current because no change named it. Changes delivered while the
//     stream is down are real (a replay, or the parts of a sharded backend
//     still connected) and are handled as usual.
//   - Up: the stream is back after a Down, and whole: every change made
//     while it was down has been delivered between the Down and this Up (a
//     replay from where the stream left off). Copies that no change named
//     are as current as before the Down.
//   - Gap: the stream is back (after a Down, or after it began following a
//     part of the backend late, such as a new Cluster master), and the far
//     store can be read, but the stream cannot say which keys changed
//     meanwhile. Every copy obtained from a read that began before this
//     Change must be revalidated against the store's versions
//     ([Versioned.GetVersion]: drop the copy if the version differs) or
//     dropped. Copies obtained by reads that begin after it are covered by
//     the stream as usual.
//   - All: every key may have changed (a flush or a swap of the dataset on
//     the server, a purge of the stream, a stream that cannot resume, a
//     receiver that fell too far behind, a panic in the receiver) and
//     versions are no guide: drop every copy. All does not end a Down: a
//     stream that is down and cannot resume reports All, then Up once it
//     delivers every change again.
type Change struct {
	// Key is the key that was written, deleted, expired or evicted.
	Key string
	// Version is the version the change gave Key ([Versioned]), when the
	// stream knows it; zero when it does not (Redis reports keys only) or
	// when the change left the key without a version.
	Version Version
	// Down reports that the stream is cut; see the type's documentation.
	Down bool
	// Up reports that the stream is back after a Down, with every change
	// made while it was down delivered before it.
	Up bool
	// Gap reports that the stream is back but changes may have been
	// missed: copies read before it must be revalidated by version.
	Gap bool
	// All reports that every key may have changed: drop every copy.
	All bool
}

// A ChangeStream is a shared store that reports the changes of its keys made
// by every writer: another process through herd, a plain client of the
// backend, the server's own expiry or eviction. It is the server's record
// of what changed (Redis client tracking, a NATS KV watch), not a message
// that caches publish to each other, so no write escapes it.
//
// The rules of a watch, for every implementation:
//
//   - Watch calls fn with each change from the moment it returns on, until
//     the watch is closed: one call at a time, from a goroutine of the
//     watch, never under a lock of the store (fn may call the store), in the
//     order the backend reports them (changes of keys on different shards
//     of a sharded backend have no order between them).
//   - A change may be reported more than once, and changes made by the
//     watching process itself are reported too. Several changes of a key
//     may be reported as one: a stream that keeps only the last revision
//     of a key (a NATS KV bucket) may skip a change that a later change of
//     it overtook before delivery, and Redis's broadcast tracking reports
//     the writes of a key in one turn of its event loop once; the last
//     change of a key is always reported. A receiver that must tell its
//     own write's change from a later one compares versions (see
//     [VersionReporter]) rather than count changes.
//   - Every loss is reported, never dropped: a cut as Down, followed once
//     the stream is back by Up (nothing was missed), Gap (revalidate) or All
//     (drop everything); a flush or swap of the backend's data as All. A
//     Down is always followed by Up or Gap before the next Down, unless the
//     watch is closed first; All may come at any time.
//   - Changes wait for fn in a bounded queue (see each store for its
//     size); when fn falls so far behind that the queue is full, the
//     queued changes are replaced by one All.
//   - fn must return quickly. A panic in fn is recovered, logged and
//     followed by All (unless fn panicked on All itself); a runtime.Goexit
//     in fn is logged, followed by All in the same way, and deliveries go
//     on from a new goroutine.
//   - fn must not call the watch's Close: Close waits for fn to return, so
//     it would wait for ever.
//
// Watch returns an error if the stream cannot be started (the server is
// unreachable) or ctx ends first. ctx bounds only the start; the watch runs
// until closed, and the store's Close closes it too.
type ChangeStream interface {
	Watch(ctx context.Context, fn func(Change)) (Watch, error)
}

// A Watch is a running [ChangeStream.Watch].
type Watch interface {
	// Close stops the deliveries and waits for fn to return if it is
	// running; fn is not called after Close returns. It is idempotent and
	// safe for concurrent use, and must not be called from fn.
	Close() error
}
