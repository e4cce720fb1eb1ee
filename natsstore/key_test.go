package natsstore

import (
	"regexp"
	"strings"
	"testing"

	"github.com/herdcache/herd/store/storetest"
)

var validToken = regexp.MustCompile(`^[-/_=a-zA-Z0-9]+$`)

func checkKey(t *testing.T, key string) string {
	t.Helper()
	token, hashed := encodeKey(key)
	if !validToken.MatchString(token) {
		t.Fatalf("encodeKey(%q) = %q: not a valid KV key token", key, token)
	}
	if len(token) > maxPlainKey+1 {
		t.Fatalf("encodeKey(%q) is %d bytes long", key, len(token))
	}
	if !hashed {
		back, err := decodeKey(token)
		if err != nil || back != key {
			t.Fatalf("decodeKey(encodeKey(%q)) = %q, %v", key, back, err)
		}
	}
	return token
}

func TestKeyEncoding(t *testing.T) {
	for key, want := range map[string]string{
		"":        "k",
		"user:42": "kuser=3A42",
		"a.b":     "ka=2Eb",
		"a=b":     "ka=3Db",
		"a/b_c-d": "ka/b_c-d",
		"\xff":    "k=FF",
	} {
		if got := checkKey(t, key); got != want {
			t.Errorf("encodeKey(%q) = %q, want %q", key, got, want)
		}
	}
	seen := map[string]string{}
	keys := append(storetest.OddKeys(4096), strings.Repeat("=", 400), strings.Repeat("k", 1022), strings.Repeat("k", 1023))
	for _, k := range keys {
		token := checkKey(t, k)
		if other, ok := seen[token]; ok {
			t.Fatalf("keys %q and %q both encode to %q", k, other, token)
		}
		seen[token] = k
	}
}

func TestDecodeKeyRejectsNonCanonical(t *testing.T) {
	for _, token := range []string{"", "x", "k=", "k=4", "k=4a", "k=41", "k=G0", "ka.b", "k=2E=", "h00"} {
		if k, err := decodeKey(token); err == nil {
			t.Errorf("decodeKey(%q) = %q, want an error", token, k)
		}
	}
}

func FuzzKey(f *testing.F) {
	for _, k := range storetest.OddKeys(64) {
		f.Add(k, k+"x")
	}
	f.Add("a", "=61")
	f.Fuzz(func(t *testing.T, a, b string) {
		ta, tb := checkKey(t, a), checkKey(t, b)
		if a != b && ta == tb {
			t.Fatalf("%q and %q both encode to %q", a, b, ta)
		}
		// Anything that decodes re-encodes to itself: one encoding per key.
		if k, err := decodeKey(a); err == nil && len(a) <= maxPlainKey {
			if tok, _ := encodeKey(k); tok != a {
				t.Fatalf("decodeKey(%q) = %q, which encodes to %q", a, k, tok)
			}
		}
	})
}
