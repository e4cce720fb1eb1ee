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

// KEYS: for each lock, its key and its fence's. ARGV[1]: the lease in
// milliseconds; ARGV[1+i]: the owner's token of the i-th lock. Returns, for
// each lock, its fencing token, or 0 when another owner holds it. A token
// is the server's clock in microseconds since 2023-11-14 (exact as a Lua
// number), or one more than the fence when that is not smaller; the fence
// lives as long as the lease.
var acquireScript = redis.NewScript(`
local out = {}
for i = 1, #KEYS / 2 do
	local lk, fk = KEYS[2 * i - 1], KEYS[2 * i]
	if not redis.call('SET', lk, ARGV[i + 1], 'NX', 'PX', ARGV[1]) then
		out[i] = 0
	else
		local t = redis.call('TIME')
		local f = (tonumber(t[1]) - 1699920000) * 1000000 + tonumber(t[2])
		local last = tonumber(redis.call('GET', fk) or '0') or 0
		if f <= last then f = last + 1 end
		redis.call('SET', fk, string.format('%.0f', f), 'PX', ARGV[1])
		out[i] = f
	end
end
return out`)

// KEYS: the locks; ARGV[i]: the owner's token of KEYS[i]. Returns, for each
// lock, 1 when released, 0 when the owner no longer holds it.
var releaseScript = redis.NewScript(`
local out = {}
for i = 1, #KEYS do
	if redis.call('GET', KEYS[i]) == ARGV[i] then
		out[i] = redis.call('DEL', KEYS[i])
	else
		out[i] = 0
	end
end
return out`)

// KEYS: the locks; ARGV[1]: the new lease in milliseconds; ARGV[1+i]: the
// owner's token of KEYS[i]. Returns, for each lock, 1 when extended, 0 when
// the owner no longer holds it.
var extendScript = redis.NewScript(`
local out = {}
for i = 1, #KEYS do
	if redis.call('GET', KEYS[i]) == ARGV[i + 1] then
		out[i] = redis.call('PEXPIRE', KEYS[i], ARGV[1])
	else
		out[i] = 0
	end
end
return out`)

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
	r := bounded(ctx, s.patient, func() pair[store.Lock, error] {
		l, err := s.tryLock(ctx, key, ttl)
		return pair[store.Lock, error]{l, err}
	}, func(err error) pair[store.Lock, error] {
		return pair[store.Lock, error]{b: fmt.Errorf("redisstore: lock %q: %w", key, err)}
	})
	return r.a, r.b
}

func (s *Store[T]) tryLock(ctx context.Context, key string, ttl time.Duration) (store.Lock, error) {
	if err := s.check(ctx); err != nil {
		return nil, fmt.Errorf("redisstore: lock %q: %w", key, err)
	}
	ms, err := leaseMillis(ttl)
	if err != nil {
		return nil, err
	}
	l, fence := s.newLock(key)
	res, err := acquireScript.Run(ctx, s.client, []string{l.lockKey, fence}, ms, l.token).Slice()
	if err == nil && len(res) != 1 {
		err = fmt.Errorf("unexpected reply %v", res)
	}
	if err != nil {
		return nil, fmt.Errorf("redisstore: lock %q: %w", key, err)
	}
	if err := l.acquired(res[0]); err != nil {
		return nil, err
	}
	return l, nil
}

// newLock returns the lock of key that TryLock or TryLockMany tries to take,
// with a new owner's token (128 random bits), and the key of its fence.
func (s *Store[T]) newLock(key string) (l *lock, fence string) {
	var raw [16]byte
	_, _ = rand.Read(raw[:]) // crypto/rand.Read never fails
	l = &lock{client: s.client, key: key, token: hex.EncodeToString(raw[:])}
	l.lockKey, fence = s.lockKeys(key)
	return l, fence
}

// acquired reads the acquire script's result for l: its fencing token, or
// 0 when another owner holds the lock.
func (l *lock) acquired(r any) error {
	n, ok := r.(int64)
	switch {
	case !ok || n < 0:
		return fmt.Errorf("redisstore: lock %q: unexpected fencing token %v", l.key, r)
	case n == 0:
		return store.ErrLocked
	}
	l.fence = uint64(n)
	return nil
}

// A lock is a lease taken by [Store.TryLock] or [Store.TryLockMany].
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
	res, err := releaseScript.Run(ctx, l.client, []string{l.lockKey}, l.token).Slice()
	return l.done("unlock", res, err)
}

// Extend resets the lease to ttl from now if this owner still holds the
// lock, or returns [store.ErrNotHeld].
func (l *lock) Extend(ctx context.Context, ttl time.Duration) error {
	checkCtx(ctx)
	ms, err := leaseMillis(ttl)
	if err != nil {
		return err
	}
	res, err := extendScript.Run(ctx, l.client, []string{l.lockKey}, ms, l.token).Slice()
	return l.done("extend lock", res, err)
}

// done reads the release or extend script's reply for l alone.
func (l *lock) done(op string, res []any, err error) error {
	if err == nil && len(res) != 1 {
		err = fmt.Errorf("unexpected reply %v", res)
	}
	if err != nil {
		return fmt.Errorf("redisstore: %s %q: %w", op, l.key, err)
	}
	return l.held(op, res[0])
}

