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

// A shared store with a change stream runs the two-level suite with a
// function that returns a client of the subtest's backend for each
// instance; the suite builds the two-level stores over them. A backend that
// can cut one client (through a proxy of its own) passes Cut, and says
// whether its stream replays what a cut missed (Resumes).
func ExampleRunTwoLevel() {
	// In a _test.go file of the store's package:
	testTwoLevel := func(t *testing.T) {
		stores := make(map[string]*memory.Store[storetest.Value])
		storetest.RunTwoLevel(t, storetest.TwoLevelOptions{}, func(t *testing.T) store.Store[storetest.Value] {
			s, ok := stores[t.Name()]
			if !ok {
				s = memory.New[storetest.Value]()
				t.Cleanup(func() { _ = s.Close(context.Background()) })
				stores[t.Name()] = s
			}
			return s
		})
	}
	_ = testTwoLevel
}
