package protocol

import (
	"testing"
	"time"
)

// within runs fn in a goroutine and fails the test if it does not return within d.
func within[T any](t testing.TB, d time.Duration, what string, fn func() T) T {
	t.Helper()
	ch := make(chan T, 1)
	go func() { ch <- fn() }()
	select {
	case v := <-ch:
		return v
	case <-time.After(d):
		t.Fatalf("%s: still blocked after %s", what, d)
		panic("unreachable")
	}
}

type frameResult struct {
	f   Frame
	err error
}

// readWithin reads one frame from tun, failing the test after d.
func readWithin(t testing.TB, tun Tunnel, d time.Duration) (Frame, error) {
	t.Helper()
	r := within(t, d, "read frame", func() frameResult {
		f, err := tun.ReadFrame()
		return frameResult{f, err}
	})
	return r.f, r.err
}
