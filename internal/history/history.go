// Package history records what the clients of a shared key-value system
// did (who read or wrote which key, what they got, when each call began
// and ended) and checks the finished record for the consistency a cache in
// front of that system promises: bounded staleness, read-your-writes and
// monotonic reads (see [Check] for the rules).
//
// A test builds a [History], has its goroutines record every call with
// [History.Read], [History.Write] and [History.Delete] (and the faults it
// injects with [History.Fault]), then checks the record once the calls are
// over:
//
//	h := history.New()
//	start := h.Now()
//	v, found, err := cache.Get(ctx, key)
//	h.Read(instance, key, start, v, found, err)
//	...
//	report, err := h.Check(history.Config{Bound: 100 * time.Millisecond})
//
// # Guarantees
//
// Times come from one monotonic clock, read by [History.Now]: a wall-clock
// step cannot reorder two calls. A call's interval is taken around the
// call, so it contains the moment the call took effect, and the checker
// only ever concludes that one call came before another when their
// intervals do not overlap: concurrent calls are never blamed for an order
// they did not promise. Values must tell their writes apart: two writes of
// one key must not write the same value (a writer id and a counter do), or
// the check returns an error, as "which write did this read see" would
// then have no answer.
//
// # Costs and lifecycle
//
// Recording takes a mutex and appends to a slice: about a hundred
// nanoseconds, negligible next to a network call, and memory for every
// operation until the History is dropped. A check sorts the operations of
// each key: O(n log n) for n operations, plus the candidate writes of the
// reads that found nothing and are stale beyond the bound (rare). A
// History is safe for concurrent use; its zero value is not ready, use
// [New]. Nothing runs in the background.
package history

import (
	"fmt"
	"sync"
	"time"
)

// A Kind says whether an operation read or wrote.
type Kind uint8

const (
	// Read is an operation that returned a key's value, or found none.
	Read Kind = iota + 1
	// Write is an operation that set a key's value, or deleted it.
	Write
)

func (k Kind) String() string {
	switch k {
	case Read:
		return "read"
	case Write:
		return "write"
	}
	return fmt.Sprintf("Kind(%d)", k)
}

// Everyone is the instance of a [Fault] that affects every instance, such
// as a server that freezes or restarts.
const Everyone = -1

// An Op is one call of one instance on one key, as it looked from the
// caller: what it asked, what it got, when it began and when it ended.
type Op struct {
	// Instance is the process (or client) that made the call. The
	// per-instance rules (read-your-writes, monotonic reads) compare the
	// operations of one instance; give every independent client an
	// instance of its own.
	Instance int
	Kind     Kind
	Key      string
	// Value is what a write wrote or a read returned; empty with Absent.
	Value string
	// Absent marks a delete (a Write) or a read that found no value.
	// Anything that makes the key read as absent is a delete: a DEL, an
	// expiry, bytes the reader cannot decode.
	Absent bool
	// Start and End are the times on the history's clock at which the call
	// began and returned.
	Start, End time.Duration
	// Failed marks a call that returned an error. A failed read returned
	// nothing and is not checked. A failed write may or may not have taken
	// effect, and if it did, at any time after Start (a timed-out request
	// may still reach the server): a read may return its value, and the
	// checker never counts it as completed.
	Failed bool
}

func (o Op) String() string {
	what := o.Value
	if o.Absent {
		what = "(absent)"
	}
	verb := "read"
	if o.Kind == Write {
		verb = "wrote"
		if o.Absent {
			verb, what = "deleted", ""
		}
	}
	s := fmt.Sprintf("instance %d %s %s", o.Instance, verb, o.Key)
	if what != "" {
		s += " = " + what
	}
	s += fmt.Sprintf(" [%v, %v]", o.Start.Round(time.Microsecond), o.End.Round(time.Microsecond))
	if o.Failed {
		s += " (failed)"
	}
	return s
}

// A Fault is a period during which something was wrong for an instance (or
// for [Everyone]): a connection cut, a server frozen, an instance
// partitioned. While a fault lasts, the instance's reads may be staler
// than the healthy bound, up to the fault's own Bound (see [Check]).
type Fault struct {
	Instance int    // the instance affected, or Everyone
	What     string // for reports: "partition", "server frozen", ...
	// Start and End are the times on the history's clock at which the fault
	// began and was over (healed and, if the test could tell, recovered
	// from; [Config.Recovery] extends every fault past End).
	Start, End time.Duration
	// Bound is the staleness allowed to the instance's reads of a value
	// replaced during the fault. A Bound below [Config.Bound] allows
	// nothing more than health does: the fault is then recorded only to be
	// reported.
	Bound time.Duration
}

func (f Fault) String() string {
	who := fmt.Sprintf("instance %d", f.Instance)
	if f.Instance == Everyone {
		who = "every instance"
	}
	bound := "bound " + f.Bound.String()
	if f.Bound == 0 {
		bound = "no bound of its own"
	}
	return fmt.Sprintf("%s: %s [%v, %v], %s", who, f.What,
		f.Start.Round(time.Microsecond), f.End.Round(time.Microsecond), bound)
}

// A History is the record of the operations of a test, kept in the order
// they ended. Its methods are safe for concurrent use. Build it with [New].
type History struct {
	origin time.Time // carries a monotonic reading: Now never goes back

	mu     sync.Mutex
	ops    []Op
	faults []Fault
}

// New returns an empty history whose clock starts now.
func New() *History {
	return &History{origin: time.Now()}
}

// Now is the time on the history's clock: the monotonic time since [New].
func (h *History) Now() time.Duration { return time.Since(h.origin) }

// Add records op as it is. The Read, Write and Delete methods are
// shorter for a call that has just returned.
func (h *History) Add(op Op) {
	h.mu.Lock()
	h.ops = append(h.ops, op)
	h.mu.Unlock()
}

// Read records a read of key by instance that began at start and has just
// returned value (found true) or found nothing (found false), or failed
// with err.
func (h *History) Read(instance int, key string, start time.Duration, value string, found bool, err error) {
	h.Add(Op{
		Instance: instance, Kind: Read, Key: key, Value: value, Absent: !found,
		Start: start, End: h.Now(), Failed: err != nil,
	})
}

// Write records a write of value to key by instance that began at start
// and has just returned err.
func (h *History) Write(instance int, key string, start time.Duration, value string, err error) {
	h.Add(Op{Instance: instance, Kind: Write, Key: key, Value: value, Start: start, End: h.Now(), Failed: err != nil})
}

// Delete records a delete of key by instance that began at start and has
// just returned err.
func (h *History) Delete(instance int, key string, start time.Duration, err error) {
	h.Add(Op{Instance: instance, Kind: Write, Key: key, Absent: true, Start: start, End: h.Now(), Failed: err != nil})
}

// Fault records a fault.
func (h *History) Fault(f Fault) {
	h.mu.Lock()
	h.faults = append(h.faults, f)
	h.mu.Unlock()
}

// Len returns the number of operations recorded so far.
func (h *History) Len() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return len(h.ops)
}

// Ops returns a copy of the operations recorded so far.
func (h *History) Ops() []Op {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]Op(nil), h.ops...)
}

// Faults returns a copy of the faults recorded so far.
func (h *History) Faults() []Fault {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]Fault(nil), h.faults...)
}

// Check checks the operations and faults recorded so far with [Check].
func (h *History) Check(cfg Config) (*Report, error) {
	return Check(h.Ops(), h.Faults(), cfg)
}
