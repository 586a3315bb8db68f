package testutil

import (
	"fmt"
	"testing"
	"time"
)

// CheckFor calls fn every step until it returns nil, and fails the test with fn's last error
// once total has passed.
func CheckFor(t testing.TB, total, step time.Duration, fn func() error) {
	t.Helper()
	deadline := time.Now().Add(total)
	for {
		err := fn()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("after %v: %v", total, err)
		}
		time.Sleep(step)
	}
}

// WaitFor is CheckFor for a condition: it polls cond every 10ms until it holds, and fails the
// test after total, naming what it waited for.
func WaitFor(t testing.TB, total time.Duration, what string, cond func() bool) {
	t.Helper()
	CheckFor(t, total, 10*time.Millisecond, func() error {
		if cond() {
			return nil
		}
		return fmt.Errorf("timed out waiting for %s", what)
	})
}