// held reads the release or extend script's result for l: nil when done,
// an error wrapping [store.ErrNotHeld] when this owner no longer holds it.
func (l *lock) held(op string, r any) error {
	switch n, ok := r.(int64); {
	case !ok:
		return fmt.Errorf("redisstore: %s %q: unexpected reply %v", op, l.key, r)
	case n == 0:
		return fmt.Errorf("redisstore: %s %q: %w", op, l.key, store.ErrNotHeld)
	}
	return nil
}

// Token returns the fencing token of the lock.
func (l *lock) Token() uint64 { return l.fence }

// TryLockMany is [Store.TryLock] for each of keys, in their order, in one
// round trip to each server that holds some of the locks: one script call
// (per 256 keys) per hash slot on Cluster, per shard on a Ring, and on a
// single server, sent together as one pipeline. Each result holds the
// key's lock, or [store.ErrLocked], or the failure of the call that
// carried it (a failing slot or shard fails its keys only; a lock such a
// call took, if any, runs out at its lease).
func (s *Store[T]) TryLockMany(ctx context.Context, keys []string, ttl time.Duration) []store.LockResult {
	return bounded(ctx, s.patient, func() []store.LockResult { return s.tryLockMany(ctx, keys, ttl) }, func(err error) []store.LockResult {
		out := make([]store.LockResult, len(keys))
		for i, k := range keys {
			out[i].Err = fmt.Errorf("redisstore: lock %q: %w", k, err)
		}
		return out
	})
}

func (s *Store[T]) tryLockMany(ctx context.Context, keys []string, ttl time.Duration) []store.LockResult {
	out := make([]store.LockResult, len(keys))
	fail := func(i int, err error) { out[i].Err = fmt.Errorf("redisstore: lock %q: %w", keys[i], err) }
	err := s.check(ctx)
	ms, lerr := leaseMillis(ttl)
	if err == nil {
		err = lerr
	}
	if err != nil {
		for i := range keys {
			fail(i, err)
		}
		return out
	}
	if len(keys) == 0 {
		return out
	}
	b := newBatch(s, ms)
	locks := make([]*lock, len(keys))
	for i, k := range keys {
		l, fence := s.newLock(k)
		locks[i] = l
		if err := b.add(i, []string{l.lockKey, fence}, l.token); err != nil {
			fail(i, err)
		}
	}
	cmds := s.run(ctx, acquireScript, b.calls)
	for c, call := range b.calls {
		res, err := replies(cmds[c], len(call.idx), 1)
		for j, i := range call.idx {
			if err != nil {
				fail(i, err)
			} else if out[i].Err = locks[i].acquired(res[j]); out[i].Err == nil {
				out[i].Lock = locks[i]
			}
		}
	}
	return out
}

// ExtendMany is Extend for each of locks, which TryLock or TryLockMany of a
// store on this store's client handed out, in one round trip to each server
// that holds some of them, as [Store.TryLockMany] does. Each error is nil,
// one wrapping [store.ErrNotHeld], or the failure of the call that carried
// the lock. Like a lock's Extend, it works after Close.
func (s *Store[T]) ExtendMany(ctx context.Context, locks []store.Lock, ttl time.Duration) []error {
	checkCtx(ctx)
	ms, err := leaseMillis(ttl)
	if err != nil {
		errs := make([]error, len(locks))
		for i := range errs {
			errs[i] = err
		}
		return errs
	}
	return s.eachLock(ctx, "extend lock", extendScript, locks, ms)
}

// UnlockMany is Unlock for each of locks, which TryLock or TryLockMany of a
// store on this store's client handed out, in one round trip to each server
// that holds some of them, as [Store.TryLockMany] does. Each error is nil,
// one wrapping [store.ErrNotHeld], or the failure of the call that carried
// the lock. Like a lock's Unlock, it works after Close.
func (s *Store[T]) UnlockMany(ctx context.Context, locks []store.Lock) []error {
	checkCtx(ctx)
	return s.eachLock(ctx, "unlock", releaseScript, locks)
}

// eachLock runs script (release or extend) for each of locks, with the
// arguments head before the tokens.
func (s *Store[T]) eachLock(ctx context.Context, op string, script *redis.Script, locks []store.Lock, head ...any) []error {
	errs := make([]error, len(locks))
	if len(locks) == 0 {
		return errs
	}
	ls := make([]*lock, len(locks))
	b := newBatch(s, head...)
	for i, sl := range locks {
		l, ok := sl.(*lock)
		if !ok || l.client != s.client {
			errs[i] = fmt.Errorf("redisstore: %s: a %T is not a lock of this store's client", op, sl)
			continue
		}
		ls[i] = l
		if err := b.add(i, []string{l.lockKey}, l.token); err != nil {
			errs[i] = fmt.Errorf("redisstore: %s %q: %w", op, l.key, err)
		}
	}
	cmds := s.run(ctx, script, b.calls)
	for c, call := range b.calls {
		res, err := replies(cmds[c], len(call.idx), 1)
		for j, i := range call.idx {
			if err != nil {
				errs[i] = fmt.Errorf("redisstore: %s %q: %w", op, ls[i].key, err)
			} else {
				errs[i] = ls[i].held(op, res[j])
			}
		}
	}
	return errs
}
