package store

import "context"

// A Change is one item of a store's change stream: a key that may have
// changed, or, with All set, the news that every key may have changed.
type Change struct {
	// Key is the key that was written, deleted or expired. Empty when All.
	Key string
	// All says that the stream cannot vouch for what it delivered: it
	// reconnected, the server flushed or lost its state, or a buffer
	// overflowed. A receiver that keeps copies of entries must drop or
	// revalidate all of them.
	All bool
}

// A ChangeStream is a shared store that reports the changes of its keys made
// by every writer: another process through herd, a plain client of the
// backend, the server's own expiry or eviction. It is the server's record
// of what changed (Redis client tracking, a NATS KV watch), not a message
// that caches publish to each other, so no write escapes it.
//
// Watch calls fn for each change from the moment it returns on, from one
// goroutine at a time, in the order the backend reports them, until the
// watch is closed. A change may be reported more than once, and changes
// made by the watching process itself are reported too. When the stream has
// or may have lost changes, it calls fn with a [Change] whose All is set
// before any further change, and goes on once it can vouch again (after a
// reconnection, for example). fn must return quickly; a panic in fn is
// recovered, logged and reported as a Change with All set.
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
	// running. It is idempotent.
	Close() error
}
