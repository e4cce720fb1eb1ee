package natsstore_test

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/herdcache/herd/natsstore"
	"github.com/herdcache/herd/store"
)

// Invalid options panic when made, naming the option; nothing is coerced.
func TestOptionsValidated(t *testing.T) {
	cases := map[string]func(){
		"MarkerTTL":       func() { natsstore.MarkerTTL(-1) },
		"MarkerTTL zero":  func() { natsstore.MarkerTTL(0) },
		"MarkerTTL ms":    func() { natsstore.MarkerTTL(1500 * time.Millisecond) },
		"Replicas":        func() { natsstore.Replicas(0) },
		"Replicas high":   func() { natsstore.Replicas(6) },
		"BulkConcurrency": func() { natsstore.BulkConcurrency(0) },
		"BulkInFlight":    func() { natsstore.BulkInFlight(0) },
		"WithLogger":      func() { natsstore.WithLogger(nil) },
		"WithCodec":       func() { natsstore.WithCodec[string](nil) },
	}
	for name, f := range cases {
		t.Run(name, func(t *testing.T) {
			defer func() {
				r := recover()
				msg, _ := r.(string)
				option := strings.Fields(name)[0]
				if !strings.HasPrefix(msg, "natsstore: "+option+" must be") {
					t.Fatalf("panic %v, want one naming %s", r, option)
				}
			}()
			f()
		})
	}
}

// A codec of another type than the store's is a panic at New.
func TestWithCodecOfAnotherType(t *testing.T) {
	srv := startServer(t)
	_, js := connect(t, srv.url())
	defer func() {
		if r := recover(); r == nil || !strings.Contains(r.(string), "WithCodec must be given a store.Codec[int]") {
			t.Fatalf("panic %v", r)
		}
	}()
	_, _ = natsstore.New[int](context.Background(), js, "codec", natsstore.WithCodec[string](store.JSON[string]{}))
}

