package flight_test

import (
	"context"
	"strings"
	"testing"

	"github.com/herdcache/herd/flight"
)

func TestNewPanicErrorTrimsTheGoroutineLine(t *testing.T) {
	var pe *flight.PanicError
	func() {
		defer func() { pe = flight.NewPanicError(recover()) }()
		panic("boom")
	}()
	if pe.Value != "boom" {
		t.Fatalf("Value = %v, want boom", pe.Value)
	}
	if strings.HasPrefix(string(pe.Stack), "goroutine ") {
		t.Fatalf("the stack starts with the goroutine line:\n%s", pe.Stack)
	}
	if !strings.Contains(string(pe.Stack), "TestNewPanicErrorTrimsTheGoroutineLine") {
		t.Fatalf("the stack does not show the panicking function:\n%s", pe.Stack)
	}
}

func TestRegressionFlightNilContextPanicsBeforeTheLock(t *testing.T) {
	var g flight.Group[string, int]
	func() {
		defer func() {
			if r := recover(); r != "flight: nil Context" {
				t.Fatalf("Do(nil) panicked with %v, want flight: nil Context", r)
			}
		}()
		//nolint:staticcheck // SA1012: a nil context is the point of the test
		_, _ = g.Do(nil, "k", func(context.Context) (int, error) { return 1, nil })
	}()
	// The group is not wedged.
	if v, err := g.Do(t.Context(), "k", func(context.Context) (int, error) { return 2, nil }); v != 2 || err != nil {
		t.Fatalf("Do after a nil-context panic = %d, %v", v, err)
	}
}
