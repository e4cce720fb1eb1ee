package store_test

import (
	"bytes"
	"errors"
	"testing"
	"time"

	"github.com/herdcache/herd/store"
)

type user struct {
	ID   int    `json:"id"`
	Name string `json:"name"`
}

func TestEnvelopeRoundTrip(t *testing.T) {
	base := time.Date(2026, 11, 22, 10, 30, 0, 123456789, time.UTC)
	for _, tc := range []struct {
		name string
		e    store.Entry[user]
	}{
		{"value with every time", store.Entry[user]{
			Value: user{42, "Ada"}, StoredAt: base, RefreshAt: base.Add(time.Minute),
			ExpiresAt: base.Add(time.Hour), KeepUntil: base.Add(2 * time.Hour),
		}},
		{"zero times", store.Entry[user]{Value: user{1, "x"}}},
		{"not found", store.Entry[user]{NotFound: true, StoredAt: base, ExpiresAt: base.Add(time.Second), KeepUntil: base.Add(time.Second)}},
		{"zero value", store.Entry[user]{StoredAt: base}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b, err := store.Encode[user](store.JSON[user]{}, tc.e)
			if err != nil {
				t.Fatal(err)
			}
			got, err := store.Decode[user](store.JSON[user]{}, b)
			if err != nil {
				t.Fatal(err)
			}
			if got.Value != tc.e.Value || got.NotFound != tc.e.NotFound ||
				!got.StoredAt.Equal(tc.e.StoredAt) || !got.RefreshAt.Equal(tc.e.RefreshAt) ||
				!got.ExpiresAt.Equal(tc.e.ExpiresAt) || !got.KeepUntil.Equal(tc.e.KeepUntil) {
				t.Fatalf("round trip changed the entry:\n got %+v\nwant %+v", got, tc.e)
			}
			if tc.e.RefreshAt.IsZero() && !got.RefreshAt.IsZero() {
				t.Fatal("a zero time came back as non-zero")
			}
		})
	}
}

func TestEnvelopeClampsFarTimes(t *testing.T) {
	far := time.Date(3000, 1, 1, 0, 0, 0, 0, time.UTC)
	b, err := store.Encode(store.Bytes{}, store.Entry[[]byte]{Value: []byte("v"), ExpiresAt: far})
	if err != nil {
		t.Fatal(err)
	}
	e, err := store.Decode(store.Bytes{}, b)
	if err != nil {
		t.Fatal(err)
	}
	if e.ExpiresAt.Year() != 2262 {
		t.Fatalf("year 3000 read back as %v, want clamped to 2262", e.ExpiresAt)
	}
}

func TestDecodeRejectsWhatItCannotRead(t *testing.T) {
	good, err := store.Encode(store.Bytes{}, store.Entry[[]byte]{Value: []byte("payload"), StoredAt: time.Now()})
	if err != nil {
		t.Fatal(err)
	}
	with := func(i int, v byte) []byte {
		b := bytes.Clone(good)
		b[i] = v
		return b
	}
	notFound, _ := store.Encode(store.Bytes{}, store.Entry[[]byte]{NotFound: true})
	for _, tc := range []struct {
		name string
		b    []byte
	}{
		{"empty", nil},
		{"truncated header", good[:20]},
		{"foreign bytes", []byte(`{"id":42,"name":"written by another program"}`)},
		{"bad magic", with(0, 'x')},
		{"newer version", with(1, 2)},
		{"other codec", with(2, store.JSONCodecID)},
		{"unknown flag", with(3, 0x80)},
		{"not-found with payload", append(bytes.Clone(notFound), 'x')},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := store.Decode(store.Bytes{}, tc.b)
			if !errors.Is(err, store.ErrCorrupt) {
				t.Fatalf("Decode = %v, want ErrCorrupt", err)
			}
		})
	}
	t.Run("payload the codec rejects", func(t *testing.T) {
		b, _ := store.Encode[user](store.JSON[user]{}, store.Entry[user]{Value: user{1, "a"}})
		b = b[:len(b)-3] // cut the JSON short
		if _, err := store.Decode[user](store.JSON[user]{}, b); !errors.Is(err, store.ErrCorrupt) {
			t.Fatalf("Decode = %v, want ErrCorrupt", err)
		}
	})
}

// FuzzDecode holds that any input either decodes or returns ErrCorrupt, never
// panics, and that what decodes encodes back to the same bytes.
func FuzzDecode(f *testing.F) {
	now := time.Date(2026, 1, 2, 3, 4, 5, 6, time.UTC)
	for _, e := range []store.Entry[[]byte]{
		{Value: []byte("hello"), StoredAt: now, RefreshAt: now.Add(time.Second), ExpiresAt: now.Add(time.Hour), KeepUntil: now.Add(2 * time.Hour)},
		{NotFound: true, StoredAt: now},
		{},
	} {
		b, err := store.Encode(store.Bytes{}, e)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add([]byte{})
	f.Add([]byte("\xe7\x01\x02"))
	f.Fuzz(func(t *testing.T, b []byte) {
		e, err := store.Decode(store.Bytes{}, b)
		if err != nil {
			if !errors.Is(err, store.ErrCorrupt) {
				t.Fatalf("Decode error %v does not wrap ErrCorrupt", err)
			}
			return
		}
		again, err := store.Encode(store.Bytes{}, e)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(again, b) {
			t.Fatalf("decode then encode changed the bytes:\n in %x\nout %x", b, again)
		}
		// The JSON codec must be just as safe on the same bytes.
		if _, err := store.Decode[user](store.JSON[user]{}, b); err != nil && !errors.Is(err, store.ErrCorrupt) {
			t.Fatalf("JSON Decode error %v does not wrap ErrCorrupt", err)
		}
	})
}

// TestDecodeAllocatesOnlyForThePayload pins down that a hostile header cannot
// make Decode allocate: a not-found entry decodes with no allocation at all.
func TestDecodeAllocatesOnlyForThePayload(t *testing.T) {
	b, _ := store.Encode(store.Bytes{}, store.Entry[[]byte]{NotFound: true, StoredAt: time.Now()})
	allocs := testing.AllocsPerRun(100, func() {
		if _, err := store.Decode(store.Bytes{}, b); err != nil {
			t.Fatal(err)
		}
	})
	if allocs != 0 {
		t.Fatalf("Decode of a not-found entry allocated %v times", allocs)
	}
	// A corrupt header costs the error and its message, whatever the input's size.
	var perSize []float64
	for _, size := range []int{64, 1 << 20} {
		bad := bytes.Repeat([]byte{0xff}, size)
		bad[0] = 0xE7
		perSize = append(perSize, testing.AllocsPerRun(20, func() { _, _ = store.Decode(store.Bytes{}, bad) }))
	}
	if perSize[0] > 4 || perSize[1] > 4 {
		t.Fatalf("Decode of a corrupt header allocated %v times for 64 bytes and %v for 1 MiB", perSize[0], perSize[1])
	}
}
