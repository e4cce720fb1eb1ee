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

// The functions the versioned scripts share. ek is an entry's key, vk its
// version record: "<version> <sha1 of the entry's bytes>", or "<version> -"
// for a tombstone. Versions are Lua numbers, exact below 2^53: four times
// the microseconds of the server's clock since 2023-11-14 stays below that
// until 2094. See the package documentation for the rules.
const versionLua = `
local function record(vk)
	local rec = redis.call('GET', vk)
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

-- allowed reports whether a write of ek expecting version want (''
-- for any) may go ahead, and returns the version of the key's last write.
local function allowed(ek, vk, want)
	local last, fp = record(vk)
	if want == '' then return true, last end
	return current(redis.call('GET', ek), last, fp) == tonumber(want), last
end
`

// KEYS: for each write, the entry's key and its version record's. ARGV[1]:
// the retention in milliseconds; then five for each write: "s" to store an
// entry or "d" to delete it, the entry's bytes, their SHA-1 in hex, its TTL
// in milliseconds (0: none), and the version the key must have, or "" for
// an unconditional write (the bytes, SHA-1 and TTL of a delete are unused).
// Returns, for each write, the key's new version, or -1 when its version
// was not the one expected and nothing was written.
var writeScript = redis.NewScript(versionLua + `
local retention = tonumber(ARGV[1])
local out = {}
for i = 1, #KEYS / 2 do
	local ek, vk, a = KEYS[2 * i - 1], KEYS[2 * i], 5 * i - 3
	local ok, last = allowed(ek, vk, ARGV[a + 4])
	if not ok then
		out[i] = -1
	else
		local v = bump(last)
		if ARGV[a] == 'd' then
			redis.call('DEL', ek)
			redis.call('SET', vk, string.format('%.0f', v) .. ' -', 'PX', retention)
		else
			local rec = string.format('%.0f', v) .. ' ' .. ARGV[a + 2]
			local ttl = tonumber(ARGV[a + 3])
			if ttl > 0 then
				redis.call('SET', ek, ARGV[a + 1], 'PX', ttl)
				redis.call('SET', vk, rec, 'PX', ttl + retention)
			else
				redis.call('SET', ek, ARGV[a + 1])
				redis.call('SET', vk, rec)
			end
		end
		out[i] = v
	end
end
return out`)

// KEYS: for each key, the entry's key and its version record's. ARGV[1]:
// the retention in milliseconds. Returns, for each key, its version and its
// bytes (nil when absent). The record of a write whose entry another client
// deleted, if it has no TTL, is given the retention.
var getVersionsScript = redis.NewScript(versionLua + `
local out = {}
for i = 1, #KEYS, 2 do
	local val = redis.call('GET', KEYS[i])
	local last, fp = record(KEYS[i + 1])
	out[#out + 1] = current(val, last, fp)
	out[#out + 1] = val
	if not val and fp ~= nil and fp ~= '-' and redis.call('PTTL', KEYS[i + 1]) == -1 then
		redis.call('PEXPIRE', KEYS[i + 1], ARGV[1])
	end
end
return out`)

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

// A versionedWrite is one write of the write script: its keys and its five
// arguments (see writeScript).
type versionedWrite struct {
	keys [2]string
	args [5]any
}

// versionedWrite returns the write of e under key (a delete when del is set
// or e's KeepUntil has passed) expecting the version want.
func (s *Store[T]) versionedWrite(key string, e *store.Entry[T], del bool, want string) (versionedWrite, error) {
	w := versionedWrite{keys: [2]string{s.Key(key), s.versionKey(key)}}
	var ttl int64
	if !del && !e.KeepUntil.IsZero() {
		if d := time.Until(e.KeepUntil); d > 0 {
			ttl = millis(d) // never shorter than KeepUntil
		} else {
			del = true
		}
	}
	if del {
		w.args = [5]any{"d", "", "", 0, want}
		return w, nil
	}
	b, err := store.Encode(s.codec, *e)
	if err != nil {
		return w, err
	}
	sum := sha1.Sum(b) //nolint:gosec // see the import
	w.args = [5]any{"s", b, hex.EncodeToString(sum[:]), ttl, want}
	return w, nil
}

