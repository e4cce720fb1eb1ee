package fleet

import (
	"context"
	"errors"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// A read returns a stale value when a newer write of its key had completed
// before it began; how stale is counted from the first such write.
func TestSuperseded(t *testing.T) {
	h := newHistory(1)
	h.completed(0, 1, 10*time.Millisecond)
	h.completed(0, 2, 20*time.Millisecond)
	for _, tc := range []struct {
		seq   uint64
		began time.Duration
		late  time.Duration
		stale bool
	}{
		{0, 5 * time.Millisecond, 0, false},  // before any write completed
		{0, 10 * time.Millisecond, 0, false}, // as the first completed
		{0, 15 * time.Millisecond, 5 * time.Millisecond, true},
		{0, 25 * time.Millisecond, 15 * time.Millisecond, true}, // from the first newer write
		{1, 15 * time.Millisecond, 0, false},
		{1, 25 * time.Millisecond, 5 * time.Millisecond, true},
		{2, 25 * time.Millisecond, 0, false},
		{3, 25 * time.Millisecond, 0, false}, // a write in flight, read early
	} {
		late, stale := h.superseded(0, tc.seq, tc.began)
		if late != tc.late || stale != tc.stale {
			t.Errorf("value %d read at %v: superseded %v, %v; want %v, %v", tc.seq, tc.began, late, stale, tc.late, tc.stale)
		}
	}
	if _, stale := newHistory(1).superseded(0, 0, time.Hour); stale {
		t.Error("a key never written is stale")
	}
}

func TestValidate(t *testing.T) {
	for _, tc := range []struct {
		change func(*Config)
		want   string
	}{
		{func(c *Config) { c.Instances = 0 }, "instances must be between 1 and"},
		{func(c *Config) { c.Readers = 0 }, "clients must be between 1 and"},
		{func(c *Config) { c.ReadRate = 0 }, "read rate must be between 1 and"},
		{func(c *Config) { c.WriteRate = 0 }, "writes must be between 1 and"},
		{func(c *Config) { c.Keys = 0 }, "keys must be between 1 and"},
		{func(c *Config) { c.Duration = 0 }, "duration must be positive"},
		{func(c *Config) { c.TTL = -time.Second }, "ttl must be positive"},
		{func(c *Config) { c.Timeout = 0 }, "timeout must be positive"},
		{func(c *Config) { c.Allowance = 0 }, "allowance must be positive"},
	} {
		c := Defaults
		tc.change(&c)
		if err := c.Validate(); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Validate: %v, want %q", err, tc.want)
		}
	}
	if err := Defaults.Validate(); err != nil {
		t.Errorf("the defaults: %v", err)
	}
}

// On memory stores, in a synctest bubble where the run takes no real time:
// memory per instance serves values older than writes made through other
// instances, for up to the TTL; the shared store and the two-level store
// over it serve none, even within the allowance, since the memory store's
// stream delivers a change before the write returns.
func TestRunOnMemory(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c := Defaults
		c.Keys, c.Duration, c.ReadRate = 20, 3*time.Second, 200
		var started []string
		c.Progress = func(s string) { started = append(started, s) }
		r, err := Run(t.Context(), c)
		if err != nil {
			t.Fatal(err)
		}
		if r.Interrupted || len(r.Setups) != 3 || strings.Join(started, ",") != strings.Join(Setups(), ",") {
			t.Fatalf("interrupted %v, setups %+v, started %q", r.Interrupted, r.Setups, started)
		}
		for _, s := range r.Setups {
			// 6 readers × 200 reads/s and 50 writes/s for 3s, give or take
			// the tick at each end; never more reads than the readers send.
			if s.Reads < 3500 || s.Reads > 3600 || s.Writes < 148 || s.Writes > 150 || s.Errors != 0 || s.StoreErrors != 0 {
				t.Errorf("%s: %+v", s.Name, s)
			}
			if limit := float64(c.Readers * c.ReadRate); s.PerSec > limit {
				t.Errorf("%s: %.1f reads/s, of at most %v", s.Name, s.PerSec, limit)
			}
		}
		t.Logf("%+v", r.Setups)
		mem, _ := r.Setup(MemoryPerInstance)
		if mem.Stale == 0 || mem.Longest <= c.Allowance || mem.Longest > c.TTL {
			t.Errorf("memory per instance: %+v; want stale reads beyond the allowance, within the TTL", mem)
		}
		for _, name := range []string{FarOnly, TwoLevel} {
			s, _ := r.Setup(name)
			if s.Stale != 0 || s.Delivered != 0 || s.Longest != 0 {
				t.Errorf("%s: %+v; want no stale read", name, s)
			}
		}
		if _, err := r.Setup("nope"); !errors.Is(err, ErrNoSetup) {
			t.Errorf("Setup(nope): %v", err)
		}
	})
}

// A run whose context ends stops at once and says so.
func TestRunInterrupted(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ctx, cancel := context.WithTimeout(t.Context(), 1500*time.Millisecond)
		defer cancel()
		c := Defaults
		c.Keys, c.Duration, c.ReadRate = 20, time.Second, 100
		r, err := Run(ctx, c)
		if err != nil {
			t.Fatal(err)
		}
		if !r.Interrupted || len(r.Setups) != 2 {
			t.Fatalf("interrupted %v after %d setups, want true after 2", r.Interrupted, len(r.Setups))
		}
	})
}

// Before a setup's time starts, every instance has read every key once:
// each instance of memory per instance has loaded each key, and read
// them since as hits.
func TestWarmUp(t *testing.T) {
	c := Defaults
	c.Keys = 40
	insts, closeAll, err := fleetOf(t.Context(), &c, MemoryPerInstance, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer closeAll()
	h := newHistory(c.Keys)
	load := func(context.Context, string) (string, error) { return "0", nil }
	warmUp(t.Context(), &c, insts, h, load)
	for i, in := range insts {
		if st := in.cache.Stats(); st.Loads != uint64(c.Keys) || st.Misses != uint64(c.Keys) {
			t.Errorf("instance %d: %d loads, %d misses; want %d of each", i, st.Loads, st.Misses, c.Keys)
		}
	}
}
