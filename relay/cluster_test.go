package relay

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/hookrelay/hookrelay/internal/natstest"
	"github.com/hookrelay/hookrelay/internal/testutil"
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
			withAdminToken(cfg)
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
	if _, body := get(t, "GET", b.url("/metrics"), adminToken); !strings.Contains(body, `hookrelay_node_info{node_id="relay-b",store="nats"} 1`) {
		t.Errorf("relay b's /metrics lacks hookrelay_node_info for relay-b on nats")
	}
}

// The Standard Webhooks replay window holds across relays: a resend of a message id to
// another relay of the cluster is answered with the first copy's id and not stored again,
// and copies sent to two relays at once end up stored once, every sender answered with the
// one id kept.
func TestClusterStandardWebhooksReplayAcrossRelays(t *testing.T) {
	c := natstest.Start(t, 3)
	cluster := func(node string) func(*Config) {
		return func(cfg *Config) {
			cfg.NodeID = node
			cfg.Store.NATS = &NATSConfig{URLs: c.URLs(), Replicas: 3}
			standardEndpoint(cfg)
		}
	}
	a := startServer(t, cluster("relay-a"))
	b := startServer(t, cluster("relay-b"))
	body := `{"type":"invoice.paid"}`
	now := time.Now()
	first := accept2(t, a, "/h/sw", body, swHeaders("msg_1", now, body))
	for i, s := range []*Server{b, a, b} {
		if got := accept2(t, s, "/h/sw", body, swHeaders("msg_1", now, body)); got != first {
			t.Fatalf("resend %d: id %s, want the first copy's %s", i, got, first)
		}
	}
	if got := counterValue(t, b.metrics.duplicates.WithLabelValues("sw")); got != 2 {
		t.Errorf("relay b's duplicates = %v, want 2", got)
	}
	if other := accept2(t, b, "/h/sw", body, swHeaders("msg_2", now, body)); other == first {
		t.Errorf("another message id got the first one's id %s", first)
	}

	// Copies at both relays at once.
	hdr := swHeaders("msg_same", now, body)
	ids := postCopies(t, []*Server{a, b}, "/h/sw", body, hdr, 6)
	for i := range ids {
		if ids[i] != ids[0] || ids[i] == "" {
			t.Fatalf("copies at two relays got ids %v, want one id", ids)
		}
	}
	// Both relays list three webhooks: msg_1, msg_2 and msg_same once.
	for _, s := range []*Server{a, b} {
		testutil.CheckFor(t, 5*time.Second, 20*time.Millisecond, func() error {
			if got := stored(t, s, "sw"); got != 3 {
				return fmt.Errorf("%s lists %d webhooks, want 3", s.cfg.NodeID, got)
			}
			return nil
		})
	}
}
