package agent

import (
	"context"
	"fmt"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/hookrelay/hookrelay/internal/testutil"
	"github.com/hookrelay/hookrelay/persist"
)

// TestOrderedHoldSurvivesRestart: the head of an ordered route answered 503 with Retry-After:
// 2; the agent restarts at once. The head is not retried before its time, and the records
// behind it wait for it.
func TestOrderedHoldSurvivesRestart(t *testing.T) {
	tg := newTarget(t, func(r *http.Request, n int) (int, http.Header) {
		if r.Header.Get("Hookrelay-Id") == "o1" && n == 1 {
			return 503, http.Header{"Retry-After": {"2"}}
		}
		return 200, nil
	})
	rt := fastRoute(tg.URL)
	rt.Ordered = true
	dir := t.TempDir()
	inDir := func(c *Config) { c.DataDir = dir }

	a := newTestAgentWith(t, "ws://127.0.0.1:1", inDir, rt)
	for i := 1; i <= 3; i++ {
		appendRecord(t, a, &persist.Record{ID: fmt.Sprintf("o%d", i), Queue: "ep"})
	}
	stop := startDeliverers(a)
	testutil.CheckFor(t, 10*time.Second, 5*time.Millisecond, func() error {
		r, err := a.Store().Get("o1")
		if err != nil {
			return err
		}
		if r.Attempts != 1 || r.State != persist.StateReady {
			return fmt.Errorf("o1: %d attempts, %v", r.Attempts, r.State)
		}
		return nil
	})
	stop()
	if err := a.Close(); err != nil {
		t.Fatal(err)
	}

	a = newTestAgentWith(t, "ws://127.0.0.1:1", inDir, rt)
	runDeliverers(t, a)
	waitState(t, a, "o3", persist.StateDelivered)
	if got := tg.order(); got != "o1,o1,o2,o3" {
		t.Fatalf("delivered %s, want o1,o1,o2,o3", got)
	}
	first := tg.requests("o1")
	if gap := first[1].At.Sub(first[0].At); gap < 1900*time.Millisecond {
		t.Fatalf("head retried %v after a Retry-After: 2, across a restart", gap)
	}
}

// startDeliverers runs the agent's deliverers until the returned stop is called.
func startDeliverers(a *Agent) (stop func()) {
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	for _, d := range a.routes.all {
		wg.Go(func() { d.run(ctx) })
	}
	return func() { cancel(); wg.Wait() }
}
