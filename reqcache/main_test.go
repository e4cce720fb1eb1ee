package reqcache_test

import (
	"testing"

	"go.uber.org/goleak"
)

// TestMain fails the package's tests unless, once they are over, no lifetime timer or context callback is left running.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}
