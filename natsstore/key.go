package natsstore

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"strings"
)

// maxPlainKey bounds the length of a key in its plain (reversible) form.
// Longer keys are hashed: NATS puts the subject on the protocol's control
// line, which a server refuses past max_control_line (4 KiB by default), and
// the refusal closes the connection.
const maxPlainKey = 1024

const upperHex = "0123456789ABCDEF"

// safe reports whether b stands for itself in an escaped key. '.' is left
// out so that a key is always one subject token (no leading, trailing or
// double dot), and '=' because it is the escape byte.
func safe(b byte) bool {
	return b >= 'a' && b <= 'z' || b >= 'A' && b <= 'Z' || b >= '0' && b <= '9' ||
		b == '-' || b == '_' || b == '/'
}

// escape writes s with every byte outside [-_/a-zA-Z0-9] as '=' and two
// upper-case hex digits. Each byte maps to a fixed code and no code is a
// prefix of another, so escape is injective and reversible.
func escape(s string) string {
	n := 0
	for i := 0; i < len(s); i++ {
		if !safe(s[i]) {
			n++
		}
	}
	if n == 0 {
		return s
	}
	var b strings.Builder
	b.Grow(len(s) + 2*n)
	for i := 0; i < len(s); i++ {
		c := s[i]
		if safe(c) {
			b.WriteByte(c)
			continue
		}
		b.WriteByte('=')
		b.WriteByte(upperHex[c>>4])
		b.WriteByte(upperHex[c&15])
	}
	return b.String()
}

var errBadKey = errors.New("natsstore: not an encoded key")

func unhex(c byte) (byte, bool) {
	switch {
	case c >= '0' && c <= '9':
		return c - '0', true
	case c >= 'A' && c <= 'F':
		return c - 'A' + 10, true
	}
	return 0, false
}

// unescape reverses escape. It accepts only escape's own output (upper-case
// hex, no escaped safe byte), so that every key has one encoding.
func unescape(s string) (string, error) {
	var b strings.Builder
	b.Grow(len(s))
	for i := 0; i < len(s); i++ {
		c := s[i]
		if safe(c) {
			b.WriteByte(c)
			continue
		}
		if c != '=' || i+2 >= len(s) {
			return "", errBadKey
		}
		hi, ok1 := unhex(s[i+1])
		lo, ok2 := unhex(s[i+2])
		if !ok1 || !ok2 || safe(hi<<4|lo) {
			return "", errBadKey
		}
		b.WriteByte(hi<<4 | lo)
		i += 2
	}
	return b.String(), nil
}

// encodeKey maps any Go string to one NATS KV key token: 'k' and the escaped
// key when that is at most maxPlainKey bytes, else 'h' and the hex SHA-256 of
// the key. The leading letter keeps the empty key valid and the two forms
// apart.
func encodeKey(key string) (token string, hashed bool) {
	e := escape(key)
	if len(e) < maxPlainKey {
		return "k" + e, false
	}
	sum := sha256.Sum256([]byte(key))
	return "h" + hex.EncodeToString(sum[:]), true
}

// decodeKey reverses encodeKey for the plain form.
func decodeKey(token string) (string, error) {
	if !strings.HasPrefix(token, "k") {
		return "", errBadKey
	}
	return unescape(token[1:])
}
