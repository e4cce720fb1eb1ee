package history

import (
	"cmp"
	"fmt"
	"math"
	"slices"
	"sort"
	"strings"
	"time"
)

// A Config is what [Check] allows.
type Config struct {
	// Bound is the staleness allowed to a read that no fault excuses: how
	// long after a write completes a read may still return the value it
	// replaced. For a cache kept coherent by a change stream, the stream's
	// delivery bound.
	Bound time.Duration
	// Recovery extends every fault past its End: how long an instance may
	// take, once a fault is over, to be whole again (reconnect,
	// resubscribe, repair what it missed). Zero: faults end at their End.
	Recovery time.Duration
	// MonotonicGrace is how long after an earlier read of an instance ended
	// a read of the same instance may still return an older value, for a
	// system that promises monotonic reads only once the newer value's
	// change has reached the instance. Such reads are counted in
	// Report.BackwardsInGrace. Zero: reads never go back.
	MonotonicGrace time.Duration
}

// A Rule is one property that [Check] checks.
type Rule uint8

const (
	// Unwritten is broken by a read that returned a value that no write of
	// the key wrote, or that only a write beginning after the read ended
	// wrote.
	Unwritten Rule = iota + 1
	// Stale is broken by a read that returned a value replaced longer
	// before it began than its bound allows.
	Stale
	// ReadYourWrites is broken by a read that returned a value older than a
	// write of the same instance that completed before the read began.
	ReadYourWrites
	// MonotonicReads is broken by a read that returned a value older than
	// one that an earlier read of the same instance returned.
	MonotonicReads
)

// Rules lists every rule, in the order reports give them.
var Rules = []Rule{Stale, ReadYourWrites, MonotonicReads, Unwritten}

func (r Rule) String() string {
	switch r {
	case Unwritten:
		return "unwritten value"
	case Stale:
		return "bounded staleness"
	case ReadYourWrites:
		return "read-your-writes"
	case MonotonicReads:
		return "monotonic reads"
	}
	return fmt.Sprintf("Rule(%d)", r)
}

// A Violation is a read that breaks a rule, with the operations that show
// it.
type Violation struct {
	Rule Rule
	Read Op
	// Involved are the other operations of the case, in this order:
	//   - Stale: the write of the value read, the write that replaced it;
	//   - ReadYourWrites: the write of the value read, the instance's own
	//     write that the read should have seen;
	//   - MonotonicReads: the instance's earlier read, the write of the
	//     value it returned, the write of the value read;
	//   - Unwritten: none.
	// The write of a value read that found nothing is the latest-ending
	// delete that could explain it, or none for the key's initial absence.
	Involved []Op
	Detail   string
}

func (v Violation) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%v: %v: %s", v.Rule, v.Read, v.Detail)
	for _, op := range v.Involved {
		fmt.Fprintf(&b, "\n\t%v", op)
	}
	return b.String()
}

// A Report is what [Check] found: the figures of the history and its
// violations.
type Report struct {
	Ops          int // operations checked, failed ones included
	Reads        int // reads that returned (a value, or none)
	Writes       int // writes and deletes that returned
	FailedReads  int
	FailedWrites int
	Keys         int
	// StaleReads is the number of reads that returned a value replaced
	// before they began, within their bound or not.
	StaleReads int
	// MaxStaleness is the largest staleness of a read: how long before it
	// began the value it returned had been replaced (for a read that
	// found nothing, the most favourable of the deletes that could explain
	// it).
	MaxStaleness time.Duration
	// MaxHealthyStaleness is MaxStaleness over the reads that no fault
	// excuses (their bound is Config.Bound).
	MaxHealthyStaleness time.Duration
	// BackwardsInGrace is the number of reads that returned a value older
	// than an earlier read of their instance did, within
	// Config.MonotonicGrace of it: not violations, but not monotonic.
	BackwardsInGrace int
	// Violations are in the order their reads began.
	Violations []Violation
}

// Count returns the number of violations of rule.
func (r *Report) Count(rule Rule) int {
	n := 0
	for _, v := range r.Violations {
		if v.Rule == rule {
			n++
		}
	}
	return n
}

