package store

import (
	"encoding/json"
	"fmt"
)

// A Codec turns values into bytes and back for the stores that keep bytes.
// Its ID is written into every envelope, so that bytes written with another
// codec are recognised as such and read as a miss instead of garbage.
type Codec[T any] interface {
	// ID identifies the codec in the envelope. 0 is reserved; 1 to 15 are
	// herd's own codecs; pick 16 or above for your own.
	ID() byte
	Marshal(v T) ([]byte, error)
	Unmarshal(data []byte, v *T) error
}

// Codec IDs of the codecs in this package.
const (
	JSONCodecID  byte = 1
	BytesCodecID byte = 2
)

// JSON is the default [Codec]: encoding/json.
type JSON[T any] struct{}

// ID returns [JSONCodecID].
func (JSON[T]) ID() byte { return JSONCodecID }

// Marshal encodes v with encoding/json.
func (JSON[T]) Marshal(v T) ([]byte, error) {
	b, err := json.Marshal(v)
	if err != nil {
		return nil, fmt.Errorf("store: json encode: %w", err)
	}
	return b, nil
}

// Unmarshal decodes data with encoding/json into v.
func (JSON[T]) Unmarshal(data []byte, v *T) error {
	if err := json.Unmarshal(data, v); err != nil {
		return fmt.Errorf("store: json decode: %w", err)
	}
	return nil
}

// Bytes is a [Codec] for values that already are bytes: it copies them as
// they are.
type Bytes struct{}

// ID returns [BytesCodecID].
func (Bytes) ID() byte { return BytesCodecID }

// Marshal returns v itself.
func (Bytes) Marshal(v []byte) ([]byte, error) { return v, nil }

// Unmarshal sets *v to a copy of data.
func (Bytes) Unmarshal(data []byte, v *[]byte) error {
	*v = append([]byte(nil), data...)
	return nil
}
