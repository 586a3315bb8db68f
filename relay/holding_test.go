package relay

import (
	"fmt"
	"testing"
	"time"
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