// write runs the write script for one write of e under key (a delete when
// del is set) with the expected version want.
func (s *Store[T]) write(ctx context.Context, key string, e *store.Entry[T], del bool, want string) (store.Version, error) {
	w, err := s.versionedWrite(key, e, del, want)
	if err != nil {
		return 0, err
	}
	res, err := writeScript.Run(ctx, s.client, w.keys[:], millis(s.retention), w.args[0], w.args[1], w.args[2], w.args[3], w.args[4]).Slice()
	if err != nil {
		return 0, err
	}
	if len(res) != 1 {
		return 0, fmt.Errorf("unexpected reply %v", res)
	}
	return written(res[0])
}

// written reads the write script's result of one write.
func written(r any) (store.Version, error) {
	n, ok := r.(int64)
	switch {
	case !ok:
		return 0, fmt.Errorf("unexpected version %v", r)
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
	type result = struct {
		e   store.Entry[T]
		v   store.Version
		ok  bool
		err error
	}
	r := bounded(ctx, s.patient, func() result {
		e, v, ok, err := s.getVersion(ctx, key)
		return result{e, v, ok, err}
	}, func(err error) result {
		return result{err: fmt.Errorf("redisstore: get version of %q: %w", key, err)}
	})
	return r.e, r.v, r.ok, r.err
}

func (s *Store[T]) getVersion(ctx context.Context, key string) (store.Entry[T], store.Version, bool, error) {
	if err := s.check(ctx); err != nil {
		return store.Entry[T]{}, 0, false, fmt.Errorf("redisstore: get version of %q: %w", key, err)
	}
	res, err := getVersionsScript.Run(ctx, s.client, []string{s.Key(key), s.versionKey(key)}, millis(s.retention)).Slice()
	if err == nil && len(res) != 2 {
		err = fmt.Errorf("unexpected reply %v", res)
	}
	if err != nil {
		return store.Entry[T]{}, 0, false, fmt.Errorf("redisstore: get version of %q: %w", key, err)
	}
	r := s.versionedRead(key, res[0], res[1], time.Now())
	return r.Entry, r.Version, r.Found, r.Err
}

// versionedRead reads the get-versions script's result for key: its
// version n and its bytes b (nil when absent). Bytes that do not decode are
// a miss, counted in [Store.Corrupt], with the version of those bytes.
func (s *Store[T]) versionedRead(key string, n, b any, now time.Time) store.VersionedRead[T] {
	v, ok := n.(int64)
	if !ok || v < 0 {
		return store.VersionedRead[T]{Err: fmt.Errorf("redisstore: get version of %q: unexpected version %v", key, n)}
	}
	r := store.VersionedRead[T]{Version: store.Version(v)}
	if bytes, ok := b.(string); ok { // nil: no entry
		r.Entry, r.Found = s.decode([]byte(bytes), now)
	}
	return r
}

// SetIf stores e as [Store.Set] does if the key's version is still v, in one
// script call that checks and bumps it; otherwise it writes nothing and
// returns an error wrapping [store.ErrConflict].
func (s *Store[T]) SetIf(ctx context.Context, key string, e store.Entry[T], v store.Version) error {
	return bounded(ctx, s.patient, func() error { return s.setIf(ctx, key, e, v) }, func(err error) error {
		return fmt.Errorf("redisstore: set %q if at version %d: %w", key, v, err)
	})
}

func (s *Store[T]) setIf(ctx context.Context, key string, e store.Entry[T], v store.Version) error {
	if err := s.check(ctx); err != nil {
		return fmt.Errorf("redisstore: set %q if at version %d: %w", key, v, err)
	}
	if _, err := s.write(ctx, key, &e, false, versionArg(v)); err != nil {
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
	if _, err := s.write(ctx, key, nil, true, versionArg(v)); err != nil {
		return fmt.Errorf("redisstore: delete %q if at version %d: %w", key, v, err)
	}
	return nil
}

// VersionRetention returns how long the store remembers a write of a key
// (see [VersionRetention]).
func (s *Store[T]) VersionRetention() time.Duration { return s.retention }

// GetVersions is [Store.GetVersion] for each of keys, in their order, in one
// round trip to each server that holds some of them: one script call (per
// 256 keys) per hash slot on Cluster, per shard on a Ring, and on a single
// server, sent together as one pipeline. A slot or shard that fails fails
// the keys it holds, and only those.
func (s *Store[T]) GetVersions(ctx context.Context, keys []string) []store.VersionedRead[T] {
	return bounded(ctx, s.patient, func() []store.VersionedRead[T] { return s.getVersions(ctx, keys) }, func(err error) []store.VersionedRead[T] {
		out := make([]store.VersionedRead[T], len(keys))
		for i, k := range keys {
			out[i].Err = fmt.Errorf("redisstore: get version of %q: %w", k, err)
		}
		return out
	})
}

func (s *Store[T]) getVersions(ctx context.Context, keys []string) []store.VersionedRead[T] {
	out := make([]store.VersionedRead[T], len(keys))
	fail := func(i int, err error) {
		out[i] = store.VersionedRead[T]{Err: fmt.Errorf("redisstore: get version of %q: %w", keys[i], err)}
	}
	if err := s.check(ctx); err != nil {
		for i := range keys {
			fail(i, err)
		}
		return out
	}
	if len(keys) == 0 {
		return out
	}
	b := newBatch(s, millis(s.retention))
	for i, k := range keys {
		if err := b.add(i, []string{s.Key(k), s.versionKey(k)}); err != nil {
			fail(i, err)
		}
	}
	cmds := s.run(ctx, getVersionsScript, b.calls)
	now := time.Now()
	for c, call := range b.calls {
		res, err := replies(cmds[c], len(call.idx), 2)
		for j, i := range call.idx {
			if err != nil {
				fail(i, err)
				continue
			}
			out[i] = s.versionedRead(keys[i], res[2*j], res[2*j+1], now)
		}
	}
	return out
}

// WriteIf makes each write as [Store.SetIf] or [Store.DeleteIf] does, in
// one round trip to each server that holds some of the keys: one script
// call (per 256 writes) per hash slot on Cluster, per shard on a Ring, and
// on a single server, sent together as one pipeline; each key's version is
// checked and bumped atomically with its write. It returns, for each
// write, nil, an error wrapping [store.ErrConflict], or the failure of the
// call that carried it (a failing slot or shard fails its writes only; what
// such a call wrote is not known).
func (s *Store[T]) WriteIf(ctx context.Context, writes []store.ConditionalWrite[T]) []error {
	return bounded(ctx, s.patient, func() []error { return s.writeIf(ctx, writes) }, func(err error) []error {
		errs := make([]error, len(writes))
		for i, w := range writes {
			errs[i] = fmt.Errorf("redisstore: write %q: %w", w.Key, err)
		}
		return errs
	})
}

func (s *Store[T]) writeIf(ctx context.Context, writes []store.ConditionalWrite[T]) []error {
	errs := make([]error, len(writes))
	fail := func(i int, err error) {
		w := &writes[i]
		if w.Delete {
			errs[i] = fmt.Errorf("redisstore: delete %q if at version %d: %w", w.Key, w.Version, err)
		} else {
			errs[i] = fmt.Errorf("redisstore: set %q if at version %d: %w", w.Key, w.Version, err)
		}
	}
	if err := s.check(ctx); err != nil {
		for i := range writes {
			fail(i, err)
		}
		return errs
	}
	if len(writes) == 0 {
		return errs
	}
	b := newBatch(s, millis(s.retention))
	for i := range writes {
		w := &writes[i]
		vw, err := s.versionedWrite(w.Key, &w.Entry, w.Delete, versionArg(w.Version))
		if err == nil {
			err = b.add(i, vw.keys[:], vw.args[:]...)
		}
		if err != nil {
			fail(i, err)
		}
	}
	cmds := s.run(ctx, writeScript, b.calls)
	for c, call := range b.calls {
		res, err := replies(cmds[c], len(call.idx), 1)
		for j, i := range call.idx {
			werr := err
			if werr == nil {
				_, werr = written(res[j])
			}
			if werr != nil {
				fail(i, werr)
			}
		}
	}
	return errs
}