// String gives the report's figures in a line.
func (r *Report) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%d operations on %d keys (%d reads, %d writes, %d failed reads, %d failed writes); ",
		r.Ops, r.Keys, r.Reads, r.Writes, r.FailedReads, r.FailedWrites)
	fmt.Fprintf(&b, "%d stale reads, largest staleness %v (%v where no fault excuses it); ",
		r.StaleReads, r.MaxStaleness.Round(time.Microsecond), r.MaxHealthyStaleness.Round(time.Microsecond))
	if r.BackwardsInGrace > 0 {
		fmt.Fprintf(&b, "%d reads went back within the grace; ", r.BackwardsInGrace)
	}
	b.WriteString("violations:")
	for i, rule := range Rules {
		if i > 0 {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, " %v %d", rule, r.Count(rule))
	}
	return b.String()
}

// Check checks a finished history: ops, the calls of every instance in any
// order, and faults, the periods during which instances were allowed to be
// staler. Every key is taken to be absent before its first write. Failed
// reads are not checked; a failed write may have taken effect at any time
// after it began (see [Op]).
//
// A write is older than another when it completed before the other began;
// two writes whose intervals overlap are concurrent, and either may be
// read after the other. The value a read returned comes from its write
// (for a read that found nothing: from any delete, or the initial absence,
// each tried in turn, so that the most favourable explanation decides),
// which must have begun before the read ended. The rules:
//
//   - [Stale]: a read must not return a value that a newer write replaced
//     more than its bound before the read began. The bound is
//     Config.Bound, or the Bound of a fault of the read's instance (or of
//     Everyone) that overlapped the time from the replacing write's
//     completion to the read's start, extended by Config.Recovery,
//     whichever is larger: a fault excuses only the staleness of values
//     replaced while it lasted.
//   - [ReadYourWrites]: a read that begins after a write of the same
//     instance completed returns that write's value or a value not older
//     than it.
//   - [MonotonicReads]: a read does not return a value older than one that
//     a read of the same instance, ended before it began (by more than
//     Config.MonotonicGrace), returned.
//   - [Unwritten]: a read returns a value that some write, begun before the
//     read ended, wrote.
//
// It returns an error, and no report, for a history that cannot be checked:
// an operation of no known Kind or that ends before it begins, or two
// writes of one value to one key.
func Check(ops []Op, faults []Fault, cfg Config) (*Report, error) {
	rep := &Report{Ops: len(ops)}
	byKey := make(map[string][]*Op)
	for i := range ops {
		op := &ops[i]
		if op.Kind != Read && op.Kind != Write {
			return nil, fmt.Errorf("history: %v: unknown kind", op)
		}
		if op.End < op.Start {
			return nil, fmt.Errorf("history: %v: ends before it begins", op)
		}
		switch {
		case op.Kind == Read && op.Failed:
			rep.FailedReads++
		case op.Kind == Read:
			rep.Reads++
		case op.Failed:
			rep.FailedWrites++
		default:
			rep.Writes++
		}
		byKey[op.Key] = append(byKey[op.Key], op)
	}
	rep.Keys = len(byKey)
	keys := make([]string, 0, len(byKey))
	for k := range byKey {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		kc, err := newKeyCheck(byKey[k], faults, cfg, rep)
		if err != nil {
			return nil, err
		}
		kc.check(byKey[k])
	}
	slices.SortStableFunc(rep.Violations, func(a, b Violation) int {
		return cmp.Or(cmp.Compare(a.Read.Start, b.Read.Start), cmp.Compare(a.Rule, b.Rule))
	})
	return rep, nil
}

const (
	dawn    = time.Duration(math.MinInt64) // the initial absence's start and end
	forever = time.Duration(math.MaxInt64) // the end of a failed write
)

// A write is a write of the key, or its initial absence (op nil), as the
// checker sees it: a failed write never completes.
type write struct {
	op         *Op
	start, end time.Duration
}

func (w *write) ops() []Op {
	if w.op == nil {
		return nil
	}
	return []Op{*w.op}
}

// initial says, in a violation's detail, that w is the initial absence,
// which has no operation to list.
func (w *write) initial() string {
	if w.op == nil {
		return " (the key's initial absence)"
	}
	return ""
}

// keyCheck checks the reads of one key.
type keyCheck struct {
	cfg    Config
	faults []Fault
	rep    *Report

	writes  []*write          // every write, by start, the initial absence first
	minEnd  []int             // minEnd[i]: the index of the earliest-ending write of writes[i:]
	byValue map[string]*write // the writes of values
	absent  []*write          // the deletes and the initial absence, by start
	lastEnd []int             // lastEnd[i]: the index of the latest-ending write of absent[:i+1]
}

