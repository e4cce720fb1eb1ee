// Package herdtest holds what the tests of herd's packages share: the slog
// handlers they log to (one that keeps every record, one that panics, to test
// what a package does when its logger fails on one of its own goroutines),
// and a deadline for a call that a bug would leave hanging on a mutex.
package herdtest

import (
	"context"
	"log/slog"
	"sync"
	"testing"
	"time"
)

// Returns runs f on a new goroutine and fails t if f has not returned within
// 10 seconds, or if it returns an error. It is for calls that a bug would
// hang where testing/synctest cannot see it: on a mutex left locked (a
// goroutine blocked on a mutex looks busy to synctest) or on a network
// call. A hung f is left behind, and the package's goroutine-leak check
// reports it too.
func Returns(t testing.TB, what string, f func() error) {
	t.Helper()
	done := make(chan error, 1)
	go func() { done <- f() }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("%s: %v", what, err)
		}
	case <-time.After(10 * time.Second):
		t.Fatalf("%s did not return within 10s", what)
	}
}

// Recorder is a slog.Handler that keeps every record. It is safe for
// concurrent use; its zero value is ready.
type Recorder struct {
	mu      sync.Mutex
	records []slog.Record
}

// Enabled reports true for every level.
func (r *Recorder) Enabled(context.Context, slog.Level) bool { return true }

// Handle keeps a copy of rec.
func (r *Recorder) Handle(_ context.Context, rec slog.Record) error {
	r.mu.Lock()
	r.records = append(r.records, rec.Clone())
	r.mu.Unlock()
	return nil
}

// WithAttrs returns r: the attributes are not kept.
func (r *Recorder) WithAttrs([]slog.Attr) slog.Handler { return r }

// WithGroup returns r: the group is not kept.
func (r *Recorder) WithGroup(string) slog.Handler { return r }

// Records returns a copy of the records kept so far.
func (r *Recorder) Records() []slog.Record {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]slog.Record(nil), r.records...)
}

// Attr returns the value of the attribute key of record i, or the zero Value.
func (r *Recorder) Attr(i int, key string) slog.Value {
	var v slog.Value
	r.Records()[i].Attrs(func(a slog.Attr) bool {
		if a.Key == key {
			v = a.Value
			return false
		}
		return true
	})
	return v
}

// Panicking is a slog.Handler that panics with its own value on every record.
type Panicking string

// Enabled reports true for every level.
func (Panicking) Enabled(context.Context, slog.Level) bool { return true }

// Handle panics with p.
func (p Panicking) Handle(context.Context, slog.Record) error { panic(string(p)) }

// WithAttrs returns p.
func (p Panicking) WithAttrs([]slog.Attr) slog.Handler { return p }

// WithGroup returns p.
func (p Panicking) WithGroup(string) slog.Handler { return p }
