package history_test

import (
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/herdcache/herd/internal/history"
)

// Hand-built histories: times are in milliseconds; "k" is the key unless
// an op says otherwise.

func ms(n int) time.Duration { return time.Duration(n) * time.Millisecond }

func set(inst int, v string, start, end int) history.Op {
	return history.Op{Instance: inst, Kind: history.Write, Key: "k", Value: v, Start: ms(start), End: ms(end)}
}

func del(inst, start, end int) history.Op {
	return history.Op{Instance: inst, Kind: history.Write, Key: "k", Absent: true, Start: ms(start), End: ms(end)}
}

func get(inst int, v string, start, end int) history.Op {
	return history.Op{Instance: inst, Kind: history.Read, Key: "k", Value: v, Start: ms(start), End: ms(end)}
}

func miss(inst, start, end int) history.Op {
	return history.Op{Instance: inst, Kind: history.Read, Key: "k", Absent: true, Start: ms(start), End: ms(end)}
}

func failed(op history.Op) history.Op { op.Failed = true; return op }

func onKey(key string, op history.Op) history.Op { op.Key = key; return op }

func fault(inst, start, end, bound int) history.Fault {
	return history.Fault{Instance: inst, What: "test", Start: ms(start), End: ms(end), Bound: ms(bound)}
}

type counts map[history.Rule]int

