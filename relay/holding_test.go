package relay

import (
	"fmt"
	"testing"
	"time"

	"github.com/hookrelay/hookrelay/internal/testutil"
	"github.com/hookrelay/hookrelay/protocol"
)

// holdings counts acked ids without an outcome, while they are young; reports, ageing, acks
// of the same id again and the ring's eviction of the oldest each keep the count right.
func TestHoldingsCount(t *testing.T) {
	h := newHoldings(time.Second)
	t0 := time.Now()
	check := func(now time.Time, want int) {
		t.Helper()
		if n, _ := h.held(now); n != want {
			t.Fatalf("held %d, want %d", n, want)
		}
	}
	h.add("a", t0)
	h.add("b", t0.Add(100*time.Millisecond))
	h.add("c", t0.Add(200*time.Millisecond))
	check(t0.Add(300*time.Millisecond), 3)
	if !h.reported("b") || h.reported("b") || h.has("b") {
		t.Fatal("b not forgotten once, on its report")
	}
	check(t0.Add(300*time.Millisecond), 2)
	_, ages := h.held(t0.Add(300 * time.Millisecond))
	if !ages.Equal(t0.Add(time.Second)) {
		t.Fatalf("the oldest ages at %v, want a's ack + 1s", ages.Sub(t0))
	}
	check(t0.Add(1050*time.Millisecond), 1) // a aged; c is young
	if !h.has("a") || !h.reported("a") {
		t.Fatal("an aged id is still remembered for its report")
	}
	check(t0.Add(1050*time.Millisecond), 1)   // reporting an aged id changes no count
	h.add("c", t0.Add(1100*time.Millisecond)) // acked again (a second lease)
	check(t0.Add(1250*time.Millisecond), 1)   // c's first ack aged, its second counts
	check(t0.Add(3*time.Second), 0)

	// The ring forgets the oldest beyond recentAcked, young or not.
	h = newHoldings(time.Hour)
	for i := range recentAcked + 10 {
		h.add(fmt.Sprint(i), t0)
	}
	check(t0, recentAcked)
	if h.has("0") || !h.has(fmt.Sprint(recentAcked+9)) {
		t.Fatal("the ring kept the oldest or lost the newest")
	}
}

// An agent that stores webhooks faster than it delivers them holds at most holdMax of those it
// acked recently without an outcome: the rest wait on the relay. Once held back, the relay
// leases again when reports made room for holdMax/16; a held webhook stops counting after
// holdYoung (its delivery retries), so an agent whose target is down still receives, slowly,
// also when the room left is under holdMax/16.
func TestTunnelAgentHoldsBounded(t *testing.T) {
	const young = 3 * time.Second
	s := startServer(t, func(c *Config) { c.Window, c.holdMax, c.holdYoung = 8, 32, young })
	for i := range 60 {
		accept(t, s, "/h/ep", []byte(fmt.Sprint(i)))
	}
	a := dial(t, s, tokenA, "edge-1")
	var got []string
	take := func() { // acks each webhook as it comes; reports none
		for _, w := range a.sync() {
			got = append(got, w.ID)
			a.send(&protocol.Ack{IDs: []string{w.ID}})
		}
	}
	report := func(id string) {
		a.send(&protocol.Report{ID: id, Outcome: protocol.OutcomeDelivered, Status: 200, Attempts: 1, At: time.Now()})
	}
	start := time.Now()
	settled := func(what string, want int) {
		t.Helper()
		testutil.WaitFor(t, 10*time.Second, what, func() bool { take(); return len(got) >= want })
		time.Sleep(300 * time.Millisecond)
		take()
		if len(got) != want || time.Since(start) >= young {
			t.Fatalf("%s: %d webhooks in %v, want %d before holdYoung", what, len(got), time.Since(start), want)
		}
	}
	settled("an agent that acks and never reports", 32)
	report(got[0])
	settled("one report: room for 1, under holdMax/16", 32)
	report(got[1])
	settled("two reports: room for 2", 34)
	report(got[2])
	settled("three reports: room for 1 again", 34)
	testutil.WaitFor(t, 10*time.Second, "more once the held ones age", func() bool { take(); return len(got) > 34 })
	if d := time.Since(start); d < young {
		t.Errorf("more webhooks after %v, before the held ones were %v old", d, young)
	}
}
