package redisstore

import (
	"strings"
	"testing"

	"github.com/redis/go-redis/v9"
)

// Every key maps to its own Redis key, from which it can be read back, and
// a key's lock and fence share a Cluster slot, and so do its entry and
// version record.
func FuzzKeys(f *testing.F) {
	for _, k := range []string{"", "k", "{tag}", "a}b{c", "{", "}", "user:42", "\xff"} {
		f.Add("p", k)
		f.Add("p{x}", k)
		f.Add("{", k)
		f.Add("{}", k) // an empty hash tag: Redis hashes the whole key
	}
	client := redis.NewClient(&redis.Options{Addr: "127.0.0.1:1"}) // never dialled
	f.Cleanup(func() { _ = client.Close() })
	f.Fuzz(func(t *testing.T, prefix, key string) {
		if prefix == "" || strings.ContainsAny(prefix, ":{}") {
			return // Prefix panics: TestOptionsAreValidated
		}
		s := New[string](client, Prefix(prefix))
		rk := s.Key(key)
		p, rest, ok := strings.Cut(rk, ":")
		if !ok || p != prefix || rest != "e:"+key {
			t.Fatalf("Key(%q) = %q does not read back as prefix %q and key %q", key, rk, prefix, key)
		}
		lock, fence := s.lockKeys(key)
		if keySlot(lock) != keySlot(fence) {
			t.Fatalf("lock %q and fence %q in slots %d and %d", lock, fence, keySlot(lock), keySlot(fence))
		}
		vk := s.versionKey(key)
		if keySlot(vk) != keySlot(rk) {
			t.Fatalf("entry %q and version record %q in slots %d and %d", rk, vk, keySlot(rk), keySlot(vk))
		}
		if len(map[string]bool{rk: true, lock: true, fence: true, vk: true}) != 4 {
			t.Fatalf("key %q: entry, lock, fence and version keys collide: %q %q %q %q", key, rk, lock, fence, vk)
		}
	})
}
