package history_test

import (
	"fmt"
	"time"

	"github.com/herdcache/herd/internal/history"
)

// A writer replaces "a" with "b"; one reader sees "b" at once, another
// still reads "a" 30ms later, past the 10ms bound.
func Example() {
	ops := []history.Op{
		{Instance: 0, Kind: history.Write, Key: "k", Value: "a", Start: 0, End: time.Millisecond},
		{Instance: 0, Kind: history.Write, Key: "k", Value: "b", Start: 2 * time.Millisecond, End: 3 * time.Millisecond},
		{Instance: 1, Kind: history.Read, Key: "k", Value: "b", Start: 4 * time.Millisecond, End: 5 * time.Millisecond},
		{Instance: 2, Kind: history.Read, Key: "k", Value: "a", Start: 33 * time.Millisecond, End: 34 * time.Millisecond},
	}
	rep, err := history.Check(ops, nil, history.Config{Bound: 10 * time.Millisecond})
	if err != nil {
		panic(err)
	}
	fmt.Println(rep)
	for _, v := range rep.Violations {
		fmt.Println(v)
	}
	// Output:
	// 4 operations on 1 keys (2 reads, 2 writes, 0 failed reads, 0 failed writes); 1 stale reads, largest staleness 30ms (30ms where no fault excuses it); violations: bounded staleness 1, read-your-writes 0, monotonic reads 0, unwritten value 0
	// bounded staleness: instance 2 read k = a [33ms, 34ms]: the value read was replaced 30ms before the read began (bound 10ms)
	// 	instance 0 wrote k = a [0s, 1ms]
	// 	instance 0 wrote k = b [2ms, 3ms]
}
