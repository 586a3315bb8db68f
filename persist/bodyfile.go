package persist

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"
)

// Bodies in files.
//
// A body a BodyWriter staged past one flush (stageFlush, 1 MiB) is a file of its own in the
// store's bodies directory, named by its staging name: written as it arrives, synced once
// (file, then directory) before the metadata naming it commits. Through Badger each flush
// was a synced transaction of its own, written once more by value-log GC; a 10 MiB body took
// 3.3 times as long to store as the same bytes appended to a file and synced once
// (BenchmarkLargeBody). Stores of format 2 kept these bodies as segments under a staging name
// with partsMark; those are still read and deleted as before.

const (
	// fileMark starts the staging name of a body in a file (format 3); no id has it.
	fileMark = '+'
	// bodiesDir is the directory of body files, inside the store's directory (Badger reads
	// only its own files there).
	bodiesDir = "bodies"
)

// isFile says whether the staging name ref is a body file's.
func isFile(ref string) bool { return ref != "" && ref[0] == fileMark }

// bodyPath is the file of the body staged as ref.
func (s *Store) bodyPath(ref string) string { return filepath.Join(s.bodies, ref[1:]) }

// openBodies makes the bodies directory, durably when it is new.
func (s *Store) openBodies() error {
	s.bodies = filepath.Join(s.opts.Dir, bodiesDir)
	err := os.Mkdir(s.bodies, 0o700)
	if errors.Is(err, fs.ErrExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("bodies directory: %w", err)
	}
	return syncDir(s.opts.Dir)
}

// fileErr maps a body file's write error: no space is ErrDiskFull.
func fileErr(err error) error {
	if errors.Is(err, syscall.ENOSPC) || errors.Is(err, syscall.EDQUOT) {
		return fmt.Errorf("%w: %w", ErrDiskFull, err)
	}
	return err
}

// removeBody deletes a body file; one already gone is no error.
func (s *Store) removeBody(ref string) {
	if err := os.Remove(s.bodyPath(ref)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		s.log.Warn("persist: body file not removed (Open will)", "file", s.bodyPath(ref), "err", err)
	}
}

// openBodyFile opens the file of a body of bodyLen bytes for reading, checking its length.
func (s *Store) openBodyFile(id, ref string, bodyLen int64) (*os.File, error) {
	f, err := os.Open(s.bodyPath(ref))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("read body %s: file %s: %w", id, ref[1:], ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("read body %s: %w", id, err)
	}
	fi, err := f.Stat()
	if err == nil && fi.Size() != bodyLen {
		err = fmt.Errorf("read body %s: file of %d bytes, want %d: %w", id, fi.Size(), bodyLen, errCorrupt)
	}
	if err != nil {
		f.Close()
		return nil, err
	}
	return f, nil
}

// readBodyFile reads a whole body file.
func (s *Store) readBodyFile(id, ref string, bodyLen int) ([]byte, error) {
	f, err := s.openBodyFile(id, ref, int64(bodyLen))
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b := make([]byte, bodyLen)
	if _, err := io.ReadFull(f, b); err != nil {
		return nil, fmt.Errorf("read body %s: %w", id, err)
	}
	return b, nil
}

// fileReader streams a body file (Body).
type fileReader struct {
	f    *os.File
	id   string
	left int64
}

func (r *fileReader) Read(p []byte) (int, error) {
	if r.left == 0 {
		return 0, io.EOF
	}
	p = p[:min(int64(len(p)), r.left)]
	n, err := r.f.Read(p)
	r.left -= int64(n)
	if errors.Is(err, io.EOF) && r.left > 0 {
		err = fmt.Errorf("read body %s: %d bytes missing: %w", r.id, r.left, errCorrupt)
	}
	return n, err
}

func (r *fileReader) Close() error { return r.f.Close() }

// removeOrphanFiles deletes the body files no record names (named: staging names that
// records name): their appends never committed, or their records' deletions committed and
// the process died before it removed them.
func (s *Store) removeOrphanFiles(named map[string]bool) error {
	ents, err := os.ReadDir(s.bodies)
	if err != nil {
		return fmt.Errorf("bodies directory: %w", err)
	}
	removed := 0
	for _, e := range ents {
		if named[string(fileMark)+e.Name()] || !isBodyName(e.Name()) || e.IsDir() {
			continue // named, or not a body file of ours: left alone
		}
		if err := os.Remove(filepath.Join(s.bodies, e.Name())); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("remove unfinished body: %w", err)
		}
		removed++
	}
	if removed > 0 {
		s.log.Info("persist: removed unfinished body files", "files", removed)
	}
	return nil
}

// isBodyName says whether name is what NewBody names a body file: 24 lowercase hex digits.
func isBodyName(name string) bool {
	if len(name) != 24 {
		return false
	}
	for i := 0; i < len(name); i++ {
		if c := name[i]; (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	return true
}

// fileDrop is a body file to remove once the transaction numbered txn committed.
type fileDrop struct {
	ref string
	txn int
}

// removeFiles removes the body files of the records whose deletion committed. A crash
// before leaves them to Open (removeOrphanFiles).
func (b *batch) removeFiles() {
	for _, f := range b.files {
		if b.failed < 0 || f.txn < b.failed {
			b.s.removeBody(f.ref)
		}
	}
}
