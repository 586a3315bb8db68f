package agent

import (
	"bytes"
	"fmt"
	"slices"
	"testing"
)

// orderedAgent runs an agent with an ordered route for "ep" whose store holds at most quota
// bytes of it (0 = no quota), behind a fake relay.
func orderedAgent(t *testing.T, quota int64) *relayConn {
	tg := newTarget(t, nil)
	fr := newFakeRelay(t)
	rt := fastRoute(tg.URL)
	rt.Ordered = true
	a := newTestAgentWith(t, fr.url(), func(c *Config) {
		if quota > 0 {
			c.storeQuota = func(string) int64 { return quota }
		}
	}, rt)
	runAgent(t, a)
	return fr.welcome(t)
}

// TestSessionOrderedStoresInArrivalOrder: webhooks of an ordered endpoint are stored (and so
// acked) in the order they arrived, big ones before small ones; 64 parallel store workers let
// a small one that came later commit first.
func TestSessionOrderedStoresInArrivalOrder(t *testing.T) {
	c := orderedAgent(t, 0)
	v := newView()
	var order []string
	v.onAck = func(ids []string) { order = append(order, ids...) }
	var sent []string
	for i := range 120 {
		id := fmt.Sprintf("w%03d", i)
		sent = append(sent, id)
		body := []byte("small " + id)
		if i%10 == 0 {
			body = bytes.Repeat([]byte("b"), 600<<10)
		}
		c.send(t, webhook(id, body))
	}
	c.until(t, v, func() bool { return len(order) >= len(sent) })
	if !slices.Equal(order, sent) {
		t.Fatalf("acked in the order %v, want arrival order", order)
	}
}

// TestSessionOrderedNacksAfterARefusal: once a webhook of an ordered endpoint was refused (its
// queue is over quota), every later one is refused too, until the refused one comes again and
// is stored; so the relay resends them in order.
func TestSessionOrderedNacksAfterARefusal(t *testing.T) {
	c := orderedAgent(t, 64<<10)
	v := newView()
	c.send(t, webhook("a", bytes.Repeat([]byte("a"), 100<<10))) // over the quota
	c.send(t, webhook("b", []byte("small")))                    // would fit
	c.until(t, v, func() bool { return len(v.nacks) == 2 })
	if v.nacks[0].ID != "a" || v.nacks[1].ID != "b" || v.nacks[1].Reason != "ordered: an earlier webhook was refused" {
		t.Fatalf("nacks %+v %+v, want a (quota), then b as ordered", v.nacks[0], v.nacks[1])
	}
	if len(v.acked) != 0 {
		t.Fatalf("acked %v behind a refused webhook", v.acked)
	}
	// b again before a: still refused.
	c.send(t, webhook("b", []byte("small")))
	c.until(t, v, func() bool { return len(v.nacks) == 3 })
	// a again, fitting now: stored; then b is too.
	c.send(t, webhook("a", []byte("a fits now")))
	c.send(t, webhook("b", []byte("small")))
	c.until(t, v, func() bool { return v.acked["a"] == 1 && v.acked["b"] == 1 })
	if len(v.nacks) != 3 || v.nacks[2].ID != "b" {
		t.Fatalf("nacks %d, want 3", len(v.nacks))
	}
}
