package persist

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/dgraph-io/badger/v4"
)

// A body staged past one flush is one file, synced before its metadata commits: it reads back
// byte-exact through Body, Get and Lease, across a reopen, and goes when its record is swept.
func TestBodyInFile(t *testing.T) {
	dir := t.TempDir()
	s := openT(t, dir, func(o *Options) { o.KeepDoneMax = 1 })
	body := randomBody(3<<20 + 7)
	r := rec("q", "")
	if err := s.AppendBody(context.Background(), r, stageT(t, s, body)); err != nil {
		t.Fatalf("append body: %v", err)
	}
	if keys, files := countKeys(t, s, bodyPrefix), countFiles(t, s); keys != 0 || files != 1 {
		t.Fatalf("%d body keys, %d files: want the body in one file", keys, files)
	}
	mustOK(t, s.Close())
	s = openT(t, dir, func(o *Options) { o.KeepDoneMax = 1 })
	if got := readAllBody(t, s, r.ID); !bytes.Equal(got, body) {
		t.Fatalf("Body: %d bytes, not the body appended", len(got))
	}
	got, err := s.Get(r.ID)
	if err != nil || !bytes.Equal(got.Body, body) {
		t.Fatalf("Get: %v, body equal %v", err, err == nil && bytes.Equal(got.Body, body))
	}
	leased, err := s.Lease("q", 1, time.Minute)
	if err != nil || len(leased) != 1 || !bytes.Equal(leased[0].Body, body) {
		t.Fatalf("Lease: %v, want the body", err)
	}
	// Two delivered records with KeepDoneMax 1: the sweep deletes the first, and its file.
	mustOK(t, s.Complete(r.ID, StateDelivered, nil, ""))
	mustOK(t, s.Complete(appendT(t, s, rec("q", "small")).ID, StateDelivered, nil, ""))
	if _, err := s.sweep(time.Now()); err != nil {
		t.Fatalf("sweep: %v", err)
	}
	if n := countFiles(t, s); n != 0 {
		t.Fatalf("%d body files after the sweep deleted their record", n)
	}
	if _, err := s.Get(r.ID); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Get after the sweep: %v, want ErrNotFound", err)
	}
}

// A body file that lost bytes (a disk that dropped them) fails its reads with errCorrupt
// instead of handing out a short body; one that is gone reads as not found.
func TestBodyFileDamaged(t *testing.T) {
	s := openT(t, "", nil)
	body := randomBody(2 << 20)
	r := rec("q", "")
	if err := s.AppendBody(context.Background(), r, stageT(t, s, body)); err != nil {
		t.Fatalf("append body: %v", err)
	}
	ents, err := os.ReadDir(s.bodies)
	if err != nil || len(ents) != 1 {
		t.Fatalf("bodies: %v, %d files", err, len(ents))
	}
	path := filepath.Join(s.bodies, ents[0].Name())
	mustOK(t, os.Truncate(path, 1<<20))
	if _, err := s.Body(r.ID); !errors.Is(err, errCorrupt) {
		t.Fatalf("Body of a short file: %v, want errCorrupt", err)
	}
	if _, err := s.Get(r.ID); !errors.Is(err, errCorrupt) {
		t.Fatalf("Get of a short file: %v, want errCorrupt", err)
	}
	mustOK(t, os.Remove(path))
	if _, err := s.Body(r.ID); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Body of a missing file: %v, want ErrNotFound", err)
	}
}

// Open removes the body files no record names (an append that never committed, a deletion
// whose file removal a crash cut off) and keeps the ones records name.
func TestOrphanBodyFilesRemoved(t *testing.T) {
	dir := t.TempDir()
	s := openT(t, dir, nil)
	body := randomBody(2 << 20)
	r := rec("q", "")
	if err := s.AppendBody(context.Background(), r, stageT(t, s, body)); err != nil {
		t.Fatalf("append body: %v", err)
	}
	stageT(t, s, randomBody(1<<20+1)) // never appended
	stray := filepath.Join(s.bodies, "0123456789abcdef01234567")
	mustOK(t, os.WriteFile(stray, []byte("left by a crash"), 0o600))
	// Not ours: an operator's note and a directory are left alone (and do not fail Open).
	mustOK(t, os.WriteFile(filepath.Join(s.bodies, "README"), []byte("hands off"), 0o600))
	mustOK(t, os.Mkdir(filepath.Join(s.bodies, "0123456789abcdef0123abcd"), 0o700))
	mustOK(t, os.WriteFile(filepath.Join(s.bodies, "0123456789abcdef0123abcd", "x"), nil, 0o600))
	if n := countFiles(t, s); n != 5 {
		t.Fatalf("%d files before the reopen, want 5", n)
	}
	mustOK(t, s.Close())
	s = openT(t, dir, nil)
	if n := countFiles(t, s); n != 3 {
		t.Fatalf("%d files after the reopen, want the appended body's and the two not ours", n)
	}
	if got := readAllBody(t, s, r.ID); !bytes.Equal(got, body) {
		t.Fatal("the appended body changed")
	}
}

// A store of format 2 opens as format 3, and the bodies it staged in Badger segments under a
// "!" name still read back and are deleted with their records.
func TestFormat2SegmentParts(t *testing.T) {
	dir := t.TempDir()
	s := openT(t, dir, nil)
	body := randomBody(stageFlush + segSize + 99)
	const ref = "!0123456789abcdef01234567"
	mustOK(t, s.db.Update(func(txn *badger.Txn) error {
		for i := range segments(len(body)) {
			if err := txn.Set(bodyKey(ref, i), body[i*segSize:min((i+1)*segSize, len(body))]); err != nil {
				return err
			}
		}
		return txn.Set(formatKey, []byte("2"))
	}))
	r := rec("q", "")
	r.Body, r.parts, r.BodyLen = nil, ref, int64(len(body))
	mustOK(t, s.appendCopies(context.Background(), r, nil))
	mustOK(t, s.Close())

	s = openT(t, dir, nil)
	var format []byte
	mustOK(t, s.db.View(func(txn *badger.Txn) error {
		item, err := txn.Get(formatKey)
		if err == nil {
			format, err = item.ValueCopy(nil)
		}
		return err
	}))
	if string(format) != formatVersion {
		t.Fatalf("format %q after opening a format-2 store, want %q", format, formatVersion)
	}
	if got := readAllBody(t, s, r.ID); !bytes.Equal(got, body) {
		t.Fatal("Body of a format-2 body in segments: not the body stored")
	}
	if got, err := s.Get(r.ID); err != nil || !bytes.Equal(got.Body, body) {
		t.Fatalf("Get of a format-2 body in segments: %v", err)
	}
	mustOK(t, s.Complete(r.ID, StateDelivered, nil, ""))
	mustOK(t, s.Delete(r.ID))
	if n := countKeys(t, s, bodyPrefix); n != 0 {
		t.Fatalf("%d body keys left after delete", n)
	}
}
