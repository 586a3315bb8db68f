package persist

import (
	"errors"
	"testing"
	"time"

	"github.com/hookrelay/hookrelay/internal/testutil"
)

// TestLeaseHeadWaitsForTheHead: a head waiting out its backoff holds back the records behind
// it, across a restart too; then it is handed out, and only once at a time.
func TestLeaseHeadWaitsForTheHead(t *testing.T) {
	dir := t.TempDir()
	s := openT(t, dir, nil)
	a := appendT(t, s, rec("q", "a"))
	b := appendT(t, s, rec("q", "b"))
	if r, _, err := s.LeaseHead("q", time.Minute); err != nil || r == nil || r.ID != a.ID || string(r.Body) != "a" {
		t.Fatalf("lease head: %v, %v; want a", r, err)
	}
	if r, at, err := s.LeaseHead("q", time.Minute); err != nil || r != nil || !at.IsZero() {
		t.Fatalf("lease head while it is leased: %v, %v, %v; want nothing", r, at, err)
	}
	due := time.Now().Add(time.Hour).Truncate(time.Millisecond)
	if err := s.Nack(a.ID, due, &Delivery{At: time.Now(), Status: 503}); err != nil {
		t.Fatal(err)
	}
	check := func() {
		t.Helper()
		r, at, err := s.LeaseHead("q", time.Minute)
		if err != nil || r != nil || !at.Equal(due) {
			t.Fatalf("lease head behind a waiting head: %v, %v, %v; want nothing until %v", r, at, err, due)
		}
	}
	check()
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = openT(t, dir, nil)
	check()

	soon := time.Now().Add(50 * time.Millisecond)
	if err := s.Nack(a.ID, soon, nil); err != nil {
		t.Fatal(err)
	}
	testutil.CheckFor(t, 5*time.Second, 5*time.Millisecond, func() error {
		asked := time.Now() // before the call: LeaseHead's own now is at or after it
		r, _, err := s.LeaseHead("q", time.Minute)
		if err != nil {
			t.Fatal(err)
		}
		if r == nil {
			if asked.Before(soon) {
				return errors.New("not due yet")
			}
			t.Fatal("head due but not handed out")
		}
		if time.Now().Before(soon) || r.ID != a.ID {
			t.Fatalf("handed out %s at %v, want %s not before %v", r.ID, time.Now(), a.ID, soon)
		}
		return nil
	})
	if err := s.Complete(a.ID, StateDelivered, nil, ""); err != nil {
		t.Fatal(err)
	}
	if r, _, err := s.LeaseHead("q", time.Minute); err != nil || r == nil || r.ID != b.ID {
		t.Fatalf("lease head after the first delivered: %v, %v; want b", r, err)
	}
	if r, at, err := s.LeaseHead("none", time.Minute); err != nil || r != nil || !at.IsZero() {
		t.Fatalf("lease head of an empty queue: %v, %v, %v", r, at, err)
	}
}
