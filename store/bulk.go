package store

import "context"

// A BulkGetter is a store that reads many keys in fewer round trips than one
// Get each: Redis with MGET, NATS with concurrent gets, memory directly.
//
// GetMany returns the live entries of the keys it found; a key missing from
// the map has no live entry. Duplicate keys are read once. An error means
// the store could not answer for some keys; the entries it did read are
// returned with it, so a caller can use them and treat the rest as missing.
type BulkGetter[T any] interface {
	GetMany(ctx context.Context, keys []string) (map[string]Entry[T], error)
}
