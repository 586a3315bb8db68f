package relay

import (
	"testing"
	"time"

	"github.com/hookrelay/hookrelay/internal/natstest"
	"github.com/hookrelay/hookrelay/persist"
	"github.com/hookrelay/hookrelay/protocol"
)

// Two relays in cluster mode on one real nats-server share the queue: a webhook accepted by
// one reaches an agent connected to the other, whose ack both then show.
func TestClusterRelaysShareQueue(t *testing.T) {
	c := natstest.Start(t, 1)
	cluster := func(node string) func(*Config) {
		return func(cfg *Config) {
			cfg.NodeID = node
			cfg.Store.NATS = &NATSConfig{URLs: c.URLs(), Replicas: 1}
		}
	}
	a := startServer(t, cluster("relay-a"))
	b := startServer(t, cluster("relay-b"))
	body := []byte(`{"hello":"cluster"}`)
	id := accept(t, a, "/h/ep/x", body)

	ag := dial(t, b, tokenA, "agent-1", "ep")
	w := ag.webhook()
	if w.ID != id || string(w.Body) != string(body) {
		t.Fatalf("agent on relay b got %s %q, want %s %q", w.ID, w.Body, id, body)
	}
	ag.send(&protocol.Ack{IDs: []string{id}})
	deadline := time.Now().Add(5 * time.Second)
	for state(t, a, id) != persist.StateAcked {
		if time.Now().After(deadline) {
			t.Fatalf("relay a shows %v, want acked", state(t, a, id))
		}
		time.Sleep(10 * time.Millisecond)
	}
	agents := b.agentsInfo()
	if len(agents) != 1 || agents[0].Node != "relay-b" {
		t.Fatalf("relay b's agents: %+v, want agent-1 on relay-b", agents)
	}
}
