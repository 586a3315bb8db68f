package queuetest

import (
	"testing"
	"time"

	"github.com/hookrelay/hookrelay/persist"
	"github.com/hookrelay/hookrelay/relay"
)

// A holder whose lease ran out cannot release or extend the lease of the holder the record
// went to next; a holder that extends keeps the record past its first ttl.
func testLeaseTokens(t *testing.T, q relay.Queue) {
	r := appendT(t, q, rec("ep", "x"))
	first, err := q.Lease(t.Context(), group, "ep", 1, 30*time.Millisecond)
	if err != nil || len(first) != 1 || first[0].Lease == 0 {
		t.Fatalf("first lease: %v %v", ids(first), err)
	}
	var second []*persist.Record
	eventually(t, 5*time.Second, "leased again once the first lease ran out", func() bool {
		got, err := q.Lease(t.Context(), group, "ep", 1, 200*time.Millisecond)
		if err != nil {
			t.Fatal(err)
		}
		second = got
		return len(got) == 1
	})
	if second[0].Lease == first[0].Lease {
		t.Fatal("a new lease has the old lease's token")
	}
	if err := q.Release(t.Context(), group, leasesOf(first...)); err != nil {
		t.Fatal(err)
	}
	if got := lease(t, q, "ep", 1); len(got) != 0 {
		t.Fatal("the first holder released the second holder's lease")
	}
	if lost, err := q.Extend(t.Context(), group, leasesOf(first...), time.Hour); err != nil || len(lost) != 1 || lost[0] != r.ID {
		t.Fatalf("the first holder's extend: lost %v, %v; want its lease reported lost", lost, err)
	}
	if lost, err := q.Extend(t.Context(), group, leasesOf(second...), time.Hour); err != nil || len(lost) != 0 {
		t.Fatalf("the holder's extend: lost %v, %v", lost, err)
	}
	time.Sleep(300 * time.Millisecond) // past the second lease's ttl: extended, so still held
	if got := lease(t, q, "ep", 1); len(got) != 0 {
		t.Fatal("an extended lease was handed out again")
	}
	if err := q.Release(t.Context(), group, leasesOf(second...)); err != nil {
		t.Fatal(err)
	}
	if got := lease(t, q, "ep", 1); len(got) != 1 {
		t.Fatal("a released record was not leased again")
	}
}