func newKeyCheck(ops []*Op, faults []Fault, cfg Config, rep *Report) (*keyCheck, error) {
	k := &keyCheck{cfg: cfg, faults: faults, rep: rep, byValue: make(map[string]*write)}
	initial := &write{start: dawn, end: dawn}
	k.writes = append(k.writes, initial)
	for _, op := range ops {
		if op.Kind != Write {
			continue
		}
		w := &write{op: op, start: op.Start, end: op.End}
		if op.Failed {
			w.end = forever
		}
		k.writes = append(k.writes, w)
		if op.Absent {
			continue
		}
		if prev, dup := k.byValue[op.Value]; dup {
			return nil, fmt.Errorf("history: %v and %v write the same value: values must tell writes apart", prev.op, op)
		}
		k.byValue[op.Value] = w
	}
	slices.SortStableFunc(k.writes, func(a, b *write) int { return cmp.Compare(a.start, b.start) })
	k.minEnd = make([]int, len(k.writes))
	for i := len(k.writes) - 1; i >= 0; i-- {
		k.minEnd[i] = i
		if i+1 < len(k.writes) && k.writes[k.minEnd[i+1]].end < k.writes[i].end {
			k.minEnd[i] = k.minEnd[i+1]
		}
	}
	for _, w := range k.writes {
		if w.op == nil || w.op.Absent {
			k.absent = append(k.absent, w)
		}
	}
	k.lastEnd = make([]int, len(k.absent))
	for i, w := range k.absent {
		k.lastEnd[i] = i
		if i > 0 && k.absent[k.lastEnd[i-1]].end >= w.end {
			k.lastEnd[i] = k.lastEnd[i-1]
		}
	}
	return k, nil
}

// A read is a read that returned, with the writes that could have given
// it its value.
type read struct {
	op    *Op
	cands []*write // begun before the read ended; the initial absence first
	last  *write   // the latest-ending of cands
	first *write   // the earliest-beginning of cands
}

// candidates returns the writes that could have given r its value.
func (k *keyCheck) candidates(r *Op) read {
	rd := read{op: r}
	if r.Absent {
		n := sort.Search(len(k.absent), func(i int) bool { return k.absent[i].start >= r.End })
		if n == 0 { // cannot be: the initial absence began at dawn
			return rd
		}
		rd.cands = k.absent[:n]
		rd.last, rd.first = k.absent[k.lastEnd[n-1]], k.absent[0]
		return rd
	}
	if w, ok := k.byValue[r.Value]; ok && w.start < r.End {
		rd.cands = []*write{w}
		rd.last, rd.first = w, w
	}
	return rd
}

func (k *keyCheck) check(ops []*Op) {
	var reads []read
	own := make(map[int][]*Op) // the completed writes of each instance
	for _, op := range ops {
		switch {
		case op.Kind == Write && !op.Failed:
			own[op.Instance] = append(own[op.Instance], op)
		case op.Kind == Read && !op.Failed:
			rd := k.candidates(op)
			if rd.cands == nil {
				k.violate(Unwritten, op, nil, "no write of this value began before the read ended")
				continue
			}
			k.stale(rd)
			reads = append(reads, rd)
		}
	}
	byInstance := make(map[int][]read)
	for _, rd := range reads {
		byInstance[rd.op.Instance] = append(byInstance[rd.op.Instance], rd)
	}
	instances := make([]int, 0, len(byInstance))
	for i := range byInstance {
		instances = append(instances, i)
	}
	slices.Sort(instances)
	for _, i := range instances {
		k.readYourWrites(byInstance[i], own[i])
		k.monotonic(byInstance[i])
	}
}

// replacement returns the write that replaced w first: the earliest to
// complete of the writes that began after w completed, or nil if none
// completed.
func (k *keyCheck) replacement(w *write) *write {
	if w.end == forever {
		return nil
	}
	i := sort.Search(len(k.writes), func(i int) bool { return k.writes[i].start > w.end })
	if i == len(k.writes) {
		return nil
	}
	if n := k.writes[k.minEnd[i]]; n.end != forever {
		return n
	}
	return nil
}

// staleness returns how long before r began w's value had been replaced,
// by which write, and the bound that r is allowed then.
func (k *keyCheck) staleness(r *Op, w *write) (time.Duration, *write, time.Duration) {
	n := k.replacement(w)
	if n == nil || n.end >= r.Start {
		return 0, n, k.cfg.Bound
	}
	return r.Start - n.end, n, k.bound(r.Instance, n.end, r.Start)
}

