package persist

import (
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/dgraph-io/badger/v4"
)

// fromDisk reads a record straight from Badger, past the recent cache and the index (a leased
// record reads as stored, Ready).
func fromDisk(t *testing.T, s *Store, id string) *Record {
	t.Helper()
	var r *Record
	err := s.db.View(func(txn *badger.Txn) error {
		var err error
		r, err = s.readRecord(txn, id, true)
		return err
	})
	if err != nil {
		t.Fatalf("read %s: %v", id, err)
	}
	return r
}

// What Lease and the committer take from the recent cache is exactly what Badger holds, after
// appends and changes of every kind; and the cache stays within its bound.
func TestRecentCacheAgreesWithDisk(t *testing.T) {
	s := openT(t, "", holdUnreported)
	small := appendT(t, s, rec("q", "small body"))
	empty := appendT(t, s, rec("q", ""))
	big := appendT(t, s, rec("q", strings.Repeat("b", recentBodyMax+1)))
	check := func(what string, recs []*Record) {
		t.Helper()
		for _, r := range recs {
			want := fromDisk(t, s, r.ID)
			want.State = StateLeased
			if r.Lease == 0 {
				t.Fatalf("%s: leased %s without a lease token", what, r.ID)
			}
			want.Lease = r.Lease // the lease is in memory only
			if !reflect.DeepEqual(r, want) {
				t.Fatalf("%s: leased %+v\nbut stored %+v", what, r, want)
			}
		}
	}
	leased, err := s.Lease("q", 10, time.Minute)
	if err != nil || len(leased) != 3 {
		t.Fatalf("lease: %d %v", len(leased), err)
	}
	check("after append", leased)

	d := &Delivery{At: time.Now(), Status: 500, Millis: 3, Error: "boom"}
	mustOK(t, s.Nack(small.ID, time.Now(), d))
	mustOK(t, s.Complete(empty.ID, StateDead, d, "status 500"))
	mustOK(t, s.Replay(empty.ID))
	mustOK(t, s.Nack(big.ID, time.Now(), nil))
	leased, _ = s.Lease("q", 10, time.Minute)
	if len(leased) != 3 {
		t.Fatalf("lease after changes: %d", len(leased))
	}
	check("after changes", leased)
	if got := leased[0]; got.ID != small.ID || got.Attempts != 1 || len(got.Deliveries) != 1 {
		t.Fatalf("nacked record: %+v", got)
	}

	// Changes staged from cached metadata land on disk as from stored metadata.
	mustOK(t, s.Complete(small.ID, StateDelivered, &Delivery{At: time.Now(), Status: 200}, ""))
	got, _ := s.Get(small.ID)
	if got.State != StateDelivered || got.Attempts != 2 || got.Deliveries[0].Status != 500 || string(got.Body) != "small body" {
		t.Fatalf("after complete: %+v", got)
	}
	unrep, err := s.Unreported(10)
	if err != nil || len(unrep) != 1 {
		t.Fatalf("unreported: %+v %v", unrep, err)
	}
	want := fromDisk(t, s, small.ID)
	want.Body = nil
	if !reflect.DeepEqual(unrep[0], want) {
		t.Fatalf("unreported %+v\nbut stored %+v", unrep[0], want)
	}
	mustOK(t, s.Delete(big.ID))
	s.mu.Lock()
	_, kept := s.recent.m[big.ID]
	s.mu.Unlock()
	if kept {
		t.Fatal("a deleted record stayed in the cache")
	}

	for range 2 * recentMax / (4 << 10) {
		appendT(t, s, rec("q", strings.Repeat("x", 4<<10)))
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.recent.bytes > recentMax || len(s.recent.m) == 0 {
		t.Fatalf("cache holds %d bytes in %d records, bound %d", s.recent.bytes, len(s.recent.m), recentMax)
	}
}

// Without SharedBodies a caller may reuse the body it appended and change the one it leased:
// neither reaches the store. With it, Lease hands out the appended bytes themselves.
func TestRecentBodiesCopiedUnlessShared(t *testing.T) {
	for _, shared := range []bool{false, true} {
		s := openT(t, "", func(o *Options) { o.SharedBodies = shared })
		r := appendT(t, s, rec("q", "original"))
		appended := r.Body
		leased, err := s.Lease("q", 1, time.Minute)
		if err != nil || len(leased) != 1 || string(leased[0].Body) != "original" {
			t.Fatalf("shared %v: lease %+v %v", shared, leased, err)
		}
		if same := &leased[0].Body[0] == &appended[0]; same != shared {
			t.Fatalf("shared %v: leased body is the appended one: %v", shared, same)
		}
		if shared {
			continue
		}
		copy(appended, "APPENDED")
		copy(leased[0].Body, "LEASED!!")
		s.Release(r.ID)
		again, err := s.Lease("q", 1, time.Minute)
		if err != nil || len(again) != 1 || string(again[0].Body) != "original" {
			t.Fatalf("after the caller changed its bodies, leased %+v %v", again, err)
		}
	}
}

// A record Lease read from Badger stays in the recent cache, as stored, for its holder's ack
// and outcome; one that changed since it was picked (its lease ended: a new one has another
// token) is left out.
func TestLeaseKeepsWhatItRead(t *testing.T) {
	dir := t.TempDir()
	s := openT(t, dir, nil)
	ids := make([]string, 3)
	for i := range ids {
		ids[i] = appendT(t, s, rec("q", "body")).ID
	}
	s.Close()
	s = openT(t, dir, nil) // nothing cached
	recs, err := s.Lease("q", 2, time.Minute)
	if err != nil || len(recs) != 2 {
		t.Fatalf("lease: %d records, %v", len(recs), err)
	}
	s.mu.Lock()
	for _, r := range recs {
		c := s.recent.getLocked(r.ID)
		if c == nil {
			s.mu.Unlock()
			t.Fatalf("%s was read for its lease and not cached", r.ID)
		}
		want := fromDisk(t, s, r.ID)
		want.Body = nil
		if !reflect.DeepEqual(c.meta, want) {
			s.mu.Unlock()
			t.Fatalf("cached %+v\nbut stored %+v", c.meta, want)
		}
		if c.body != nil || c.bodyLen != len("body") {
			s.mu.Unlock()
			t.Fatalf("cached body %q (length %d): metadata only was wanted", c.body, c.bodyLen)
		}
	}
	s.mu.Unlock()
	for _, err := range s.Apply([]Change{{ID: recs[0].ID, State: StateAcked, Holder: "a"},
		{ID: recs[1].ID, State: StateDelivered}}) {
		if err != nil {
			t.Fatal(err)
		}
	}
	for i, st := range []State{StateAcked, StateDelivered} {
		if got := fromDisk(t, s, recs[i].ID); got.State != st {
			t.Fatalf("%s stored as %v, want %v", recs[i].ID, got.State, st)
		}
	}

	// The third: leased, then its lease taken away before the read comes back.
	third, err := s.Lease("q", 1, time.Minute)
	if err != nil || len(third) != 1 {
		t.Fatalf("lease: %d records, %v", len(third), err)
	}
	id := third[0].ID
	s.mu.Lock()
	s.recent.delLocked(id)
	e := s.idx.byID[id]
	s.cacheLeasedLocked(e, third[0].Lease+1, fromDisk(t, s, id)) // another lease's read
	cached := s.recent.getLocked(id) != nil
	s.mu.Unlock()
	if cached {
		t.Fatal("a read for a lease no longer current was cached")
	}
}
