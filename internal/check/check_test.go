package check_test

import (
	"context"
	"testing"
	"time"

	"github.com/herdcache/herd/internal/check"
)

func TestPositive(t *testing.T) {
	if got := check.Positive("pkg", "D", time.Second); got != time.Second {
		t.Fatalf("Positive(1s) = %v", got)
	}
	for _, tc := range []struct {
		f    func()
		want string
	}{
		{func() { check.Positive("pkg", "D", time.Duration(0)) }, "pkg: D must be positive, got 0s"},
		{func() { check.Positive("pkg", "N", -1) }, "pkg: N must be positive, got -1"},
		{func() { check.Positive("pkg", "F", -0.5) }, "pkg: F must be positive, got -0.5"},
		{func() { check.That(false, "pkg", "X must be %s", "odd") }, "pkg: X must be odd"},
		{func() { check.NotNil[int]("pkg", "WithP", "pointer", nil) }, "pkg: WithP must be given a pointer, got nil"},
	} {
		func() {
			defer func() {
				if r := recover(); r != tc.want {
					t.Fatalf("panicked with %v, want %q", r, tc.want)
				}
			}()
			tc.f()
		}()
	}
	check.That(true, "pkg", "never")
}

func TestContext(t *testing.T) {
	check.Context(context.Background(), "pkg")
	defer func() {
		if r := recover(); r != "pkg: nil Context" {
			t.Fatalf("panicked with %v", r)
		}
	}()
	check.Context(nil, "pkg") //nolint:staticcheck // the nil context is the point
}