// Close: idempotent; every call waits for the same shutdown within its own
// context; afterwards every method, a lock's included, returns ErrClosed;
// the connection stays open.
func TestCloseContract(t *testing.T) {
	srv := startServer(t)
	nc, js := connect(t, srv.url())
	s, err := natsstore.New[string](context.Background(), js, "close")
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	held, err := s.TryLock(ctx, "held", time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	// A watch whose function is running holds Close back until it returns.
	inFn, release := make(chan struct{}), make(chan struct{})
	var once sync.Once
	w, err := s.Watch(ctx, func(store.Change) {
		once.Do(func() {
			close(inFn)
			<-release
		})
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Set(ctx, "k", store.Entry[string]{Value: "v"}); err != nil {
		t.Fatal(err)
	}
	<-inFn
	short, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
	defer cancel()
	err = s.Close(short)
	if !errors.Is(err, context.DeadlineExceeded) || !strings.HasPrefix(err.Error(), "natsstore: close: ") {
		t.Fatalf("Close while fn runs, on a short context: %v", err)
	}
	for op, err := range operations(ctx, s, held) {
		if !errors.Is(err, natsstore.ErrClosed) {
			t.Errorf("%s after Close: %v, want ErrClosed", op, err)
		}
	}
	close(release)
	var wg sync.WaitGroup
	for range 3 {
		wg.Go(func() {
			if err := s.Close(ctx); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if !nc.IsConnected() {
		t.Fatal("Close closed the connection it was given")
	}
}

// A nil context is a programming error: every method panics, clearly.
func TestNilContextPanics(t *testing.T) {
	srv := startServer(t)
	_, js := connect(t, srv.url())
	s := newStore[string](t, js, "nilctx")
	var nilCtx context.Context
	calls := map[string]func(){
		"Get":         func() { _, _, _ = s.Get(nilCtx, "k") },
		"GetVersion":  func() { _, _, _, _ = s.GetVersion(nilCtx, "k") },
		"Set":         func() { _ = s.Set(nilCtx, "k", store.Entry[string]{}) },
		"SetIf":       func() { _ = s.SetIf(nilCtx, "k", store.Entry[string]{}, 0) },
		"Delete":      func() { _ = s.Delete(nilCtx, "k") },
		"DeleteIf":    func() { _ = s.DeleteIf(nilCtx, "k", 0) },
		"GetMany":     func() { _, _ = s.GetMany(nilCtx, []string{"k"}) },
		"TryLock":     func() { _, _ = s.TryLock(nilCtx, "k", time.Second) },
		"GetVersions": func() { _ = s.GetVersions(nilCtx, []string{"k"}) },
		"WriteIf":     func() { _ = s.WriteIf(nilCtx, []store.ConditionalWrite[string]{{Key: "k"}}) },
		"TryLockMany": func() { _ = s.TryLockMany(nilCtx, []string{"k"}, time.Second) },
		"ExtendMany":  func() { _ = s.ExtendMany(nilCtx, nil, time.Second) },
		"UnlockMany":  func() { _ = s.UnlockMany(nilCtx, nil) },
		"Watch":       func() { _, _ = s.Watch(nilCtx, func(store.Change) {}) },
		"Close":       func() { _ = s.Close(nilCtx) },
		"New":         func() { _, _ = natsstore.New[string](nilCtx, js, "nilctx") },
	}
	for name, call := range calls {
		t.Run(name, func(t *testing.T) {
			defer func() {
				if r := recover(); r != "natsstore: nil Context" {
					t.Fatalf("panic %v, want natsstore: nil Context", r)
				}
			}()
			call()
		})
	}
}

// GetMany: duplicates read once, absent and expired keys left out, an empty
// slice answered without a request, and with the server gone an error
// that says how many keys were not read, with the entries it did read.
func TestGetMany(t *testing.T) {
	srv := startServer(t)
	nc, js := connect(t, srv.url())
	s := newStore[int](t, js, "many", natsstore.BulkConcurrency(3))
	ctx := context.Background()
	want := map[string]store.Entry[int]{}
	var keys []string
	for i := range 50 {
		k := strings.Repeat("k", i%7) + string(rune('a'+i%26)) + strings.Repeat("z", i)
		e := store.Entry[int]{Value: i}
		if err := s.Set(ctx, k, e); err != nil {
			t.Fatal(err)
		}
		want[k] = e
		keys = append(keys, k, k) // every key twice
	}
	if err := s.Set(ctx, "expired", store.Entry[int]{Value: 1, KeepUntil: time.Now().Add(time.Millisecond)}); err != nil {
		t.Fatal(err)
	}
	keys = append(keys, "absent", "expired", strings.Repeat("long", 400))
	got, err := s.GetMany(ctx, keys)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != len(want) {
		t.Fatalf("GetMany found %d keys, want %d", len(got), len(want))
	}
	for k, e := range want {
		if got[k].Value != e.Value {
			t.Fatalf("GetMany[%q] = %d, want %d", k, got[k].Value, e.Value)
		}
	}
	if got, err := s.GetMany(ctx, nil); err != nil || len(got) != 0 {
		t.Fatalf("GetMany(nil) = %v, %v", got, err)
	}
	srv.stop()
	waitFor(t, 10*time.Second, "client notices", func() bool { return !nc.IsConnected() })
	got, err = s.GetMany(ctx, keys)
	if !errors.Is(err, natsstore.ErrUnavailable) || !strings.Contains(err.Error(), "53 of 53 keys not read") || got == nil {
		t.Fatalf("GetMany with the server gone: %v, %v", got, err)
	}
}

// A panic in the watch's function is recovered, logged on the logger of
// WithLogger with the error under "err", and reported as All; the watch
// goes on.
func TestWatchFunctionPanics(t *testing.T) {
	srv := startServer(t)
	_, js := connect(t, srv.url())
	var (
		mu  sync.Mutex
		buf bytes.Buffer
	)
	logger := slog.New(slog.NewJSONHandler(writerFunc(func(p []byte) (int, error) {
		mu.Lock()
		defer mu.Unlock()
		return buf.Write(p)
	}), nil))
	s := newStore[string](t, js, "logs", natsstore.WithLogger(logger))
	got := make(chan store.Change, 10)
	w, err := s.Watch(context.Background(), func(c store.Change) {
		if c.Key == "boom" {
			panic("boom")
		}
		got <- c
	})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	for _, k := range []string{"boom", "after"} {
		if err := s.Set(context.Background(), k, store.Entry[string]{Value: "v"}); err != nil {
			t.Fatal(err)
		}
	}
	if c := changes(got).next(t, 10*time.Second, "All for the panic"); !c.All {
		t.Fatalf("got %+v, want All", c)
	}
	changes(got).key(t, "after")
	mu.Lock()
	defer mu.Unlock()
	if !strings.Contains(buf.String(), `"err":"flight: function panicked: boom`) {
		t.Fatalf("log %q has no err key with the panic", buf.String())
	}
}

type writerFunc func([]byte) (int, error)

func (f writerFunc) Write(p []byte) (int, error) { return f(p) }
