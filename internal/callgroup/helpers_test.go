package callgroup_test

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"go.uber.org/goleak"

	"github.com/herdcache/herd/internal/callgroup"
	"github.com/herdcache/herd/internal/catch"
)

// TestMain fails the package's tests unless, once they are over, every
// call's goroutine has returned.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// testErrs makes the errors of the groups under test.
type testErrs struct{}

var errGoexit = errors.New("test: function called runtime.Goexit")

type panicErr struct{ p *catch.Panic }

func (e *panicErr) Error() string { return fmt.Sprintf("test: function panicked: %v", e.p.Value) }

func (testErrs) Panic(p *catch.Panic) error { return &panicErr{p} }
func (testErrs) Goexit() error              { return errGoexit }

type group = callgroup.Group[string, int, testErrs]

func do(ctx context.Context, g *group, key string, fn func(context.Context) (int, error)) (int, error) {
	v, _, err := doShared(ctx, g, key, fn)
	return v, err
}

func doShared(ctx context.Context, g *group, key string, fn func(context.Context) (int, error)) (int, bool, error) {
	v, shared, _, err := g.Do(ctx, key, callgroup.Task[string, int]{Plain: fn})
	return v, shared, err
}

type result struct {
	v      int
	shared bool
	err    error
}

// startCallers starts n goroutines calling doShared(g, ctx, key, fn) and
// returns the channel their results arrive on.
func startCallers(ctx context.Context, g *group, n int, key string, fn func(context.Context) (int, error)) <-chan result {
	out := make(chan result, n)
	for range n {
		go func() {
			v, shared, err := doShared(ctx, g, key, fn)
			out <- result{v, shared, err}
		}()
	}
	return out
}
