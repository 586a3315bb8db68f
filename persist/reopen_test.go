package persist

import (
	"bytes"
	"errors"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/dgraph-io/badger/v4"
)

func TestReopenKeepsEverythingAndReadiesLeases(t *testing.T) {
	dir := t.TempDir()
	s := openT(t, dir, nil)
	ready := appendT(t, s, rec("a", "ready"))
	leased := appendT(t, s, rec("a", "leased"))
	acked := appendT(t, s, rec("b", "acked"))
	dead := appendT(t, s, rec("b", "dead"))
	later := appendT(t, s, rec("b", "later"))
	got, _ := s.Lease("a", 2, time.Hour)
	if len(got) != 2 {
		t.Fatalf("leased %d", len(got))
	}
	s.Release(ready.ID)
	mustOK(t, s.Ack(acked.ID))
	mustOK(t, s.Complete(dead.ID, StateDead, &Delivery{At: time.Now(), Status: 404}, "status 404"))
	next := time.Now().Add(time.Hour)
	mustOK(t, s.Nack(later.ID, next, &Delivery{At: time.Now(), Error: "refused"}))
	before := s.Stats()
	mustOK(t, s.Close())

	s = openT(t, dir, nil)
	for _, r := range []*Record{ready, leased, acked, dead, later} {
		g, err := s.Get(r.ID)
		if err != nil {
			t.Fatal(err)
		}
		sameRecord(t, g, r)
	}
	want := map[string]State{ready.ID: StateReady, leased.ID: StateReady, acked.ID: StateAcked, dead.ID: StateDead, later.ID: StateReady}
	for id, st := range want {
		if got := stateOf(t, s, id); got != st {
			t.Errorf("%s: %v after reopen, want %v", id, got, st)
		}
	}
	if g, _ := s.Get(later.ID); !g.NextAttempt.Equal(next) || g.Attempts != 1 || g.Deliveries[0].Error != "refused" {
		t.Errorf("nacked record after reopen: %+v", g)
	}
	if g, _ := s.Get(dead.ID); g.DeadReason != "status 404" || g.FinishedAt.IsZero() {
		t.Errorf("dead record after reopen: %+v", g)
	}
	after := s.Stats()
	if len(after) != len(before) {
		t.Fatalf("stats %+v, before %+v", after, before)
	}
	for i := range after {
		if after[i].Pending != before[i].Pending || after[i].Bytes != before[i].Bytes ||
			after[i].Dead != before[i].Dead || !after[i].Oldest.Equal(before[i].Oldest) {
			t.Fatalf("stats %+v, before %+v", after, before)
		}
	}
	l, _ := s.Lease("a", 10, time.Minute)
	if len(l) != 2 || l[0].ID != ready.ID || l[1].ID != leased.ID {
		t.Fatalf("after reopen leased %+v, want both records of a", l)
	}
}

func TestFormatVersion(t *testing.T) {
	dir := t.TempDir()
	s := openT(t, dir, nil)
	appendT(t, s, rec("q", "b"))
	mustOK(t, s.Close())
	s = openT(t, dir, nil) // the same format opens
	mustOK(t, s.Close())

	raw := func(dir string, fn func(txn *badger.Txn) error) {
		db, err := badger.Open(badger.DefaultOptions(dir).WithLogger(nil))
		if err != nil {
			t.Fatal(err)
		}
		if err := db.Update(fn); err != nil {
			t.Fatal(err)
		}
		mustOK(t, db.Close())
	}
	raw(dir, func(txn *badger.Txn) error { return txn.Set(formatKey, []byte("99")) })
	if _, err := Open(Options{Dir: dir, Logger: testLogger(t)}); !errors.Is(err, ErrFormat) {
		t.Fatalf("open of format 99: %v, want ErrFormat", err)
	} else {
		t.Logf("the message: %v", err)
	}

	foreign := t.TempDir()
	raw(foreign, func(txn *badger.Txn) error { return txn.Set([]byte("someone else's"), []byte("x")) })
	if _, err := Open(Options{Dir: foreign, Logger: testLogger(t)}); !errors.Is(err, ErrFormat) {
		t.Fatalf("open of a badger dir without format key: %v, want ErrFormat", err)
	}
}