func TestCheck(t *testing.T) {
	for _, tc := range []struct {
		name     string
		ops      []history.Op
		faults   []history.Fault
		bound    int // Config.Bound
		recovery int // Config.Recovery
		want     counts
	}{
		// Histories that must pass.
		{
			name: "fresh reads",
			ops: []history.Op{
				miss(1, 0, 1), set(0, "a", 1, 2), get(1, "a", 3, 4), set(0, "b", 5, 6), get(1, "b", 7, 8),
				del(2, 9, 10), miss(1, 11, 12),
			},
		},
		{
			name: "a read concurrent with a write returns either value",
			ops:  []history.Op{set(0, "a", 0, 1), set(0, "b", 5, 10), get(1, "a", 6, 7), get(2, "b", 6, 7), get(1, "b", 8, 9)},
		},
		{
			// Neither write completed before the other began: the reads
			// may see them in either order, on any instance.
			name: "concurrent writes read in either order",
			ops: []history.Op{
				set(0, "a", 0, 10), set(1, "b", 5, 15),
				get(2, "b", 16, 17), get(2, "a", 18, 19), get(2, "b", 20, 21),
				get(0, "b", 16, 17), get(1, "a", 16, 17),
			},
		},
		{
			name:  "stale within the bound",
			ops:   []history.Op{set(0, "a", 0, 1), set(0, "b", 2, 3), get(1, "a", 5, 6)},
			bound: 5,
		},
		{
			name:  "a miss explained by a delete",
			ops:   []history.Op{set(0, "a", 0, 1), del(1, 2, 3), miss(2, 10, 11), get(2, "a", 1, 2)},
			bound: 5,
		},
		{
			name: "a miss before the first write completed",
			ops:  []history.Op{set(0, "a", 10, 20), miss(1, 15, 16), get(1, "a", 17, 18), miss(2, 0, 11)},
		},
		{
			// A failed write may land any time after it began, and never
			// counts as completed.
			name: "a failed write may land late, and replaces nothing for sure",
			ops: []history.Op{
				set(0, "a", 0, 1), failed(set(0, "b", 2, 3)), get(1, "a", 100, 101), get(1, "b", 102, 103),
				get(2, "a", 104, 105), get(0, "a", 106, 107),
			},
		},
		{
			name:   "a fault of the instance excuses what was replaced during it",
			ops:    []history.Op{set(0, "a", 0, 1), set(1, "b", 10, 11), get(0, "a", 100, 101)},
			faults: []history.Fault{fault(0, 5, 50, 200)},
			bound:  5,
		},
		{
			name:   "a fault of everyone excuses every instance",
			ops:    []history.Op{set(0, "a", 0, 1), set(1, "b", 10, 11), get(0, "a", 100, 101), get(2, "a", 100, 101)},
			faults: []history.Fault{fault(history.Everyone, 5, 50, 200)},
			bound:  5,
		},
		{
			name:     "recovery extends a fault",
			ops:      []history.Op{set(0, "a", 0, 1), set(1, "b", 10, 11), get(0, "a", 100, 101)},
			faults:   []history.Fault{fault(0, 0, 5, 200)},
			bound:    5,
			recovery: 10,
		},
		{
			name: "failed reads are not checked",
			ops:  []history.Op{set(0, "a", 0, 1), set(0, "b", 2, 3), failed(get(0, "a", 10, 11)), failed(get(0, "zzz", 10, 11))},
		},
		{
			name: "keys are apart",
			ops: []history.Op{
				set(0, "a", 0, 1), onKey("j", set(0, "a", 0, 1)), onKey("j", set(0, "b", 2, 3)),
				get(0, "a", 10, 11), onKey("j", get(0, "b", 10, 11)),
			},
		},

		// Histories that must fail.
		{
			name:  "stale beyond the bound",
			ops:   []history.Op{set(0, "a", 0, 1), set(0, "b", 2, 3), get(1, "a", 10, 11)},
			bound: 5,
			want:  counts{history.Stale: 1},
		},
		{
			name:  "a miss long after the first write",
			ops:   []history.Op{set(0, "a", 0, 1), miss(1, 10, 11)},
			bound: 5,
			want:  counts{history.Stale: 1},
		},
		{
			name:  "a miss long after the delete was replaced",
			ops:   []history.Op{set(0, "a", 0, 1), del(0, 2, 3), set(0, "b", 4, 5), miss(1, 20, 21)},
			bound: 5,
			want:  counts{history.Stale: 1},
		},
		{
			name:   "a fault of another instance excuses nothing",
			ops:    []history.Op{set(0, "a", 0, 1), set(1, "b", 10, 11), get(0, "a", 100, 101)},
			faults: []history.Fault{fault(2, 5, 50, 200)},
			bound:  5,
			want:   counts{history.Stale: 1},
		},
		{
			name:   "a fault over before the value was replaced excuses nothing",
			ops:    []history.Op{set(0, "a", 0, 1), set(1, "b", 10, 11), get(0, "a", 100, 101)},
			faults: []history.Fault{fault(0, 0, 5, 200)},
			bound:  5,
			want:   counts{history.Stale: 1},
		},
		{
			name:   "a fault's bound is a bound",
			ops:    []history.Op{set(0, "a", 0, 1), set(1, "b", 10, 11), get(0, "a", 300, 301)},
			faults: []history.Fault{fault(0, 5, 50, 200)},
			bound:  5,
			want:   counts{history.Stale: 1},
		},
		{
			name:  "read your writes: another's older value",
			ops:   []history.Op{set(1, "a", 0, 1), set(0, "b", 2, 3), get(0, "a", 4, 5)},
			bound: 100,
			want:  counts{history.ReadYourWrites: 1},
		},
		{
			name:  "read your writes: a value the instance deleted",
			ops:   []history.Op{set(0, "a", 0, 1), del(0, 2, 3), get(0, "a", 4, 5)},
			bound: 100,
			want:  counts{history.ReadYourWrites: 1},
		},
		{
			name:  "read your writes: a miss after the instance's write",
			ops:   []history.Op{set(0, "a", 0, 1), miss(0, 4, 5)},
			bound: 100,
			want:  counts{history.ReadYourWrites: 1},
		},
		{
			name:  "monotonic reads: back to an older value",
			ops:   []history.Op{set(0, "a", 0, 1), set(0, "b", 2, 3), get(1, "b", 4, 5), get(1, "a", 6, 7)},
			bound: 100,
			want:  counts{history.MonotonicReads: 1},
		},
		{
			name:  "monotonic reads: back to the initial absence",
			ops:   []history.Op{set(0, "a", 0, 1), get(1, "a", 2, 3), miss(1, 4, 5)},
			bound: 100,
			want:  counts{history.MonotonicReads: 1},
		},
		{
			// The same two reads on two instances break no per-instance rule.
			name:  "monotonic reads are per instance",
			ops:   []history.Op{set(0, "a", 0, 1), set(0, "b", 2, 3), get(1, "b", 4, 5), get(2, "a", 6, 7)},
			bound: 100,
		},
		{
			name: "unwritten values",
			ops: []history.Op{
				get(0, "never written", 0, 1),
				set(0, "later", 10, 11), get(1, "later", 2, 9),
				onKey("j", set(0, "a", 0, 1)), get(1, "a", 2, 3),
			},
			want: counts{history.Unwritten: 3},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := history.Config{Bound: ms(tc.bound), Recovery: ms(tc.recovery)}
			rep, err := history.Check(tc.ops, tc.faults, cfg)
			if err != nil {
				t.Fatal(err)
			}
			for _, rule := range history.Rules {
				if got := rep.Count(rule); got != tc.want[rule] {
					t.Errorf("%v: %d violations, want %d", rule, got, tc.want[rule])
				}
			}
			if t.Failed() {
				for _, v := range rep.Violations {
					t.Log(v)
				}
			}
			// The order in which operations were recorded does not matter.
			shuffled := append([]history.Op(nil), tc.ops...)
			rand.Shuffle(len(shuffled), func(i, j int) { shuffled[i], shuffled[j] = shuffled[j], shuffled[i] })
			again, err := history.Check(shuffled, tc.faults, cfg)
			if err != nil {
				t.Fatal(err)
			}
			if again.String() != rep.String() || len(again.Violations) != len(rep.Violations) {
				t.Errorf("shuffled: %v\nwant %v", again, rep)
			}
		})
	}
}

