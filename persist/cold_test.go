package persist

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/dgraph-io/badger/v4"
)

// coldN is enough records for some to be cold (beyond one queue's window).
const coldN = windowMax + 300

func statsOf(t *testing.T, s *Store, queue string) QueueStats {
	t.Helper()
	for _, st := range s.Stats() {
		if st.Queue == queue {
			return st
		}
	}
	return QueueStats{}
}

// leaseEvery leases every due record of queue, oldest first, checking the order; returns ids.
func leaseEvery(t *testing.T, s *Store, queue string) []string {
	t.Helper()
	var ids []string
	for {
		recs, err := s.Lease(queue, 300, time.Minute)
		if err != nil {
			t.Fatal(err)
		}
		if len(recs) == 0 {
			return ids
		}
		for _, r := range recs {
			if len(ids) > 0 && r.ID <= ids[len(ids)-1] {
				t.Fatalf("leased %s after %s", r.ID, ids[len(ids)-1])
			}
			ids = append(ids, r.ID)
		}
	}
}

// TestColdRecordsByID: records beyond the window (not in memory) answer Get, Has, Apply,
// Delete and an Append of their id like the others, and the queue's figures follow.
func TestColdRecordsByID(t *testing.T) {
	s := openT(t, "", nil)
	appendN(t, s, "q", coldN)
	list, err := s.List(Filter{Queue: "q", Limit: 3})
	if err != nil || len(list) != 3 {
		t.Fatalf("list: %v %d", err, len(list))
	}
	newest := list[0].ID // cold: the window holds the oldest
	s.mu.Lock()
	hot := s.idx.byID[newest] != nil
	s.mu.Unlock()
	if hot {
		t.Fatalf("%s in memory, want it cold", newest)
	}
	if ok, err := s.Has(newest); !ok || err != nil {
		t.Fatalf("has %s: %v %v", newest, ok, err)
	}
	if r, err := s.Get(newest); err != nil || string(r.Body) != "0123456789abcdef" || r.State != StateReady {
		t.Fatalf("get %s: %+v %v", newest, r, err)
	}
	err = s.Append(context.Background(), &Record{ID: newest, Queue: "q", Body: []byte("x")})
	if !errors.Is(err, ErrExists) {
		t.Fatalf("append of a cold id: %v, want ErrExists", err)
	}
	// Acked then delivered: still counted until finished.
	if errs := s.Apply([]Change{{ID: newest, State: StateAcked, Holder: "a"}}); errs[0] != nil {
		t.Fatal(errs[0])
	}
	if st := statsOf(t, s, "q"); st.Pending != coldN {
		t.Fatalf("pending %d after ack, want %d", st.Pending, coldN)
	}
	if err := s.Complete(newest, StateDelivered, nil, ""); err != nil {
		t.Fatal(err)
	}
	if st := statsOf(t, s, "q"); st.Pending != coldN-1 || st.Bytes != int64(coldN-1)*16 {
		t.Fatalf("stats %+v after delivery, want %d pending", st, coldN-1)
	}
	// A cold record nacked stays ready; one deleted is gone from the figures.
	second, third := list[1].ID, list[2].ID
	if err := s.Nack(second, time.Now(), &Delivery{Status: 500}); err != nil {
		t.Fatal(err)
	}
	if err := s.Delete(third); err != nil {
		t.Fatal(err)
	}
	if st := statsOf(t, s, "q"); st.Pending != coldN-2 {
		t.Fatalf("pending %d, want %d", st.Pending, coldN-2)
	}
	ids := leaseEvery(t, s, "q")
	if len(ids) != coldN-2 || ids[len(ids)-1] != second {
		t.Fatalf("leased %d ending %s, want %d ending %s", len(ids), ids[len(ids)-1], coldN-2, second)
	}
	if r, err := s.Get(second); err != nil || r.Attempts != 1 || r.State != StateLeased {
		t.Fatalf("nacked cold record: %+v %v", r, err)
	}
}

// TestColdReopen: a reopened store with more waiting records than a window counts them all
// and hands them all out, oldest first; Expire and List see the cold ones too.
func TestColdReopen(t *testing.T) {
	dir := t.TempDir()
	s := openT(t, dir, nil)
	old := time.Now().Add(-2 * time.Hour)
	for range 10 {
		appendT(t, s, &Record{Queue: "old", ReceivedAt: old, Body: []byte("x")})
	}
	appendN(t, s, "q", coldN)
	mustOK(t, s.Close())
	s = openT(t, dir, nil)
	if st := statsOf(t, s, "q"); st.Pending != coldN || st.Oldest.IsZero() {
		t.Fatalf("stats after reopen %+v, want %d pending", st, coldN)
	}
	if n, err := s.Expire("q", time.Hour); err != nil || n != 0 {
		t.Fatalf("expire of recent records: %d %v", n, err)
	}
	if ids := leaseEvery(t, s, "q"); len(ids) != coldN {
		t.Fatalf("leased %d after reopen, want %d", len(ids), coldN)
	}
	if n, err := s.Expire("old", time.Hour); err != nil || n != 10 {
		t.Fatalf("expire: %d %v, want 10", n, err)
	}
}

