package testutil

import (
	"context"
	"sync"
	"testing"
	"time"
)

// Start runs run(ctx) in a goroutine and, when ready is not nil, waits up to 10s for ready to
// close, failing the test if run returns first. stop cancels ctx and returns run's error; later
// calls return the same error. The caller must call stop: the goroutine lives until then.
func Start(t testing.TB, run func(context.Context) error, ready <-chan struct{}) (stop func() error) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	runErr := make(chan error, 1)
	go func() { runErr <- run(ctx) }()
	stop = sync.OnceValue(func() error {
		cancel()
		return <-runErr
	})
	if ready == nil {
		return stop
	}
	select {
	case <-ready:
		return stop
	case err := <-runErr:
		cancel()
		t.Fatalf("run: %v", err)
	case <-time.After(10 * time.Second):
		t.Cleanup(func() { stop() })
		t.Fatal("not ready within 10s")
	}
	return nil
}

// RunUntilCleanup runs run(ctx) until the test ends; then it cancels ctx, waits for run and
// fails the test if run returned an error.
func RunUntilCleanup(t testing.TB, run func(context.Context) error) {
	t.Helper()
	stop := Start(t, run, nil)
	t.Cleanup(func() {
		if err := stop(); err != nil {
			t.Errorf("run: %v", err)
		}
	})
}