// bound is the staleness allowed to a read of instance that began at to,
// of a value replaced at from: the healthy bound, or that of a fault of the
// instance between the two, whichever is larger.
func (k *keyCheck) bound(instance int, from, to time.Duration) time.Duration {
	b := k.cfg.Bound
	for _, f := range k.faults {
		if (f.Instance == instance || f.Instance == Everyone) && f.Start <= to && f.End+k.cfg.Recovery >= from {
			b = max(b, f.Bound)
		}
	}
	return b
}

// stale checks rd against the Stale rule and counts its staleness. The
// latest-ending candidate is the least stale; only if it is beyond its
// bound are the others (staler, but perhaps under a fault's bound) tried.
func (k *keyCheck) stale(rd read) {
	r := rd.op
	s, n, b := k.staleness(r, rd.last)
	if s > 0 {
		k.rep.StaleReads++
		k.rep.MaxStaleness = max(k.rep.MaxStaleness, s)
		if b == k.cfg.Bound {
			k.rep.MaxHealthyStaleness = max(k.rep.MaxHealthyStaleness, s)
		}
	}
	if s <= b {
		return
	}
	for _, c := range rd.cands {
		if cs, _, cb := k.staleness(r, c); cs <= cb {
			return
		}
	}
	k.violate(Stale, r, append(rd.last.ops(), *n.op),
		fmt.Sprintf("the value read%s was replaced %v before the read began (bound %v)",
			rd.last.initial(), s.Round(time.Microsecond), b))
}

// readYourWrites checks the reads of one instance against the completed
// writes of the same instance.
func (k *keyCheck) readYourWrites(reads []read, own []*Op) {
	if len(own) == 0 {
		return
	}
	// By end, each with the latest-beginning write of those ended by then:
	// of the writes completed before a read, the one that constrains it
	// most.
	slices.SortFunc(own, func(a, b *Op) int { return cmp.Compare(a.End, b.End) })
	latest := make([]*Op, len(own))
	for i, w := range own {
		latest[i] = w
		if i > 0 && latest[i-1].Start > w.Start {
			latest[i] = latest[i-1]
		}
	}
	for _, rd := range reads {
		n := sort.Search(len(own), func(i int) bool { return own[i].End >= rd.op.Start })
		if n == 0 {
			continue
		}
		if w := latest[n-1]; rd.last.end < w.Start {
			k.violate(ReadYourWrites, rd.op, append(rd.last.ops(), *w),
				"the value read"+rd.last.initial()+" is older than the instance's own write, completed before the read began")
		}
	}
}

// monotonic checks the reads of one instance against each other: a read
// breaks the rule when every write that could explain it completed before
// every write that could explain an earlier read began.
func (k *keyCheck) monotonic(reads []read) {
	byEnd := slices.Clone(reads)
	slices.SortFunc(byEnd, func(a, b read) int { return cmp.Compare(a.op.End, b.op.End) })
	// newest[i]: of byEnd[:i+1], the read whose value is the newest for
	// sure: the latest first.start.
	newest := make([]read, len(byEnd))
	for i, rd := range byEnd {
		newest[i] = rd
		if i > 0 && newest[i-1].first.start > rd.first.start {
			newest[i] = newest[i-1]
		}
	}
	// backFrom returns the earlier read, ended before at, that rd goes
	// back from, if any.
	backFrom := func(rd read, at time.Duration) (read, bool) {
		n := sort.Search(len(byEnd), func(i int) bool { return byEnd[i].op.End >= at })
		if n == 0 {
			return read{}, false
		}
		prev := newest[n-1]
		return prev, rd.last.end < prev.first.start
	}
	for _, rd := range reads {
		if prev, back := backFrom(rd, rd.op.Start-k.cfg.MonotonicGrace); back {
			involved := append([]Op{*prev.op}, prev.first.ops()...)
			k.violate(MonotonicReads, rd.op, append(involved, rd.last.ops()...),
				"the value read"+rd.last.initial()+" is older than the one an earlier read of the instance returned")
		} else if _, back := backFrom(rd, rd.op.Start); back {
			k.rep.BackwardsInGrace++
		}
	}
}

func (k *keyCheck) violate(rule Rule, r *Op, involved []Op, detail string) {
	k.rep.Violations = append(k.rep.Violations, Violation{Rule: rule, Read: *r, Involved: involved, Detail: detail})
}
