package queuetest

import (
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/hookrelay/hookrelay/persist"
	"github.com/hookrelay/hookrelay/relay"
)

// leaseHead calls LeaseHead on endpoint ep with ttl d and fails t on an error.
func leaseHead(t *testing.T, q relay.Queue, ep string, d time.Duration) (*persist.Record, time.Time) {
	t.Helper()
	r, due, err := q.LeaseHead(t.Context(), group, ep, d)
	if err != nil {
		t.Fatalf("lease head: %v", err)
	}
	return r, due
}

// wantHead fails t unless LeaseHead hands out the record with id, leased, with its body.
func wantHead(t *testing.T, q relay.Queue, ep, id, what string) *persist.Record {
	t.Helper()
	r, due := leaseHead(t, q, ep, ttl)
	if r == nil {
		t.Fatalf("%s: no head (due %v), want %s", what, due, id)
	}
	if r.ID != id || r.State != persist.StateLeased || len(r.Body) == 0 {
		t.Fatalf("%s: head %s in state %v with %d body bytes, want %s leased with its body", what, r.ID, r.State, len(r.Body), id)
	}
	return r
}

// wantNoHead fails t unless LeaseHead hands out nothing; it returns the due time.
func wantNoHead(t *testing.T, q relay.Queue, ep, what string) time.Time {
	t.Helper()
	r, due := leaseHead(t, q, ep, ttl)
	if r != nil {
		t.Fatalf("%s: leased %s, want nothing", what, r.ID)
	}
	return due
}

// LeaseHead hands out the oldest ready record and nothing behind it while it is leased or
// waits for its retry: an ordered endpoint's lease.
func testLeaseHead(t *testing.T, q relay.Queue) {
	if due := wantNoHead(t, q, "ep", "empty queue"); !due.IsZero() {
		t.Fatalf("due %v with nothing stored, want zero", due)
	}
	var id []string
	for i := range 4 {
		id = append(id, appendT(t, q, rec("ep", fmt.Sprint(i))).ID)
	}
	other := appendT(t, q, rec("other", "o")).ID

	wantHead(t, q, "ep", id[0], "first")
	if due := wantNoHead(t, q, "ep", "head leased"); !due.IsZero() {
		t.Fatalf("due %v while the head is leased, want zero", due)
	}
	wantHead(t, q, "other", other, "another endpoint's head") // queues are independent

	// A nacked head waits for its retry time, and nothing behind it goes out meanwhile.
	next := time.Now().Add(400 * time.Millisecond)
	if err := apply(q, persist.Change{ID: id[0], State: persist.StateReady, Next: next}); err != nil {
		t.Fatal(err)
	}
	due := wantNoHead(t, q, "ep", "head waits for its retry")
	if due.Sub(next).Abs() > 5*time.Millisecond {
		t.Fatalf("due %v, want the nack's next attempt %v", due, next)
	}
	eventually(t, 5*time.Second, "the nacked head is leased once due, before the rest", func() bool {
		r, _ := leaseHead(t, q, "ep", ttl)
		if r != nil && r.ID != id[0] {
			t.Fatalf("leased %s while the nacked head %s waited", r.ID, id[0])
		}
		return r != nil
	})
	if time.Now().Before(next) {
		t.Fatal("the nacked head was leased before its retry time")
	}

	// Acked or finished, the head moves on.
	if err := apply(q, persist.Change{ID: id[0], State: persist.StateAcked}); err != nil {
		t.Fatal(err)
	}
	wantHead(t, q, "ep", id[1], "after the head's ack")
	if err := apply(q, persist.Change{ID: id[1], State: persist.StateDelivered,
		Delivery: &persist.Delivery{At: time.Now(), Status: 200}}); err != nil {
		t.Fatal(err)
	}
	head := wantHead(t, q, "ep", id[2], "after the head's delivery")

	// A released head, and one whose lease ran out, comes first again.
	if err := q.Release(t.Context(), group, leasesOf(head)); err != nil {
		t.Fatal(err)
	}
	r, _ := leaseHead(t, q, "ep", 100*time.Millisecond)
	if r == nil || r.ID != id[2] {
		t.Fatalf("after release: head %v, want %s", r, id[2])
	}
	eventually(t, 5*time.Second, "the head whose lease ran out is leased again", func() bool {
		r, _ := leaseHead(t, q, "ep", ttl)
		if r != nil && r.ID != id[2] {
			t.Fatalf("leased %s while the head %s was still out", r.ID, id[2])
		}
		return r != nil
	})

	// A replayed older record is the head again.
	if err := apply(q, persist.Change{ID: id[2], State: persist.StateDelivered,
		Delivery: &persist.Delivery{At: time.Now(), Status: 200}}); err != nil {
		t.Fatal(err)
	}
	if err := q.Replay(t.Context(), "", id[1]); err != nil {
		t.Fatal(err)
	}
	wantHead(t, q, "ep", id[1], "after a replay of a delivered record")

	if _, _, err := q.LeaseHead(t.Context(), "audit", "ep", ttl); !errors.Is(err, persist.ErrInvalid) {
		t.Fatalf("lease head of an undeclared group: %v, want ErrInvalid", err)
	}
}

// A nacked head still waits for its retry time after the queue is closed and opened again.
func testLeaseHeadDurable(t *testing.T, open Open) {
	dir := t.TempDir()
	q := open(t, dir, Config{})
	first := appendT(t, q, rec("ep", "1")).ID
	appendT(t, q, rec("ep", "2"))
	wantHead(t, q, "ep", first, "first")
	next := time.Now().Add(time.Hour)
	if err := apply(q, persist.Change{ID: first, State: persist.StateReady, Next: next}); err != nil {
		t.Fatal(err)
	}
	if err := q.Close(); err != nil {
		t.Fatal(err)
	}
	q = open(t, dir, Config{})
	defer q.Close()
	if due := wantNoHead(t, q, "ep", "after reopen"); due.Sub(next).Abs() > time.Second {
		t.Fatalf("after reopen: due %v, want the nack's next attempt %v", due, next)
	}
}
