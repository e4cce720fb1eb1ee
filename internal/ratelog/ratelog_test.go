package ratelog_test

import (
	"context"
	"log/slog"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/herdcache/herd/internal/ratelog"
)

type counting struct {
	records    atomic.Int32
	suppressed atomic.Int64
	level      slog.Level
}

func (h *counting) Enabled(_ context.Context, l slog.Level) bool { return l >= h.level }
func (h *counting) WithAttrs([]slog.Attr) slog.Handler           { return h }
func (h *counting) WithGroup(string) slog.Handler                { return h }

func (h *counting) Handle(_ context.Context, r slog.Record) error {
	h.records.Add(1)
	r.Attrs(func(a slog.Attr) bool {
		if a.Key == "suppressed" {
			h.suppressed.Add(a.Value.Int64())
		}
		return true
	})
	return nil
}

func TestLogsOncePerIntervalAndCountsTheRest(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := &counting{}
		l := slog.New(h)
		var r ratelog.Limiter
		for range 100 {
			r.Log(context.Background(), l, slog.LevelWarn, "down")
		}
		if n := h.records.Load(); n != 1 {
			t.Fatalf("%d records for 100 calls in one instant, want 1", n)
		}
		time.Sleep(ratelog.Every)
		r.Log(context.Background(), l, slog.LevelWarn, "down")
		if n, s := h.records.Load(), h.suppressed.Load(); n != 2 || s != 99 {
			t.Fatalf("after the interval: %d records, %d suppressed; want 2 and 99", n, s)
		}
	})
}

func TestDisabledLevelIsNotCounted(t *testing.T) {
	h := &counting{level: slog.LevelError}
	var r ratelog.Limiter
	r.Log(context.Background(), slog.New(h), slog.LevelDebug, "noise")
	h.level = slog.LevelDebug
	r.Log(context.Background(), slog.New(h), slog.LevelDebug, "now")
	if n := h.records.Load(); n != 1 {
		t.Fatalf("%d records, want the first enabled call logged", n)
	}
}
