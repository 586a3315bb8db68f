package e2e

import (
	"fmt"
	"testing"
	"time"

	"github.com/hookrelay/hookrelay/internal/testutil"
)

// TestTwoAgentsOneEndpoint: two agents serve one endpoint as a work queue (each webhook goes
// to one of them); when one is killed with SIGKILL mid-stream, the other takes over what the
// dead one had received but not acked. What the dead one had acked is durably its own: it
// delivers that when it comes back, which the test does last.
func TestTwoAgentsOneEndpoint(t *testing.T) {
	forEachTransport(t, func(t *testing.T, tr string) {
		w := newWorld(t, worldOpts{transport: tr, agents: 2})
		testutil.CheckFor(t, 30*time.Second, 20*time.Millisecond, func() error {
			return w.bothConnected()
		})
		s := &sender{w: w}
		s.sendN(400, 8)
		w.verify(s, 60*time.Second)
		by := w.deliveredBy()
		if by["agent-0"] == 0 || by["agent-1"] == 0 {
			t.Errorf("with two agents connected, deliveries by agent: %v (want both to take a share)", by)
		}
		if dups := w.verify(s, time.Second); dups != 0 {
			t.Errorf("%d duplicate deliveries before any crash", dups)
		}

		done := make(chan struct{})
		go func() { defer close(done); s.sendN(600, 8) }()
		waitAccepted(t, s, 600)
		w.agents[0].kill()
		<-done
		// agent-1 alone delivers everything but what agent-0 had acked before it died.
		testutil.CheckFor(t, 60*time.Second, 100*time.Millisecond, func() error {
			if n := w.undelivered(s); n > 128 {
				return fmt.Errorf("%d accepted webhooks not delivered while agent-0 is down", n)
			}
			return nil
		})
		w.agents[0].start()
		dups := w.verify(s, 60*time.Second)
		t.Logf("deliveries by agent %v; %d redelivered after the kill", w.deliveredBy(), dups)
	})
}

// undelivered counts accepted webhooks that have not reached the target.
func (w *world) undelivered(s *sender) int {
	w.target.mu.Lock()
	defer w.target.mu.Unlock()
	n := 0
	for _, a := range s.accepted() {
		if len(w.target.got[a.id]) == 0 {
			n++
		}
	}
	return n
}

// bothConnected reports an error until every agent's log says its tunnel is up.
func (w *world) bothConnected() error {
	for _, a := range w.agents {
		if !a.logContains(`"tunnel up"`) {
			return fmt.Errorf("%s not connected yet", a.name)
		}
	}
	return nil
}

// deliveredBy counts target requests by the X-Agent header each agent's route adds.
func (w *world) deliveredBy() map[string]int {
	w.target.mu.Lock()
	defer w.target.mu.Unlock()
	by := map[string]int{}
	for _, arr := range w.target.got {
		for _, a := range arr {
			by[a.header.Get("X-Agent")]++
		}
	}
	return by
}
