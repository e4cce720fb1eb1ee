package history_test

import (
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/herdcache/herd/internal/history"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// Many goroutines record at once: every operation is kept, with the
// interval it was given, and the check of a register that each goroutine
// writes and reads back finds nothing.
func TestRecordFromManyGoroutines(t *testing.T) {
	h := history.New()
	const goroutines, each = 8, 1000
	var wg sync.WaitGroup
	for g := range goroutines {
		wg.Go(func() {
			key := fmt.Sprint("k", g)
			for i := range each / 2 {
				v := fmt.Sprint(g, "-", i)
				start := h.Now()
				h.Write(g, key, start, v, nil)
				start = h.Now()
				h.Read(g, key, start, v, true, nil)
			}
		})
	}
	wg.Wait()
	ops := h.Ops()
	if len(ops) != goroutines*each || h.Len() != len(ops) {
		t.Fatalf("%d operations kept (Len %d), want %d", len(ops), h.Len(), goroutines*each)
	}
	for _, op := range ops {
		if op.End < op.Start || op.Failed {
			t.Fatalf("op %v", op)
		}
	}
	rep, err := h.Check(history.Config{})
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Violations) != 0 || rep.Reads != goroutines*each/2 || rep.Keys != goroutines {
		t.Fatalf("report %v: %v", rep, rep.Violations)
	}
}

func TestRecordHelpers(t *testing.T) {
	h := history.New()
	fail := errors.New("down")
	h.Read(1, "k", h.Now(), "", false, nil)
	h.Read(1, "k", h.Now(), "", false, fail)
	h.Write(2, "k", h.Now(), "v", fail)
	h.Delete(3, "k", h.Now(), nil)
	h.Fault(history.Fault{Instance: history.Everyone, What: "frozen", Start: h.Now(), End: h.Now(), Bound: time.Second})
	ops := h.Ops()
	want := []history.Op{
		{Instance: 1, Kind: history.Read, Key: "k", Absent: true},
		{Instance: 1, Kind: history.Read, Key: "k", Absent: true, Failed: true},
		{Instance: 2, Kind: history.Write, Key: "k", Value: "v", Failed: true},
		{Instance: 3, Kind: history.Write, Key: "k", Absent: true},
	}
	for i := range want {
		got := ops[i]
		got.Start, got.End = 0, 0
		if got != want[i] {
			t.Errorf("op %d = %+v, want %+v", i, got, want[i])
		}
	}
	if f := h.Faults(); len(f) != 1 || f[0].What != "frozen" {
		t.Errorf("faults %v", f)
	}
	if s := fmt.Sprint(h.Faults()[0]); s == "" || ops[2].String() == "" {
		t.Error("empty strings")
	}
}

// The clock is monotonic: readings never go back.
func TestNowNeverGoesBack(t *testing.T) {
	h := history.New()
	prev := h.Now()
	for range 10_000 {
		now := h.Now()
		if now < prev {
			t.Fatalf("Now went back from %v to %v", prev, now)
		}
		prev = now
	}
}
