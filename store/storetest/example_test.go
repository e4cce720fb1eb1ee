package storetest_test

import (
	"context"
	"testing"

	"github.com/herdcache/herd/store"
	"github.com/herdcache/herd/store/memory"
	"github.com/herdcache/herd/store/storetest"
)

// A store's test runs the suite with a function that returns a store for
// each subtest; every call within one subtest returns a client of the same
// backend (here, the same in-process store), as the tests of shared
// behaviour (locks, versions, change streams) use several.
func ExampleRun() {
	// In a _test.go file of the store's package:
	testConformance := func(t *testing.T) {
		stores := make(map[string]*memory.Store[storetest.Value])
		storetest.Run(t, func(t *testing.T) store.Store[storetest.Value] {
			s, ok := stores[t.Name()]
			if !ok {
				s = memory.New[storetest.Value]()
				t.Cleanup(func() { _ = s.Close(context.Background()) })
				stores[t.Name()] = s
			}
			return s
		})
	}
	_ = testConformance
}
