package persist

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/dgraph-io/badger/v4"

	"github.com/hookrelay/hookrelay/internal/testutil"
)

// Dead letters are kept by their own limit: delivered traffic past KeepDoneMax must not evict
// them (the relay's "retention expired" dead letters exist nowhere else).
func TestDeadLettersKeptByOwnLimit(t *testing.T) {
	s := openT(t, "", func(o *Options) { o.KeepDone = time.Hour; o.KeepDoneMax = 3; o.KeepDeadMax = 2 })
	var dead []string
	for i := range 3 {
		r := appendT(t, s, rec("q", fmt.Sprint("dead", i)))
		mustOK(t, s.Complete(r.ID, StateDead, nil, "retention expired"))
		dead = append(dead, r.ID)
	}
	var done []string
	for i := range 10 {
		r := appendT(t, s, rec("q", fmt.Sprint("done", i)))
		mustOK(t, s.Complete(r.ID, StateDelivered, nil, ""))
		done = append(done, r.ID)
	}
	mustOK(t, s.GC())
	for i, id := range dead {
		_, err := s.Get(id)
		if kept := i >= 1; kept != (err == nil) {
			t.Errorf("dead letter %d: %v (KeepDeadMax 2 keeps the newest two, whatever was delivered)", i, err)
		}
	}
	for i, id := range done {
		_, err := s.Get(id)
		if kept := i >= 7; kept != (err == nil) {
			t.Errorf("delivered %d: %v (KeepDoneMax 3 keeps the newest three)", i, err)
		}
	}
}

// With HoldUnreported (the agent), a finished record whose outcome the relay has not heard of
// is never deleted, however many there are: deleting it would leave the relay's copy "acked".
func TestUnreportedNeverEvicted(t *testing.T) {
	s := openT(t, "", func(o *Options) { o.KeepDone = time.Hour; o.KeepDoneMax = 2; o.HoldUnreported = true })
	var ids []string
	for i := range 6 {
		r := appendT(t, s, rec("q", fmt.Sprint(i)))
		mustOK(t, s.Complete(r.ID, StateDelivered, nil, ""))
		ids = append(ids, r.ID)
	}
	mustOK(t, s.GC())
	for i, id := range ids {
		if _, err := s.Get(id); err != nil {
			t.Fatalf("unreported record %d evicted by the count bound: %v", i, err)
		}
	}
	mustOK(t, s.MarkReported(ids...))
	mustOK(t, s.GC())
	for i, id := range ids {
		_, err := s.Get(id)
		if kept := i >= 4; kept != (err == nil) {
			t.Errorf("reported record %d: %v (KeepDoneMax 2 keeps the newest two)", i, err)
		}
	}
}

// A record whose metadata no longer decodes is set aside at Open, counted, and never deleted:
// neither its metadata nor its body (which the orphan sweep would otherwise remove).
func TestUndecodableRecordQuarantined(t *testing.T) {
	dir := t.TempDir()
	s := openT(t, dir, nil)
	good := appendT(t, s, rec("q", "good"))
	bad := appendT(t, s, rec("q", "bad body kept"))
	mustOK(t, s.Close())

	db, err := badger.Open(badgerOptions(withDefaults(Options{Dir: dir, Small: true, Logger: testLogger(t)}), testLogger(t), nil))
	mustOK(t, err)
	mustOK(t, db.Update(func(txn *badger.Txn) error { return txn.Set(metaKey(bad.ID), []byte{0xff, 1, 2}) }))
	mustOK(t, db.Close())

	for range 2 { // twice: the second Open must find it set aside, not gone
		s = openT(t, dir, nil)
		if got := s.Quarantined(); len(got) != 1 || got[0] != bad.ID {
			t.Fatalf("quarantined = %v, want [%s]", got, bad.ID)
		}
		if r, err := s.Get(good.ID); err != nil || string(r.Body) != "good" {
			t.Fatalf("good record: %v", err)
		}
		if _, err := s.Get(bad.ID); err == nil {
			t.Fatalf("quarantined record served: %v", err)
		}
		mustOK(t, s.db.View(func(txn *badger.Txn) error {
			if _, err := txn.Get(bodyKey(bad.ID, 0)); err != nil {
				return fmt.Errorf("quarantined record's body deleted: %w", err)
			}
			_, err := txn.Get(metaKey(bad.ID))
			return err
		}))
		mustOK(t, s.Close())
	}
}

