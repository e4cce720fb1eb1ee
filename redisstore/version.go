package redisstore

import (
	"context"
	"crypto/sha1" //nolint:gosec // a fingerprint of bytes, compared with Lua's redis.sha1hex; not a security use
	"encoding/hex"
	"fmt"
	"strconv"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/herdcache/herd/store"
)

// The functions every versioned script shares. KEYS[1] is the entry,
// KEYS[2] its version record: "<version> <sha1 of the entry's bytes>", or
// "<version> -" for a tombstone. Versions are Lua numbers, exact below 2^53:
// four times the microseconds of the server's clock since 2023-11-14 stays
// below that until 2094. See the package documentation for the rules.
const versionLua = `
local function record()
	local rec = redis.call('GET', KEYS[2])
	if not rec then return 0, nil end
	local sp = string.find(rec, ' ', 1, true)
	if not sp then return 0, nil end
	return tonumber(string.sub(rec, 1, sp - 1)) or 0, string.sub(rec, sp + 1)
end

local function foreign(val)
	return tonumber(string.sub(redis.sha1hex(val), 1, 12), 16) * 4 + 2
end

-- current returns the version of the key holding val (false: no entry),
-- given its record: the version of its last write through the store and
-- that write's fingerprint.
local function current(val, last, fp)
	if fp == nil or fp == '-' then
		if val then return foreign(val) end
		return last
	end
	if not val then return last + 1 end
	if redis.sha1hex(val) == fp then return last end
	return foreign(val)
end

local function bump(last)
	local t = redis.call('TIME')
	local v = ((tonumber(t[1]) - 1699920000) * 1000000 + tonumber(t[2])) * 4
	if v <= last then v = last + 4 end
	return v
end

-- allowed reports whether a write expecting version want (''
-- for any) may go ahead, and returns the version of the key's last write.
local function allowed(want)
	local last, fp = record()
	if want == '' then return true, last end
	return current(redis.call('GET', KEYS[1]), last, fp) == tonumber(want), last
end
`

// ARGV[1] the entry's bytes, ARGV[2] their SHA-1 in hex, ARGV[3] the TTL in
// milliseconds (0: none), ARGV[4] the retention in milliseconds, ARGV[5] the
// version the key must have, or "" for an unconditional write. Returns the
// new version, or -1 when the key's version is not ARGV[5].
var setScript = redis.NewScript(versionLua + `
local ok, last = allowed(ARGV[5])
if not ok then return -1 end
local v = bump(last)
local rec = string.format('%.0f', v) .. ' ' .. ARGV[2]
local ttl = tonumber(ARGV[3])
if ttl > 0 then
	redis.call('SET', KEYS[1], ARGV[1], 'PX', ttl)
	redis.call('SET', KEYS[2], rec, 'PX', ttl + tonumber(ARGV[4]))
else
	redis.call('SET', KEYS[1], ARGV[1])
	redis.call('SET', KEYS[2], rec)
end
return v`)

// ARGV[1] the retention in milliseconds, ARGV[2] the version the key must
// have, or "". Returns the new version, or -1 on a conflict.
var deleteScript = redis.NewScript(versionLua + `
local ok, last = allowed(ARGV[2])
if not ok then return -1 end
local v = bump(last)
redis.call('DEL', KEYS[1])
redis.call('SET', KEYS[2], string.format('%.0f', v) .. ' -', 'PX', ARGV[1])
return v`)

// ARGV[1] the retention in milliseconds. Returns the key's version and its
// bytes (nil when absent). The record of a write whose entry another client
// deleted, if it has no TTL, is given the retention.
var getVersionScript = redis.NewScript(versionLua + `
local val = redis.call('GET', KEYS[1])
local last, fp = record()
local cur = current(val, last, fp)
if not val and fp ~= nil and fp ~= '-' and redis.call('PTTL', KEYS[2]) == -1 then
	redis.call('PEXPIRE', KEYS[2], ARGV[1])
end
return {cur, val}`)

// unconditional is the expected version of a write that checks none.
const unconditional = ""

// versionKey returns the Redis key of key's version record: in the hash
// slot of the entry's key, whatever braces key holds, so that Redis Cluster
// runs a script that touches both.
func (s *Store[T]) versionKey(key string) string {
	return s.prefix + "v:{" + slotTags()[keySlot(s.Key(key))] + "}:" + key
}

// slotTags returns, for every Cluster hash slot, a short string that hashes
// to it: base-36 numbers, the first to land in each slot.
var slotTags = sync.OnceValue(func() *[16384]string {
	var tags [16384]string
	for n, left := uint64(0), len(tags); left > 0; n++ {
		tag := strconv.FormatUint(n, 36)
		if slot := crc16(tag) % 16384; tags[slot] == "" {
			tags[slot] = tag
			left--
		}
	}
	return &tags
})

