// Package ratelog logs one kind of message at most once per interval, so
// that a source or a store that is down does not flood the log with one
// record per call.
package ratelog

import (
	"context"
	"log/slog"
	"sync"
	"time"
)

// Every is the shortest interval between two records of one kind.
const Every = 10 * time.Second

// A Limiter logs one kind of message at most once per [Every], adding to the
// record how many were left out since the last one. The zero value is ready
// to use; it is safe for concurrent use.
type Limiter struct {
	mu         sync.Mutex
	last       time.Time
	suppressed int
}

// Log logs msg with attrs at level on l, unless a record of this kind was
// logged less than Every ago or l does not log level.
func (r *Limiter) Log(ctx context.Context, l *slog.Logger, level slog.Level, msg string, attrs ...slog.Attr) {
	if !l.Enabled(ctx, level) {
		return
	}
	now := time.Now()
	r.mu.Lock()
	if !r.last.IsZero() && now.Sub(r.last) < Every {
		r.suppressed++
		r.mu.Unlock()
		return
	}
	suppressed := r.suppressed
	r.last, r.suppressed = now, 0
	r.mu.Unlock()
	if suppressed > 0 {
		attrs = append(attrs, slog.Int("suppressed", suppressed))
	}
	l.LogAttrs(ctx, level, msg, attrs...)
}
