package relay

import (
	"slices"
	"testing"
	"time"

	"github.com/hookrelay/hookrelay/internal/testutil"
	"github.com/hookrelay/hookrelay/persist"
	"github.com/hookrelay/hookrelay/protocol"
)

// confirmed waits for a Recorded frame naming id.
func (a *rawAgent) confirmed(id string) {
	a.t.Helper()
	deadline := time.After(10 * time.Second)
	for {
		select {
		case ids := <-a.recorded:
			if slices.Contains(ids, id) {
				return
			}
		case <-deadline:
			a.t.Fatalf("no Recorded for %s within 10s", id)
		}
	}
}

// A version-2 agent's outcome report is confirmed once recorded; a report sent again for the
// finished id, or for an id the relay does not know, is confirmed too (the agent stops
// resending it) and changes nothing.
func TestReportsConfirmed(t *testing.T) {
	s := startServer(t, nil)
	a := dial(t, s, tokenA, "edge-1", "ep")
	if a.welcome.Version != protocol.Version {
		t.Fatalf("welcome says version %d, want %d", a.welcome.Version, protocol.Version)
	}
	id := accept(t, s, "/h/ep", []byte("x"))
	w := a.webhook()
	a.send(&protocol.Ack{IDs: []string{w.ID}})
	a.send(&protocol.Report{ID: id, Outcome: protocol.OutcomeDelivered, Status: 200, Attempts: 1, At: time.Now()})
	a.confirmed(id)
	if st := state(t, s, id); st != persist.StateDelivered {
		t.Fatalf("state %v after a confirmed report, want delivered", st)
	}
	a.send(&protocol.Report{ID: id, Outcome: protocol.OutcomeDead, Error: "late"})
	a.confirmed(id)
	a.send(&protocol.Report{ID: "01UNKNOWN", Outcome: protocol.OutcomeDelivered})
	a.confirmed("01UNKNOWN")
	if st := state(t, s, id); st != persist.StateDelivered {
		t.Fatalf("state %v after a repeated report, want delivered still", st)
	}
}

// An agent of protocol version 1 still works: welcomed in version 1, its reports recorded, and
// no Recorded frame (which it would not understand) is sent to it. A version the relay does
// not speak is refused with Error{version}.
func TestVersion1AgentServed(t *testing.T) {
	s := startServer(t, nil)
	a := connect(t, s, protocol.Hello{Version: 1, AgentID: "old", Token: tokenA, Endpoints: []string{"ep"}})
	w, ok := a.frame().(*protocol.Welcome)
	if !ok || w.Version != 1 {
		t.Fatalf("welcome %+v, want one in version 1", w)
	}
	id := accept(t, s, "/h/ep", []byte("x"))
	a.webhook()
	a.send(&protocol.Ack{IDs: []string{id}})
	a.send(&protocol.Report{ID: id, Outcome: protocol.OutcomeDelivered, Status: 200})
	testutil.WaitFor(t, 10*time.Second, "delivered", func() bool { return state(t, s, id) == persist.StateDelivered })
	a.sync()
	select {
	case ids := <-a.recorded:
		t.Fatalf("a version-1 agent got Recorded %v", ids)
	default:
	}

	b := connect(t, s, protocol.Hello{Version: protocol.Version + 1, AgentID: "new", Token: tokenA})
	if e, ok := b.frame().(*protocol.Error); !ok || e.Code != protocol.CodeVersion {
		t.Fatalf("hello of version %d: got %#v, want Error{version}", protocol.Version+1, e)
	}
}

// An acked webhook whose agent went away for good (no session for outcome_timeout) is offered
// again to another agent of the endpoint; while the holder is connected, it keeps it.
func TestOutcomeTimeoutOffersAgain(t *testing.T) {
	s := startServer(t, func(c *Config) {
		c.RetentionInterval = 50 * time.Millisecond
		c.Endpoints[0].OutcomeTimeout = 300 * time.Millisecond
	})
	a := dial(t, s, tokenA, "gone", "ep")
	id := accept(t, s, "/h/ep", []byte("x"))
	a.webhook()
	a.send(&protocol.Ack{IDs: []string{id}})
	a.sync()
	time.Sleep(600 * time.Millisecond) // outcome_timeout passes while the holder is connected
	b := dial(t, s, tokenA, "other", "ep")
	if got := b.sync(); len(got) != 0 {
		t.Fatalf("webhook offered again while its holder is connected: %d", len(got))
	}
	r, err := s.Store().Get(t.Context(), id)
	if err != nil || r.State != persist.StateAcked || r.Holder != "gone" {
		t.Fatalf("record %+v %v, want acked by gone", r, err)
	}
	a.close() // gone for good
	w := b.webhook()
	if w.ID != id {
		t.Fatalf("offered %s, want %s", w.ID, id)
	}
	b.send(&protocol.Ack{IDs: []string{id}})
	b.send(&protocol.Report{ID: id, Outcome: protocol.OutcomeDelivered, Status: 200})
	b.confirmed(id)
	if st := state(t, s, id); st != persist.StateDelivered {
		t.Fatalf("state %v, want delivered", st)
	}
}

// A webhook that stays in flight longer than lease_ttl (an agent slow to ack, or a body queued
// behind a slow writer) keeps its lease while its session lives: no other agent is handed it,
// so it is not delivered twice without a crash.
func TestLeaseKeptWhileInFlight(t *testing.T) {
	s := startServer(t, func(c *Config) { c.LeaseTTL = 150 * time.Millisecond })
	a := dial(t, s, tokenA, "slow", "ep")
	id := accept(t, s, "/h/ep", []byte("x"))
	if w := a.webhook(); w.ID != id {
		t.Fatalf("got %s", w.ID)
	}
	b := dial(t, s, tokenA, "other", "ep")
	time.Sleep(600 * time.Millisecond) // four lease_ttls with the webhook unacked on a live session
	if got := b.sync(); len(got) != 0 {
		t.Fatalf("a webhook in flight on a live session was handed to another agent: %s", got[0].ID)
	}
	a.send(&protocol.Ack{IDs: []string{id}})
	a.send(&protocol.Report{ID: id, Outcome: protocol.OutcomeDelivered, Status: 200})
	a.confirmed(id)
}
