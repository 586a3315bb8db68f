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
// acked recently without an outcome: the rest wait on the relay. A report makes room at once;
// a held webhook stops counting after holdYoung (its delivery retries), so an agent whose
// target is down still receives, slowly.
func TestTunnelAgentHoldsBounded(t *testing.T) {
	s := startServer(t, func(c *Config) { c.Window, c.holdMax, c.holdYoung = 4, 6, 2*time.Second })
	for i := range 20 {
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
	start := time.Now()
	testutil.WaitFor(t, 10*time.Second, "holdMax webhooks", func() bool { take(); return len(got) >= 6 })
	time.Sleep(300 * time.Millisecond)
	take()
	if len(got) != 6 || time.Since(start) >= 2*time.Second {
		t.Fatalf("an agent that acks and never reports got %d webhooks in %v, want holdMax 6", len(got), time.Since(start))
	}
	a.send(&protocol.Report{ID: got[0], Outcome: protocol.OutcomeDelivered, Status: 200, Attempts: 1, At: time.Now()})
	testutil.WaitFor(t, 10*time.Second, "one more after a report", func() bool { take(); return len(got) > 6 })
	time.Sleep(300 * time.Millisecond)
	take()
	if len(got) != 7 || time.Since(start) >= 2*time.Second {
		t.Fatalf("after one report: %d webhooks in %v, want 7 before holdYoung", len(got), time.Since(start))
	}
	testutil.WaitFor(t, 10*time.Second, "more once the held ones age", func() bool { take(); return len(got) > 7 })
	if d := time.Since(start); d < 2*time.Second {
		t.Errorf("more webhooks after %v, before the held ones were %v old", d, 2*time.Second)
	}
}