// An id appended twice in one group commit: the second Append answers ErrExists only if the
// first copy really committed. When the first copy's transaction fails, both fail (an agent
// that acked on ErrExists would otherwise ack a webhook it does not hold).
func TestStagedTwiceFailsWithTheFirst(t *testing.T) {
	s := openT(t, "", nil)
	failed := errors.New("injected commit failure")
	s.commitHook = func() error { return failed }
	// Hold the committer so both appends land in one batch.
	hold, started := make(chan struct{}), make(chan struct{})
	released := false
	release := func() {
		if !released {
			released = true
			close(hold)
		}
	}
	defer release()
	go s.submit(context.Background(), &request{stage: func(*batch) (int, error) {
		close(started)
		<-hold
		return 0, nil
	}})
	<-started
	errs := make(chan error, 2)
	for range 2 {
		go func() {
			r := rec("q", "twice")
			r.ID = "01TWICE"
			errs <- s.Append(context.Background(), r)
		}()
	}
	testutil.CheckFor(t, 5*time.Second, time.Millisecond, func() error {
		if len(s.reqs) < 2 {
			return errors.New("appends not queued yet")
		}
		return nil
	})
	release()
	for range 2 {
		if err := <-errs; err == nil || errors.Is(err, ErrExists) {
			t.Fatalf("append of an id whose first copy failed to commit: %v, want a commit error", err)
		}
	}
	if _, err := s.Get("01TWICE"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("get after failed commits: %v", err)
	}
}

// An ack records which agent holds the record (the relay's outcome_timeout waits for that
// agent), a later ack by another agent moves it, and a re-offer (a nack due now) takes an
// acked record back to Ready. The holder survives a reopen.
func TestAckRecordsHolder(t *testing.T) {
	dir := t.TempDir()
	s := openT(t, dir, nil)
	r := appendT(t, s, rec("q", "x"))
	for _, holder := range []string{"edge-1", "edge-2"} {
		if errs := s.Apply([]Change{{ID: r.ID, State: StateAcked, Holder: holder}}); errs[0] != nil {
			t.Fatal(errs[0])
		}
		got, err := s.Get(r.ID)
		if err != nil || got.State != StateAcked || got.Holder != holder {
			t.Fatalf("after ack by %s: %+v %v", holder, got, err)
		}
	}
	mustOK(t, s.Close())
	s = openT(t, dir, nil)
	if got, err := s.Get(r.ID); err != nil || got.Holder != "edge-2" {
		t.Fatalf("holder after reopen: %+v %v", got, err)
	}
	if errs := s.Apply([]Change{{ID: r.ID, State: StateReady, Next: time.Now()}}); errs[0] != nil {
		t.Fatal(errs[0])
	}
	if got, err := s.Get(r.ID); err != nil || got.State != StateReady {
		t.Fatalf("after re-offer: %+v %v", got, err)
	}
}

// A holder whose lease expired (say its webhook waited behind a slow writer) cannot release
// or extend the lease of whoever was handed the record next; a holder that extends in time
// keeps it past its first ttl.
func TestLeaseTokens(t *testing.T) {
	s := openT(t, "", nil)
	r := appendT(t, s, rec("q", "x"))
	first, err := s.Lease("q", 1, 30*time.Millisecond)
	if err != nil || len(first) != 1 || first[0].Lease == 0 {
		t.Fatalf("first lease: %+v %v", first, err)
	}
	var second []*Record
	testutil.CheckFor(t, 5*time.Second, 5*time.Millisecond, func() error {
		var err error
		second, err = s.Lease("q", 1, 50*time.Millisecond)
		if err != nil || len(second) != 1 {
			return fmt.Errorf("not leased again yet: %v", err)
		}
		return nil
	})
	if second[0].Lease == first[0].Lease {
		t.Fatal("a new lease has the old token")
	}
	if n := s.ReleaseLease(map[string]uint64{r.ID: first[0].Lease}); n != 0 {
		t.Fatal("the expired holder released the new holder's lease")
	}
	if lost := s.ExtendLease(map[string]uint64{r.ID: first[0].Lease}, time.Hour); len(lost) != 1 {
		t.Fatalf("the expired holder extended the new holder's lease: lost %v", lost)
	}
	if lost := s.ExtendLease(map[string]uint64{r.ID: second[0].Lease}, time.Hour); len(lost) != 0 {
		t.Fatalf("the holder could not extend its lease: lost %v", lost)
	}
	time.Sleep(100 * time.Millisecond) // past the second lease's first ttl: extended, so still held
	if again, err := s.Lease("q", 1, time.Minute); err != nil || len(again) != 0 {
		t.Fatalf("an extended lease was handed out again: %+v %v", again, err)
	}
	if n := s.ReleaseLease(map[string]uint64{r.ID: second[0].Lease}); n != 1 {
		t.Fatal("the holder could not release its lease")
	}
	if again, err := s.Lease("q", 1, time.Minute); err != nil || len(again) != 1 {
		t.Fatalf("a released record not leased again: %+v %v", again, err)
	}
}
