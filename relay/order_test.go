package relay

import (
	"fmt"
	"testing"
	"time"

	"github.com/hookrelay/hookrelay/protocol"
)

// orderedServer runs a relay whose endpoint "ep" (token A) is ordered, with n webhooks
// accepted before any agent connects; it returns their ids in the order of their 202s.
func orderedServer(t *testing.T, n int, mutate func(*Config)) (*Server, []string) {
	t.Helper()
	s := startServer(t, func(c *Config) {
		c.Endpoints[0].Ordered = true
		if mutate != nil {
			mutate(c)
		}
	})
	ids := make([]string, n)
	for i := range ids {
		ids[i] = accept(t, s, "/h/ep", []byte(fmt.Sprint(i)))
	}
	return s, ids
}

// firstWebhook waits for the first webhook to reach a or b and returns the agent that got it
// (the endpoint's owner), the other one, and the webhook.
func firstWebhook(t *testing.T, a, b *rawAgent) (owner, other *rawAgent, w *protocol.Webhook) {
	t.Helper()
	var f protocol.Frame
	select {
	case f = <-a.frames:
		owner, other = a, b
	case f = <-b.frames:
		owner, other = b, a
	case <-time.After(10 * time.Second):
		t.Fatal("no webhook within 10s")
	}
	w, ok := f.(*protocol.Webhook)
	if !ok {
		t.Fatalf("got %#v, want a webhook", f)
	}
	return owner, other, w
}

// nothingMore fails t when a webhook reached a that it was not meant to get yet.
func nothingMore(t *testing.T, a *rawAgent, what string) {
	t.Helper()
	if got := a.sync(); len(got) != 0 {
		t.Fatalf("%s: got %s, want nothing", what, got[0].ID)
	}
}

// An ordered endpoint with two agents: one session gets every webhook, one at a time, in id
// order, the next only after the previous one's ack; the other gets none while it is there.
func TestOrderedOneSessionOneAtATime(t *testing.T) {
	s, ids := orderedServer(t, 5, nil)
	a, b := dial(t, s, tokenA, "edge-1"), dial(t, s, tokenA, "edge-2")
	owner, other, w := firstWebhook(t, a, b)
	for i, id := range ids {
		if i > 0 {
			w = owner.webhook()
		}
		if w.ID != id {
			t.Fatalf("webhook %d: got %s, want %s (id order)", i, w.ID, id)
		}
		nothingMore(t, owner, fmt.Sprintf("webhook %d not acked yet", i))
		owner.send(&protocol.Ack{IDs: []string{w.ID}})
	}
	for i := range 5 { // posted while both are connected: still all to the owner
		more := accept(t, s, "/h/ep", []byte(fmt.Sprint("more", i)))
		if w := owner.webhook(); w.ID != more {
			t.Fatalf("got %s, want the new %s", w.ID, more)
		}
		owner.send(&protocol.Ack{IDs: []string{more}})
	}
	nothingMore(t, other, "the other agent, while the owner is connected")
}

// A nacked head holds everything behind it until its retry time; then it comes first.
// Window 1: what is under test is the order, not how many are out at once.
func TestOrderedNackHoldsTheHead(t *testing.T) {
	s, ids := orderedServer(t, 3, func(c *Config) { c.Window = 1 })
	a := dial(t, s, tokenA, "edge-1")
	if w := a.webhook(); w.ID != ids[0] {
		t.Fatalf("got %s, want the head %s", w.ID, ids[0])
	}
	start := time.Now()
	a.send(&protocol.Nack{ID: ids[0], Reason: "target down", RetryAfter: time.Second})
	if w := a.webhook(); w.ID != ids[0] {
		t.Fatalf("got %s while the nacked head %s waited for its retry, want the head again", w.ID, ids[0])
	}
	if d := time.Since(start); d < 900*time.Millisecond {
		t.Errorf("the nacked head came back after %v, before its retry-after of 1s", d)
	}
	for i, id := range ids {
		if i > 0 {
			if w := a.webhook(); w.ID != id {
				t.Fatalf("webhook %d: got %s, want %s", i, w.ID, id)
			}
		}
		a.send(&protocol.Ack{IDs: []string{id}})
	}
	nothingMore(t, a, "every webhook acked")
}

// When the owner goes, another session takes the endpoint over from its unacked head.
func TestOrderedTakeoverFromUnackedHead(t *testing.T) {
	s, ids := orderedServer(t, 3, nil)
	a, b := dial(t, s, tokenA, "edge-1"), dial(t, s, tokenA, "edge-2")
	owner, other, w := firstWebhook(t, a, b)
	if w.ID != ids[0] {
		t.Fatalf("got %s, want the head %s", w.ID, ids[0])
	}
	nothingMore(t, owner, "the head not acked yet")
	owner.send(&protocol.Ack{IDs: []string{ids[0]}})
	if w := owner.webhook(); w.ID != ids[1] {
		t.Fatalf("got %s, want %s", w.ID, ids[1])
	}
	nothingMore(t, owner, "the next not acked yet")
	nothingMore(t, other, "the other agent, while the owner holds the endpoint")
	owner.close() // ids[1] unacked

	for i, id := range ids[1:] {
		if w := other.webhook(); w.ID != id {
			t.Fatalf("after the takeover, webhook %d: got %s, want %s", i, w.ID, id)
		}
		other.send(&protocol.Ack{IDs: []string{id}})
	}
	nothingMore(t, other, "every webhook acked")
}

// A reload that makes an endpoint ordered asks its sessions to reconnect; the new session
// serves it head by head.
func TestOrderedByReload(t *testing.T) {
	s := startServer(t, nil)
	ids := []string{accept(t, s, "/h/ep", []byte("0")), accept(t, s, "/h/ep", []byte("1"))}
	a := dial(t, s, tokenA, "edge-1")
	a.webhook() // unordered: the window sends both
	if err := s.Reload(reloaded(s, Endpoint{Name: "ep", Tokens: []string{hashOf(tokenA)}, Ordered: true})); err != nil {
		t.Fatal(err)
	}
	got := a.ended()
	if g, ok := got[len(got)-1].(*protocol.GoAway); !ok || g.ReconnectAfter > 2*time.Second {
		t.Fatalf("last frame %#v, want a prompt GoAway", got[len(got)-1])
	}
	b := dial(t, s, tokenA, "edge-1")
	if w := b.webhook(); w.ID != ids[0] {
		t.Fatalf("got %s, want the head %s", w.ID, ids[0])
	}
	nothingMore(t, b, "the head not acked yet")
}
