package persist

import (
	"bytes"
	"context"
	"errors"
	"io"
	"math/rand/v2"
	"os"
	"testing"
	"time"

	"github.com/dgraph-io/badger/v4"
)

// randomBody is n bytes that no segment boundary could hide a mistake in.
func randomBody(n int) []byte {
	b := make([]byte, n)
	r := rand.NewChaCha8([32]byte{byte(n)})
	r.Read(b)
	return b
}

// stageT writes body into a new BodyWriter in odd-sized pieces.
func stageT(t *testing.T, s *Store, body []byte) *BodyWriter {
	t.Helper()
	w, err := s.NewBody()
	if err != nil {
		t.Fatalf("new body: %v", err)
	}
	for p := body; len(p) > 0; {
		n := min(len(p), 100_003)
		if _, err := w.Write(p[:n]); err != nil {
			t.Fatalf("write body: %v", err)
		}
		p = p[n:]
	}
	return w
}

func readAllBody(t *testing.T, s *Store, id string) []byte {
	t.Helper()
	rc, err := s.Body(id)
	if err != nil {
		t.Fatalf("body %s: %v", id, err)
	}
	defer rc.Close()
	b, err := io.ReadAll(rc)
	if err != nil {
		t.Fatalf("read body %s: %v", id, err)
	}
	return b
}

// A body staged in parts reads back byte-exact through Body, Get and (left out) Lease, across
// a reopen; deleting the record deletes its parts.
func TestAppendBodyStreamed(t *testing.T) {
	dir := t.TempDir()
	s := openT(t, dir, func(o *Options) { o.LeaseBodyMax = 1 << 20 })
	body := randomBody(5<<20 + 12345)
	r := rec("q", "")
	if err := s.AppendBody(context.Background(), r, stageT(t, s, body)); err != nil {
		t.Fatalf("append body: %v", err)
	}
	if r.BodyLen != int64(len(body)) || r.Size < int64(len(body)) {
		t.Fatalf("BodyLen %d Size %d, want %d", r.BodyLen, r.Size, len(body))
	}
	leased, err := s.Lease("q", 10, time.Minute)
	if err != nil || len(leased) != 1 {
		t.Fatalf("lease: %v %v", leased, err)
	}
	if leased[0].Body != nil || leased[0].BodyLen != int64(len(body)) {
		t.Fatalf("leased body %d bytes, BodyLen %d: want it left out", len(leased[0].Body), leased[0].BodyLen)
	}
	if got := readAllBody(t, s, r.ID); !bytes.Equal(got, body) {
		t.Fatalf("Body: %d bytes, not the body appended", len(got))
	}
	s.Close()

	s = openT(t, dir, nil)
	g, err := s.Get(r.ID)
	if err != nil || !bytes.Equal(g.Body, body) {
		t.Fatalf("Get after reopen: %v, body equal %v", err, g != nil && bytes.Equal(g.Body, body))
	}
	if got := readAllBody(t, s, r.ID); !bytes.Equal(got, body) {
		t.Fatal("Body after reopen: not the body appended")
	}
	if err := s.Delete(r.ID); err != nil {
		t.Fatalf("delete: %v", err)
	}
	if n := countKeys(t, s, bodyPrefix); n != 0 {
		t.Fatalf("%d body keys left after delete", n)
	}
}

// A small body written through a BodyWriter is stored inline, like Append's; Body streams
// inline bodies of old stores too.
func TestAppendBodySmallInline(t *testing.T) {
	s := openT(t, "", func(o *Options) { o.LeaseBodyMax = 1 << 20 })
	body := randomBody(700 << 10)
	r := rec("q", "")
	if err := s.AppendBody(context.Background(), r, stageT(t, s, body)); err != nil {
		t.Fatalf("append body: %v", err)
	}
	leased, err := s.Lease("q", 1, time.Minute)
	if err != nil || len(leased) != 1 || !bytes.Equal(leased[0].Body, body) {
		t.Fatalf("lease: %v, want the body inline", err)
	}
	if got := readAllBody(t, s, r.ID); !bytes.Equal(got, body) {
		t.Fatal("Body of an inline body: not the body appended")
	}
	if _, err := s.Body("nope"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Body of an unknown id: %v, want ErrNotFound", err)
	}
}

// Parts staged but never appended (a crash before the metadata committed, or an abort) are
// removed; a duplicate id's staged parts are dropped and the stored body is untouched.
func TestStagedPartsRemoved(t *testing.T) {
	dir := t.TempDir()
	s := openT(t, dir, nil)
	body := randomBody(3 << 20)
	w := stageT(t, s, body)
	if n := countFiles(t, s); n != 1 {
		t.Fatalf("%d body files while staging, want 1", n)
	}
	w.Abort()
	if n := countKeys(t, s, bodyPrefix) + countFiles(t, s); n != 0 {
		t.Fatalf("%d body keys and files after abort", n)
	}
	r := rec("q", "")
	r.ID = "dup"
	if err := s.AppendBody(context.Background(), r, stageT(t, s, body)); err != nil {
		t.Fatalf("append: %v", err)
	}
	r2 := rec("q", "")
	r2.ID = "dup"
	other := randomBody(2<<20 + 1)
	if err := s.AppendBody(context.Background(), r2, stageT(t, s, other)); !errors.Is(err, ErrExists) {
		t.Fatalf("second append of dup: %v, want ErrExists", err)
	}
	if keys, files := countKeys(t, s, bodyPrefix), countFiles(t, s); keys != 0 || files != 1 {
		t.Fatalf("%d body keys and %d files, want the first body's file alone", keys, files)
	}
	stageT(t, s, other) // never appended: the process "dies" here
	s.Close()
	s = openT(t, dir, nil)
	if keys, files := countKeys(t, s, bodyPrefix), countFiles(t, s); keys != 0 || files != 1 {
		t.Fatalf("%d body keys and %d files after reopen, want the first body's file alone", keys, files)
	}
	if got := readAllBody(t, s, "dup"); !bytes.Equal(got, body) {
		t.Fatal("dup's body changed")
	}
}

// countFiles counts the body files of s.
func countFiles(t *testing.T, s *Store) int {
	t.Helper()
	ents, err := os.ReadDir(s.bodies)
	if err != nil {
		t.Fatal(err)
	}
	return len(ents)
}

func countKeys(t *testing.T, s *Store, prefix []byte) int {
	t.Helper()
	n := 0
	err := s.db.View(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{Prefix: prefix})
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			n++
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// A body of exactly one flush is staged in parts (the writer flushes a full buffer at
// once), so Open must count its record as naming them: it took only bodies over stageFlush
// for that and deleted the body of one of exactly stageFlush bytes as an orphan.
func TestAppendBodyOfOneFlushSurvivesReopen(t *testing.T) {
	dir := t.TempDir()
	s := openT(t, dir, nil)
	body := randomBody(stageFlush)
	r := rec("q", "")
	if err := s.AppendBody(context.Background(), r, stageT(t, s, body)); err != nil {
		t.Fatalf("append body: %v", err)
	}
	mustOK(t, s.Close())
	s = openT(t, dir, nil)
	if got := readAllBody(t, s, r.ID); !bytes.Equal(got, body) {
		t.Fatalf("Body after reopen: %d bytes, not the body appended", len(got))
	}
	mustOK(t, s.Complete(r.ID, StateDelivered, nil, ""))
	mustOK(t, s.Delete(r.ID))
	if n := countKeys(t, s, bodyPrefix) + countFiles(t, s); n != 0 {
		t.Fatalf("%d body keys and files left after delete", n)
	}
}
