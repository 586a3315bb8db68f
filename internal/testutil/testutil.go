// Package testutil holds what the tests of every package share: polling with a deadline,
// running a component until the test ends, a buffer safe for a logger, self-signed
// certificates, free ports, and the CI=true rule. It imports none of hookrelay's
// packages, so the internal tests of any of them can use it without an import cycle.
package testutil

import (
	"os"
	"testing"
)

// InCI reports CI=true: a missing tool, browser or root is then a failure, not a skip.
func InCI() bool { return os.Getenv("CI") == "true" }

// Missing skips the test for want of something, or fails it under CI=true.
func Missing(t testing.TB, format string, args ...any) {
	t.Helper()
	if InCI() {
		t.Fatalf("CI=true and "+format, args...)
	}
	t.Skipf(format, args...)
}
