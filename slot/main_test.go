package slot_test

import (
	"testing"

	"go.uber.org/goleak"
)

// TestMain fails the package's tests unless, once they are over, every fetch goroutine has returned.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}