func TestOrphanBodiesRemovedAtOpen(t *testing.T) {
	dir := t.TempDir()
	s := openT(t, dir, nil)
	kept := appendT(t, s, rec("q", "kept"))
	// What a crash between two transactions of one batch leaves: body without metadata.
	mustOK(t, s.db.Update(func(txn *badger.Txn) error { return txn.Set(bodyKey("ORPHAN", 0), []byte("x")) }))
	mustOK(t, s.Close())
	s = openT(t, dir, nil)
	err := s.db.View(func(txn *badger.Txn) error {
		_, err := txn.Get(bodyKey("ORPHAN", 0))
		return err
	})
	if !errors.Is(err, badger.ErrKeyNotFound) {
		t.Fatalf("orphan body still there: %v", err)
	}
	if g, err := s.Get(kept.ID); err != nil || string(g.Body) != "kept" {
		t.Fatalf("kept record: %+v %v", g, err)
	}
}

func TestBigBodySmallProfile(t *testing.T) {
	dir := t.TempDir()
	s := openT(t, dir, nil) // Small: 16 MiB value-log files, 0.6 MiB transactions
	body := make([]byte, 25<<20+12345)
	rng := rand.NewChaCha8([32]byte{1})
	rng.Read(body)
	r := appendT(t, s, &Record{Queue: "q", Body: body, Headers: []Header{{"A", "b"}}})
	small := appendT(t, s, rec("q", "after the big one"))
	l, err := s.Lease("q", 2, time.Minute)
	if err != nil || len(l) != 2 || !bytes.Equal(l[0].Body, body) || string(l[1].Body) != "after the big one" {
		t.Fatalf("lease of the big body: %d records, %v", len(l), err)
	}
	mustOK(t, s.Close())
	s = openT(t, dir, nil)
	g, err := s.Get(r.ID)
	if err != nil || !bytes.Equal(g.Body, body) || g.Size != int64(len(body)+2) {
		t.Fatalf("big body after reopen: %v", err)
	}
	mustOK(t, s.Delete(r.ID))
	if _, err := s.Get(small.ID); err != nil {
		t.Fatal(err)
	}
}

// TestOpenStoreWithMetadataInTree: a store written before the metadata moved to the value log
// (value threshold 1 KiB: metadata in the LSM tree) opens with everything in it, and its
// records change state, finish and are swept as new ones are.
func TestOpenStoreWithMetadataInTree(t *testing.T) {
	dir := t.TempDir()
	old := openT(t, dir, func(o *Options) { o.valueThreshold = 1 << 10 })
	hdr := strings.Repeat("v", 300)
	var recs []*Record
	for i := range 50 {
		r := rec("q", strings.Repeat("b", i*40)) // bodies from 0 to 1960 bytes, both sides of 1 KiB
		r.Headers = append(r.Headers, Header{"X-Old", hdr})
		recs = append(recs, appendT(t, old, r))
	}
	mustOK(t, old.Ack(recs[0].ID))
	mustOK(t, old.Complete(recs[1].ID, StateDelivered, &Delivery{At: time.Now(), Status: 200}, ""))
	mustOK(t, old.Close())

	s := openT(t, dir, nil)
	for _, r := range recs {
		g, err := s.Get(r.ID)
		if err != nil {
			t.Fatal(err)
		}
		sameRecord(t, g, r)
	}
	if st := stateOf(t, s, recs[1].ID); st != StateDelivered {
		t.Fatalf("delivered before the upgrade, %v after", st)
	}
	l, err := s.Lease("q", 100, time.Minute)
	if err != nil || len(l) != 48 {
		t.Fatalf("leased %d, %v; want the 48 ready", len(l), err)
	}
	for _, r := range append(l, recs[0]) { // and the acked one
		mustOK(t, s.Complete(r.ID, StateDelivered, &Delivery{At: time.Now(), Status: 200}, ""))
	}
	mustOK(t, s.Close())

	s = openT(t, dir, func(o *Options) { o.KeepDone = time.Nanosecond })
	for _, r := range recs {
		g, err := s.Get(r.ID)
		if err != nil {
			t.Fatal(err)
		}
		if g.State != StateDelivered || !bytes.Equal(g.Body, r.Body) {
			t.Fatalf("%s after the second open: %v, %d bytes", r.ID, g.State, len(g.Body))
		}
	}
	if err := s.GC(); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Get(recs[0].ID); !errors.Is(err, ErrNotFound) {
		t.Fatalf("past keep_done a record from before the upgrade is still there: %v", err)
	}
}