func millis(d time.Duration) int64 {
	return int64((d + time.Millisecond - 1) / time.Millisecond)
}

// versionArg is v as the scripts expect it.
func versionArg(v store.Version) string { return strconv.FormatUint(uint64(v), 10) }

// write runs the set script for e (the delete script if e's KeepUntil has
// passed) with the expected version want.
func (s *Store[T]) write(ctx context.Context, key string, e store.Entry[T], want string) (store.Version, error) {
	var ttl int64
	if !e.KeepUntil.IsZero() {
		d := time.Until(e.KeepUntil)
		if d <= 0 {
			return s.remove(ctx, key, want)
		}
		ttl = millis(d) // never shorter than KeepUntil
	}
	b, err := store.Encode(s.codec, e)
	if err != nil {
		return 0, err
	}
	sum := sha1.Sum(b) //nolint:gosec // see the import
	n, err := setScript.Run(ctx, s.client, []string{s.Key(key), s.versionKey(key)},
		b, hex.EncodeToString(sum[:]), ttl, millis(s.retention), want).Int64()
	return result(n, err)
}

// remove runs the delete script with the expected version want.
func (s *Store[T]) remove(ctx context.Context, key string, want string) (store.Version, error) {
	n, err := deleteScript.Run(ctx, s.client, []string{s.Key(key), s.versionKey(key)},
		millis(s.retention), want).Int64()
	return result(n, err)
}

func result(n int64, err error) (store.Version, error) {
	switch {
	case err != nil:
		return 0, err
	case n < 0:
		return 0, store.ErrConflict
	}
	return store.Version(n), nil
}

// GetVersion returns the entry of key, if it has a live one, and the key's
// version, in one script call (see "Versions" in the package documentation).
// Bytes that do not decode are a miss, counted in [Store.Corrupt], with the
// version of those bytes.
func (s *Store[T]) GetVersion(ctx context.Context, key string) (store.Entry[T], store.Version, bool, error) {
	if err := s.check(ctx); err != nil {
		return store.Entry[T]{}, 0, false, fmt.Errorf("redisstore: get version of %q: %w", key, err)
	}
	res, err := getVersionScript.Run(ctx, s.client, []string{s.Key(key), s.versionKey(key)}, millis(s.retention)).Slice()
	if err != nil {
		return store.Entry[T]{}, 0, false, fmt.Errorf("redisstore: get version of %q: %w", key, err)
	}
	if len(res) != 2 {
		return store.Entry[T]{}, 0, false, fmt.Errorf("redisstore: get version of %q: unexpected reply %v", key, res)
	}
	n, ok := res[0].(int64)
	if !ok || n < 0 {
		return store.Entry[T]{}, 0, false, fmt.Errorf("redisstore: get version of %q: unexpected version %v", key, res[0])
	}
	b, ok := res[1].(string)
	if !ok { // nil: no entry
		return store.Entry[T]{}, store.Version(n), false, nil
	}
	e, live := s.decode([]byte(b), time.Now())
	return e, store.Version(n), live, nil
}

// SetIf stores e as [Store.Set] does if the key's version is still v, in one
// script call that checks and bumps it; otherwise it writes nothing and
// returns an error wrapping [store.ErrConflict].
func (s *Store[T]) SetIf(ctx context.Context, key string, e store.Entry[T], v store.Version) error {
	if err := s.check(ctx); err != nil {
		return fmt.Errorf("redisstore: set %q if at version %d: %w", key, v, err)
	}
	if _, err := s.write(ctx, key, e, versionArg(v)); err != nil {
		return fmt.Errorf("redisstore: set %q if at version %d: %w", key, v, err)
	}
	return nil
}

// DeleteIf removes the entry of key as [Store.Delete] does if the key's
// version is still v, in one script call; otherwise it writes nothing and
// returns an error wrapping [store.ErrConflict].
func (s *Store[T]) DeleteIf(ctx context.Context, key string, v store.Version) error {
	if err := s.check(ctx); err != nil {
		return fmt.Errorf("redisstore: delete %q if at version %d: %w", key, v, err)
	}
	if _, err := s.remove(ctx, key, versionArg(v)); err != nil {
		return fmt.Errorf("redisstore: delete %q if at version %d: %w", key, v, err)
	}
	return nil
}

// VersionRetention returns how long the store remembers a write of a key
// (see [VersionRetention]).
func (s *Store[T]) VersionRetention() time.Duration { return s.retention }
