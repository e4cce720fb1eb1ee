package option_test

import (
	"testing"
	"time"

	"github.com/herdcache/herd/internal/option"
)

func TestPositive(t *testing.T) {
	if got := option.Positive("pkg", "D", time.Second); got != time.Second {
		t.Fatalf("Positive(1s) = %v", got)
	}
	for _, tc := range []struct {
		f    func()
		want string
	}{
		{func() { option.Positive("pkg", "D", time.Duration(0)) }, "pkg: D must be positive, got 0s"},
		{func() { option.Positive("pkg", "N", -1) }, "pkg: N must be positive, got -1"},
		{func() { option.Positive("pkg", "F", -0.5) }, "pkg: F must be positive, got -0.5"},
		{func() { option.Check(false, "pkg", "X must be %s", "odd") }, "pkg: X must be odd"},
		{func() { option.NotNil[int]("pkg", "WithP", "pointer", nil) }, "pkg: WithP must be given a pointer, got nil"},
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
	option.Check(true, "pkg", "never")
}