func TestCheckFigures(t *testing.T) {
	ops := []history.Op{
		set(0, "a", 0, 1), set(0, "b", 2, 3), failed(set(0, "c", 3, 4)), del(3, 30, 31),
		get(1, "a", 5, 6),   // 2ms stale
		get(2, "a", 10, 11), // 7ms stale, excused by the fault of instance 2
		get(1, "b", 40, 41), // 9ms stale: beyond the bound
		miss(1, 42, 43),     // fresh
		failed(miss(1, 44, 45)),
	}
	rep, err := history.Check(ops, []history.Fault{fault(2, 0, 20, 50)}, history.Config{Bound: ms(5)})
	if err != nil {
		t.Fatal(err)
	}
	want := history.Report{
		Ops: 9, Reads: 4, Writes: 3, FailedReads: 1, FailedWrites: 1, Keys: 1,
		StaleReads: 3, MaxStaleness: ms(9), MaxHealthyStaleness: ms(9),
	}
	got := *rep
	got.Violations = nil
	if got.String() != want.String() || got.StaleReads != want.StaleReads || got.MaxHealthyStaleness != want.MaxHealthyStaleness {
		t.Errorf("report\n%v\nwant\n%v", &got, &want)
	}
	if len(rep.Violations) != 1 {
		t.Fatalf("violations: %v", rep.Violations)
	}
	v := rep.Violations[0]
	if v.Rule != history.Stale || v.Read != ops[6] {
		t.Fatalf("violation %v", v)
	}
	// The violation names the value read and the write that replaced it.
	if len(v.Involved) != 2 || v.Involved[0] != ops[1] || v.Involved[1] != ops[3] {
		t.Errorf("involved: %v", v.Involved)
	}
	for _, s := range []string{"bounded staleness", "instance 1 read k = b [40ms, 41ms]", "instance 3 deleted k [30ms, 31ms]", "9ms"} {
		if !strings.Contains(v.String(), s) {
			t.Errorf("%q does not say %q", v, s)
		}
	}
}

func TestCheckExcusedStalenessIsNotHealthy(t *testing.T) {
	ops := []history.Op{set(0, "a", 0, 1), set(0, "b", 2, 3), get(2, "a", 10, 11), get(1, "a", 4, 5)}
	rep, err := history.Check(ops, []history.Fault{fault(2, 0, 20, 50)}, history.Config{Bound: ms(5)})
	if err != nil {
		t.Fatal(err)
	}
	if rep.MaxStaleness != ms(7) || rep.MaxHealthyStaleness != ms(1) || len(rep.Violations) != 0 {
		t.Fatalf("report %v: %v", rep, rep.Violations)
	}
}

func TestCheckRefusesWhatItCannotCheck(t *testing.T) {
	for name, ops := range map[string][]history.Op{
		"one value written twice": {set(0, "a", 0, 1), set(1, "a", 2, 3)},
		"an end before the start": {set(0, "a", 2, 1)},
		"no kind":                 {{Key: "k"}},
	} {
		if _, err := history.Check(ops, nil, history.Config{}); err == nil {
			t.Errorf("%s: no error", name)
		}
	}
	// Deletes and failed writes are writes too, and deletes write no value.
	if _, err := history.Check([]history.Op{del(0, 0, 1), del(1, 0, 1), set(0, "a", 0, 1)}, nil, history.Config{}); err != nil {
		t.Errorf("two deletes: %v", err)
	}
}

func TestCheckLargeHistory(t *testing.T) {
	// A register written in turn by three writers and read by three
	// readers, each read returning the latest completed write: no
	// violation, and the check takes O(n log n).
	var ops []history.Op
	latest := ""
	for i := range 30_000 {
		at := 2 * i
		if i%3 == 0 {
			v := string(rune('a'+i%26)) + "-" + time.Duration(i).String()
			ops = append(ops, history.Op{Instance: i % 7, Kind: history.Write, Key: "k", Value: v, Start: ms(at), End: ms(at + 1)})
			latest = v
			continue
		}
		ops = append(ops, history.Op{Instance: i % 5, Kind: history.Read, Key: "k", Value: latest, Start: ms(at), End: ms(at + 1)})
	}
	rep, err := history.Check(ops, nil, history.Config{})
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Violations) != 0 || rep.Reads != 20_000 || rep.MaxStaleness != 0 {
		t.Fatalf("report %v", rep)
	}
}

// A read that goes back within the grace after the earlier read is
// counted, not a violation; past the grace, it is one.
func TestCheckMonotonicGrace(t *testing.T) {
	ops := []history.Op{
		set(0, "a", 0, 1), set(1, "b", 2, 3),
		get(0, "b", 4, 5), get(0, "a", 8, 9), // back 3ms after
		get(2, "b", 4, 5), get(2, "a", 20, 21), // back 15ms after
	}
	rep, err := history.Check(ops, nil, history.Config{Bound: ms(100), MonotonicGrace: ms(10)})
	if err != nil {
		t.Fatal(err)
	}
	if rep.BackwardsInGrace != 1 || len(rep.Violations) != 1 || rep.Violations[0].Read != ops[5] {
		t.Fatalf("report %v: %v", rep, rep.Violations)
	}
	if !strings.Contains(rep.String(), "1 reads went back within the grace") {
		t.Errorf("report %q does not give the reads that went back", rep)
	}
}
