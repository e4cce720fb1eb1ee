package herdtest_test

import (
	"log/slog"
	"testing"

	"github.com/herdcache/herd/internal/herdtest"
)

func TestRecorderKeepsEveryRecord(t *testing.T) {
	rec := &herdtest.Recorder{}
	log := slog.New(rec).With("ignored", true).WithGroup("g")
	log.Warn("one", "n", 1)
	log.Error("two")
	got := rec.Records()
	if len(got) != 2 || got[0].Message != "one" || got[1].Level != slog.LevelError {
		t.Fatalf("records = %v", got)
	}
	if n := rec.Attr(0, "n").Int64(); n != 1 {
		t.Fatalf("Attr(0, n) = %d", n)
	}
	if v := rec.Attr(1, "n"); v.Any() != nil {
		t.Fatalf("Attr of a missing key = %v", v)
	}
}

func TestPanickingPanics(t *testing.T) {
	defer func() {
		if r := recover(); r != "down" {
			t.Fatalf("recovered %v, want down", r)
		}
	}()
	slog.New(herdtest.Panicking("down")).Info("x")
}

func TestReturns(t *testing.T) {
	calls := 0
	herdtest.Returns(t, "a call", func() error { calls++; return nil })
	if calls != 1 {
		t.Fatalf("f ran %d times, want once", calls)
	}
}
