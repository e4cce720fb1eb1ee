package wait_test

import (
	"context"
	"testing"
	"testing/synctest"

	"github.com/herdcache/herd/internal/wait"
)

func TestForPrefersAFinishedResult(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	done := make(chan struct{})
	close(done)
	// Both are ready: a single select would pick at random.
	for range 1000 {
		if !wait.For(ctx, done) {
			t.Fatal("For reported the ended context over a closed done")
		}
	}
}

func TestForReturnsWhenTheContextEnds(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ctx, cancel := context.WithCancel(context.Background())
		got := make(chan bool)
		go func() { got <- wait.For(ctx, make(chan struct{})) }()
		synctest.Wait()
		cancel()
		if <-got {
			t.Fatal("For reported done, which was never closed")
		}
	})
}

func TestForReturnsWhenDoneCloses(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		done := make(chan struct{})
		got := make(chan bool)
		go func() { got <- wait.For(context.Background(), done) }()
		synctest.Wait()
		close(done)
		if !<-got {
			t.Fatal("For did not report done")
		}
	})
}
