package autorefresh_test

import (
	"testing"

	"go.uber.org/goleak"
)

// TestMain fails the package's tests unless, once they are over, the loop and every worker have returned.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}