// TestColdExpireAndList: records received long ago and waiting cold are expired; List, newest
// first, shows the cold newest.
func TestColdExpireAndList(t *testing.T) {
	s := openT(t, "", nil)
	old := time.Now().Add(-2 * time.Hour)
	var last string
	for i := range coldN {
		r := appendT(t, s, &Record{Queue: "q", ReceivedAt: old.Add(time.Duration(i)), Body: []byte("x")})
		last = r.ID
	}
	l, err := s.List(Filter{Queue: "q", State: StateReady, Limit: 1})
	if err != nil || len(l) != 1 || l[0].ID != last {
		t.Fatalf("list newest: %v %+v, want %s", err, l, last)
	}
	if st := statsOf(t, s, "q"); !st.Oldest.Equal(old) {
		t.Fatalf("oldest %v, want %v", st.Oldest, old)
	}
	if n, err := s.Expire("q", time.Hour); err != nil || n != coldN {
		t.Fatalf("expire: %d %v, want %d", n, err, coldN)
	}
	if st := statsOf(t, s, "q"); st.Pending != 0 || st.Dead != coldN {
		t.Fatalf("stats after expire %+v", st)
	}
	if recs, _ := s.Lease("q", 10, time.Minute); len(recs) != 0 {
		t.Fatalf("leased %d expired records", len(recs))
	}
}

// TestColdNackOverflow: retries put back into a full window go cold and still come due.
func TestColdNackOverflow(t *testing.T) {
	s := openT(t, "", nil)
	appendN(t, s, "q", coldN)
	ids := leaseEvery(t, s, "q")
	if len(ids) != coldN {
		t.Fatalf("leased %d, want %d", len(ids), coldN)
	}
	soon := time.Now().Add(300 * time.Millisecond)
	changes := make([]Change, len(ids))
	for i, id := range ids {
		changes[i] = Change{ID: id, State: StateReady, Next: soon}
	}
	for i, err := range s.Apply(changes) {
		if err != nil {
			t.Fatalf("nack %s: %v", ids[i], err)
		}
	}
	s.mu.Lock()
	q := s.idx.queues["q"]
	window, cold := q.window(), q.cold
	s.mu.Unlock()
	if window > windowMax || cold != coldN-window {
		t.Fatalf("window %d, cold %d after nacks", window, cold)
	}
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(soon) {
		if recs, _ := s.Lease("q", 10, time.Minute); len(recs) != 0 {
			t.Fatalf("leased a record before its retry time")
		}
		time.Sleep(20 * time.Millisecond)
	}
	var got []string
	for len(got) < coldN && time.Now().Before(deadline) {
		got = append(got, leaseEvery(t, s, "q")...)
	}
	if len(got) != coldN {
		t.Fatalf("leased %d retries, want %d", len(got), coldN)
	}
}

// TestColdLeaseHead: the head of an ordered queue is the lowest id even when it was put back
// cold.
func TestColdLeaseHead(t *testing.T) {
	s := openT(t, "", nil)
	appendN(t, s, "q", coldN)
	ids := leaseEvery(t, s, "q")
	// Fill the window with the others, then put the lowest back: it goes cold.
	s.Release(ids[1:]...)
	if err := s.Nack(ids[0], time.Now(), nil); err != nil {
		t.Fatal(err)
	}
	r, _, err := s.LeaseHead("q", time.Minute)
	if err != nil || r == nil || r.ID != ids[0] {
		t.Fatalf("head %+v %v, want %s", r, err, ids[0])
	}
}

// TestMigrateFormat1: a store written by format 1 (no ready keys) opens, gets them, and hands
// out all its records.
func TestMigrateFormat1(t *testing.T) {
	dir := t.TempDir()
	s := openT(t, dir, nil)
	appendN(t, s, "q", coldN)
	mustOK(t, s.Close())
	db, err := badger.Open(badger.DefaultOptions(dir).WithLogger(nil))
	if err != nil {
		t.Fatal(err)
	}
	err = db.DropPrefix([]byte{readyTag})
	if err == nil {
		err = db.Update(func(txn *badger.Txn) error { return txn.Set(formatKey, []byte("1")) })
	}
	mustOK(t, err)
	mustOK(t, db.Close())

	s = openT(t, dir, nil)
	if ids := leaseEvery(t, s, "q"); len(ids) != coldN {
		t.Fatalf("leased %d after migration, want %d", len(ids), coldN)
	}
	err = s.db.View(func(txn *badger.Txn) error {
		item, err := txn.Get(formatKey)
		if err != nil {
			return err
		}
		return item.Value(func(v []byte) error {
			if string(v) != formatVersion {
				t.Errorf("format %q after migration, want %q", v, formatVersion)
			}
			return nil
		})
	})
	mustOK(t, err)
}

// TestFinishedSweptEarly: finished records beyond retention's counts, held in memory until a
// sweep, are swept as soon as they are too many, not at the next GCInterval.
func TestFinishedSweptEarly(t *testing.T) {
	s := openT(t, "", func(o *Options) { o.KeepDoneMax, o.KeepDeadMax, o.GCInterval = 10, 10, time.Hour })
	n := 20 + sweepSlack + 500
	appendN(t, s, "q", n)
	ids := leaseEvery(t, s, "q")
	changes := make([]Change, len(ids))
	for i, id := range ids {
		changes[i] = Change{ID: id, State: StateDelivered}
	}
	for _, err := range s.Apply(changes) {
		if err != nil {
			t.Fatal(err)
		}
	}
	deadline := time.Now().Add(20 * time.Second)
	for {
		s.mu.Lock()
		finished := s.idx.finished
		s.mu.Unlock()
		if finished <= 10 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d finished records held, want them swept down to KeepDoneMax (10)", finished)
		}
		s.Append(context.Background(), &Record{Queue: "other", Body: []byte("x")}) // a commit asks again
		time.Sleep(50 * time.Millisecond)
	}
}
