package store

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"time"
)

// The envelope is how a remote store writes an [Entry]:
//
//	offset size  field
//	0      1     magic 0xE7
//	1      1     format version (1)
//	2      1     codec id
//	3      1     flags: bit 0 = not found; other bits must be 0
//	4      32    StoredAt, RefreshAt, ExpiresAt, KeepUntil: Unix nanoseconds,
//	             big-endian int64; 0 is the zero time.Time
//	36     ...   payload: the codec's bytes of the value (empty when not found)
//
// Times keep nanosecond precision but not the monotonic clock reading; the
// Unix epoch itself reads back as the zero time, and times outside the years
// 1678 to 2262 are clamped to that range.
const (
	envelopeMagic   byte = 0xE7
	envelopeVersion byte = 1
	envelopeHeader       = 36
	flagNotFound    byte = 1
)

// ErrCorrupt is returned by [Decode] for bytes that are not an envelope herd
// can read: too short, another writer's bytes, an unknown format version or
// flags, another codec, or a payload the codec rejects. Stores report such an
// entry as a miss and count it.
var ErrCorrupt = errors.New("store: corrupt entry")

// Encode returns the envelope of e with its value encoded by codec.
func Encode[T any](codec Codec[T], e Entry[T]) ([]byte, error) {
	var payload []byte
	if !e.NotFound {
		var err error
		if payload, err = codec.Marshal(e.Value); err != nil {
			return nil, err
		}
	}
	b := make([]byte, envelopeHeader, envelopeHeader+len(payload))
	b[0], b[1], b[2] = envelopeMagic, envelopeVersion, codec.ID()
	if e.NotFound {
		b[3] = flagNotFound
	}
	for i, t := range [4]time.Time{e.StoredAt, e.RefreshAt, e.ExpiresAt, e.KeepUntil} {
		binary.BigEndian.PutUint64(b[4+8*i:], uint64(unixNano(t)))
	}
	return append(b, payload...), nil
}

// Decode reads an envelope written by [Encode] with the same codec. Any input
// either decodes or returns an error wrapping [ErrCorrupt]; Decode never
// panics and allocates only what the codec needs for the payload.
func Decode[T any](codec Codec[T], b []byte) (Entry[T], error) {
	var e Entry[T]
	switch {
	case len(b) < envelopeHeader:
		return e, fmt.Errorf("%w: %d bytes, shorter than the %d-byte header", ErrCorrupt, len(b), envelopeHeader)
	case b[0] != envelopeMagic:
		return e, fmt.Errorf("%w: not a herd envelope (first byte %#02x)", ErrCorrupt, b[0])
	case b[1] != envelopeVersion:
		return e, fmt.Errorf("%w: envelope format version %d, this build reads %d", ErrCorrupt, b[1], envelopeVersion)
	case b[2] != codec.ID():
		return e, fmt.Errorf("%w: written with codec %d, reading with codec %d", ErrCorrupt, b[2], codec.ID())
	case b[3]&^flagNotFound != 0:
		return e, fmt.Errorf("%w: unknown flags %#02x", ErrCorrupt, b[3])
	}
	e.NotFound = b[3]&flagNotFound != 0
	e.StoredAt = timeAt(b, 0)
	e.RefreshAt = timeAt(b, 1)
	e.ExpiresAt = timeAt(b, 2)
	e.KeepUntil = timeAt(b, 3)
	payload := b[envelopeHeader:]
	if e.NotFound {
		if len(payload) != 0 {
			return Entry[T]{}, fmt.Errorf("%w: not-found entry with a %d-byte payload", ErrCorrupt, len(payload))
		}
		return e, nil
	}
	// v, not e.Value: the codec's pointer makes its target escape, and only
	// this branch should pay for that.
	var v T
	if err := codec.Unmarshal(payload, &v); err != nil {
		return Entry[T]{}, fmt.Errorf("%w: %w", ErrCorrupt, err)
	}
	e.Value = v
	return e, nil
}

// Times past what int64 nanoseconds hold (years 1678 to 2262) are clamped to
// those bounds.
var (
	minTime = time.Unix(0, math.MinInt64)
	maxTime = time.Unix(0, math.MaxInt64)
)

func unixNano(t time.Time) int64 {
	switch {
	case t.IsZero():
		return 0
	case t.Before(minTime):
		return math.MinInt64
	case t.After(maxTime):
		return math.MaxInt64
	}
	return t.UnixNano()
}

// timeAt reads the i-th time of the envelope header b.
func timeAt(b []byte, i int) time.Time {
	n := int64(binary.BigEndian.Uint64(b[4+8*i:]))
	if n == 0 {
		return time.Time{}
	}
	return time.Unix(0, n)
}
