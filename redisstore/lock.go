package redisstore

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"hash/fnv"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/herdcache/herd/store"
)

// KEYS[1] the lock, KEYS[2] the key's fence; ARGV[1] the owner's token,
// ARGV[2] the lease in milliseconds. Returns the fencing token, or 0 when
// another owner holds the lock. The token is the server's clock in
// microseconds since 2023-11-14 (exact as a Lua number), or one more than
// the fence when that is not smaller; the fence lives as long as the lease.
var acquireScript = redis.NewScript(`
if not redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then
	return 0
end
local t = redis.call('TIME')
local f = (tonumber(t[1]) - 1699920000) * 1000000 + tonumber(t[2])
local last = tonumber(redis.call('GET', KEYS[2]) or '0') or 0
if f <= last then f = last + 1 end
redis.call('SET', KEYS[2], string.format('%.0f', f), 'PX', ARGV[2])
return f`)

// KEYS[1] the lock; ARGV[1] the owner's token. Returns 1 when released.
var releaseScript = redis.NewScript(`
if redis.call('GET', KEYS[1]) == ARGV[1] then
	return redis.call('DEL', KEYS[1])
end
return 0`)

// KEYS[1] the lock; ARGV[1] the owner's token, ARGV[2] the new lease in
// milliseconds. Returns 1 when extended.
var extendScript = redis.NewScript(`
if redis.call('GET', KEYS[1]) == ARGV[1] then
	return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0`)

// lockKeys returns the Redis keys of key's lock and fence. Both
// carry the same hash tag, a hash of key, so that they share a Cluster slot
// (the acquire script touches both) whatever braces key itself holds.
func (s *Store[T]) lockKeys(key string) (lock, fence string) {
	h := fnv.New64a()
	_, _ = h.Write([]byte(key))
	tagged := s.prefix + "{" + strconv.FormatUint(h.Sum64(), 16) + "}:"
	return tagged + "lock:" + key, tagged + "fence:" + key
}

// leaseMillis is ttl in whole milliseconds, rounded up.
func leaseMillis(ttl time.Duration) (int64, error) {
	if ttl <= 0 {
		return 0, fmt.Errorf("redisstore: lock lease must be positive, got %v", ttl)
	}
	return int64((ttl + time.Millisecond - 1) / time.Millisecond), nil
}

// TryLock takes the lock of key for ttl (whole milliseconds, rounded up), in
// one round trip, or returns [store.ErrLocked] when another owner holds it.
// The lock's fencing token grows with every acquisition of key; nothing
// of the lock outlives its lease.
func (s *Store[T]) TryLock(ctx context.Context, key string, ttl time.Duration) (store.Lock, error) {
	if err := s.check(ctx); err != nil {
		return nil, fmt.Errorf("redisstore: lock %q: %w", key, err)
	}
	ms, err := leaseMillis(ttl)
	if err != nil {
		return nil, err
	}
	var raw [16]byte
	_, _ = rand.Read(raw[:]) // crypto/rand.Read never fails
	l := &lock{client: s.client, key: key, token: hex.EncodeToString(raw[:])}
	var fence string
	l.lockKey, fence = s.lockKeys(key)
	n, err := acquireScript.Run(ctx, s.client, []string{l.lockKey, fence}, l.token, ms).Int64()
	switch {
	case err != nil:
		return nil, fmt.Errorf("redisstore: lock %q: %w", key, err)
	case n == 0:
		return nil, store.ErrLocked
	}
	l.fence = uint64(n)
	return l, nil
}

// A lock is a lease taken by [Store.TryLock].
type lock struct {
	client  redis.UniversalClient
	key     string // the cache key, for errors
	lockKey string
	token   string
	fence   uint64
}

// Unlock releases the lock if this owner still holds it, or returns
// [store.ErrNotHeld] and leaves the lock to its current owner, if any.
func (l *lock) Unlock(ctx context.Context) error {
	checkCtx(ctx)
	n, err := releaseScript.Run(ctx, l.client, []string{l.lockKey}, l.token).Int64()
	if err != nil {
		return fmt.Errorf("redisstore: unlock %q: %w", l.key, err)
	}
	if n == 0 {
		return fmt.Errorf("redisstore: unlock %q: %w", l.key, store.ErrNotHeld)
	}
	return nil
}

// Extend resets the lease to ttl from now if this owner still holds the
// lock, or returns [store.ErrNotHeld].
func (l *lock) Extend(ctx context.Context, ttl time.Duration) error {
	checkCtx(ctx)
	ms, err := leaseMillis(ttl)
	if err != nil {
		return err
	}
	n, err := extendScript.Run(ctx, l.client, []string{l.lockKey}, l.token, ms).Int64()
	if err != nil {
		return fmt.Errorf("redisstore: extend lock %q: %w", l.key, err)
	}
	if n == 0 {
		return fmt.Errorf("redisstore: extend lock %q: %w", l.key, store.ErrNotHeld)
	}
	return nil
}

// Token returns the fencing token of the lock.
func (l *lock) Token() uint64 { return l.fence }
