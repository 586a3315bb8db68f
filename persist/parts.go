package persist

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"sync"

	"github.com/dgraph-io/badger/v4"
)

// Bodies in parts, streamed.
//
// A large body never needs to be whole in memory: a BodyWriter takes it as it arrives and,
// past one flush, writes it to a file of its own (bodyfile.go), named by a staging name
// ("+" + random hex: validID refuses "+", so no id is one), because
// the record's id is only assigned when the committer stages its metadata. AppendBody syncs
// the file, then commits the metadata naming it (meta's appended "parts" field), so the
// record is durable, and Append answers, only once its body and metadata are both synced.
// Readers stream the file back with Body; Lease and LeaseHead leave bodies over
// Options.LeaseBodyMax out. A store of format 2 may still hold bodies in Badger segments
// under a staging name starting with partsMark; they are read as before.
//
// A crash before the metadata commits leaves a file no record names: Open removes it.

const (
	// stageFlush is how many body bytes a BodyWriter buffers before writing them to its
	// file; a body that never fills it is stored inline (as two segments at most).
	stageFlush = 2 * segSize
	// stageStep is a BodyWriter's first buffer; it doubles up to stageFlush as bytes arrive.
	stageStep = 16 << 10
	// partsMark starts the staging name of a body in Badger segments (format 2).
	partsMark = '!'
)

// BodyWriter stages one body in parts (see above). Write it, then hand it to AppendBody, or
// Abort it. Not safe for concurrent use.
type BodyWriter struct {
	s       *Store
	ref     string
	buf     []byte   // not yet written; a body that never fills it is stored inline by AppendBody
	f       *os.File // the body's file, from its first flush until it is synced
	created bool     // the file exists (from the first flush on, written to or not)
	written int64    // bytes written to the file
	n       int64    // bytes taken
	err     error    // sticks
	end     bool     // appended or aborted
}

// NewBody starts staging a body. It fails with ErrClosed, or ErrDiskFull below MinFree.
func (s *Store) NewBody() (*BodyWriter, error) {
	if s.down.Load() {
		return nil, ErrClosed
	}
	if s.minFree >= 0 {
		if free, ok := diskFree(s.opts.Dir); ok && free < s.minFree {
			return nil, fmt.Errorf("stage body: %w: %d bytes free, keeping %d", ErrDiskFull, free, s.minFree)
		}
	}
	var r [12]byte
	rand.Read(r[:])
	return &BodyWriter{s: s, ref: string(fileMark) + hex.EncodeToString(r[:])}, nil
}

// Len is how many bytes were written so far.
func (w *BodyWriter) Len() int64 { return w.n }

// Write takes body bytes, writing every full stageFlush of them to the body's file (not
// synced: AppendBody syncs it once) before it returns.
func (w *BodyWriter) Write(p []byte) (int, error) {
	if w.err != nil {
		return 0, w.err
	}
	if w.end {
		return 0, errors.New("stage body: written after its end")
	}
	taken := 0
	for len(p) > 0 {
		if len(w.buf) == cap(w.buf) && cap(w.buf) < stageFlush {
			// Grown with what arrived, never ahead of it: a sender that declares a large
			// body and trickles it holds little memory.
			next := make([]byte, len(w.buf), min(stageFlush, max(stageStep, 2*cap(w.buf), len(w.buf)+len(p))))
			copy(next, w.buf)
			w.buf = next
		}
		k := copy(w.buf[len(w.buf):cap(w.buf)], p)
		w.buf = w.buf[:len(w.buf)+k]
		p = p[k:]
		taken += k
		w.n += int64(k)
		if len(w.buf) == stageFlush { // whole segments only: all but a body's last are full
			if err := w.flush(); err != nil {
				return taken, err
			}
		}
	}
	return taken, nil
}

// flush writes the buffered bytes to the body's file, creating it on the first flush.
func (w *BodyWriter) flush() error {
	if len(w.buf) == 0 {
		return nil
	}
	s := w.s
	if s.down.Load() {
		w.err = ErrClosed
		return w.err
	}
	if s.minFree >= 0 {
		if free, ok := diskFree(s.opts.Dir); ok && free-int64(len(w.buf)) < s.minFree {
			w.err = fmt.Errorf("stage body: %w: %d bytes free, keeping %d", ErrDiskFull, free, s.minFree)
			return w.err
		}
	}
	if w.f == nil {
		f, err := os.OpenFile(s.bodyPath(w.ref), os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
		if err != nil {
			w.err = fmt.Errorf("stage body: %w", err)
			return w.err
		}
		w.f, w.created = f, true
	}
	if _, err := w.f.Write(w.buf); err != nil {
		w.err = fmt.Errorf("stage body: %w", fileErr(err))
		return w.err
	}
	startWriteback(w.f, w.written, int64(len(w.buf)))
	w.written += int64(len(w.buf))
	w.buf = w.buf[:0]
	return nil
}

// finish writes what is buffered and syncs the body's file and its directory entry: after
// it, the body outlives a crash, waiting for the metadata that names it.
func (w *BodyWriter) finish() error {
	if w.err != nil {
		return w.err
	}
	if err := w.flush(); err != nil {
		return err
	}
	if w.f == nil {
		return nil
	}
	err := w.f.Sync()
	if cerr := w.f.Close(); err == nil {
		err = cerr
	}
	w.f = nil
	if err == nil {
		err = syncDir(w.s.bodies)
	}
	if err != nil {
		w.err = fmt.Errorf("stage body: sync: %w", fileErr(err))
	}
	return w.err
}

// Abort drops the body: its file is removed (best effort; Open removes what is left).
// Idempotent; nothing after AppendBody.
func (w *BodyWriter) Abort() {
	if w.end {
		return
	}
	w.end = true
	w.buf = nil
	if w.f != nil {
		w.f.Close()
		w.f = nil
	}
	if w.created {
		w.s.removeBody(w.ref)
	}
}

// AppendBody stores r with the body w staged (r.Body is ignored), as Append does: it returns
// once the record is durable. The writer ends here, appended or not: on error its parts are
// dropped. A body that never filled one flush is stored inline, as Append stores it.
func (s *Store) AppendBody(ctx context.Context, r *Record, w *BodyWriter) error {
	return s.appendBody(ctx, r, w, nil)
}

// appendBody is AppendBody with copies (AppendBodyCopies: they carry their own writers,
// flushed already, or none when w is small).
func (s *Store) appendBody(ctx context.Context, r *Record, w *BodyWriter, copies []Copy) error {
	if w.end {
		return errors.New("append: body already used")
	}
	if w.err != nil {
		w.Abort()
		return fmt.Errorf("append: %w", w.err)
	}
	if !w.created {
		w.end = true
		r.Body = w.buf
		if r.Body == nil {
			r.Body = []byte{}
		}
		return s.appendCopies(ctx, r, copies)
	}
	if err := w.finish(); err != nil {
		w.Abort()
		return fmt.Errorf("append: %w", err)
	}
	r.Body = nil
	r.parts = w.ref
	r.BodyLen = w.n
	err := s.appendCopies(ctx, r, copies)
	if err != nil {
		w.Abort()
	} else {
		w.end = true
	}
	r.parts = ""
	return err
}

// mayHaveParts says whether a body of bodyLen bytes may have been staged in parts under a
// name of its own: a BodyWriter writes its buffer out once it holds stageFlush bytes, so a
// body of exactly stageFlush is in parts too (TestAppendBodyOfOneFlushSurvivesReopen).
func mayHaveParts(bodyLen int) bool { return bodyLen >= stageFlush }

// partsName is the name r's body segments are stored under: its id, or its staging name.
func partsName(r *Record) string {
	if r.parts != "" {
		return r.parts
	}
	return r.ID
}

// readLeased reads a record for a lease: with its body unless that is over LeaseBodyMax. The
// metadata is read once (it was read twice when the body was wanted: a third of the reads
// of a record leased cold).
func (s *Store) readLeased(txn *badger.Txn, id string) (*Record, error) {
	r, bodyLen, err := readMeta(txn, id)
	if err != nil {
		return nil, err
	}
	if max := s.opts.LeaseBodyMax; max > 0 && int64(bodyLen) > max {
		return r, nil
	}
	if err := s.readBody(txn, r, bodyLen); err != nil {
		return nil, err
	}
	return r, nil
}

// Body returns a reader of the body of record id, byte-exact, which holds at most one
// segment (512 KiB) in memory and no Badger transaction between reads. ErrNotFound when
// there is no such record. A body in segments fails the read when its record is deleted
// meanwhile; a body in a file is read to its end.
func (s *Store) Body(id string) (io.ReadCloser, error) {
	if !validID(id) {
		return nil, fmt.Errorf("body %q: %w", id, ErrNotFound)
	}
	s.life.RLock()
	defer s.life.RUnlock()
	if s.closed {
		return nil, ErrClosed
	}
	var r *Record
	var bodyLen int
	err := s.db.View(func(txn *badger.Txn) error {
		var err error
		r, bodyLen, err = readMeta(txn, id)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("body %s: %w", id, err)
	}
	if isFile(r.parts) {
		f, err := s.openBodyFile(id, r.parts, int64(bodyLen))
		if err != nil {
			return nil, err
		}
		return &fileReader{f: f, id: id, left: int64(bodyLen)}, nil
	}
	return &bodyReader{s: s, id: id, name: partsName(r), left: int64(bodyLen), segs: segments(bodyLen)}, nil
}

// bodyReader streams a body's segments, one View per segment.
type bodyReader struct {
	s    *Store
	id   string
	name string
	mem  []byte // the current segment, reused
	buf  []byte // the rest of it
	seg  int    // next segment to read
	segs int
	left int64 // bytes not yet returned
	mu   sync.Mutex
}

func (b *bodyReader) Read(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if len(b.buf) == 0 {
		if b.left == 0 {
			return 0, io.EOF
		}
		if b.seg >= b.segs {
			return 0, fmt.Errorf("read body %s: %d bytes missing: %w", b.id, b.left, errCorrupt)
		}
		if err := b.next(); err != nil {
			return 0, err
		}
	}
	n := copy(p, b.buf)
	b.buf = b.buf[n:]
	b.left -= int64(n)
	return n, nil
}

// next reads the next segment into buf, reusing its memory.
func (b *bodyReader) next() error {
	s := b.s
	s.life.RLock()
	defer s.life.RUnlock()
	if s.closed {
		return ErrClosed
	}
	err := s.db.View(func(txn *badger.Txn) error {
		item, err := txn.Get(bodyKey(b.name, b.seg))
		if err != nil {
			return err
		}
		b.mem, err = item.ValueCopy(b.mem[:0])
		b.buf = b.mem
		return err
	})
	if errors.Is(err, badger.ErrKeyNotFound) {
		err = ErrNotFound
	}
	if err != nil {
		return fmt.Errorf("read body %s segment %d: %w", b.id, b.seg, err)
	}
	if b.seg%2 == 1 || b.seg+1 == b.segs {
		dropBodyPages(s.mapsDir) // what was read stays in the page cache, not in this process
	}
	if int64(len(b.buf)) > b.left {
		return fmt.Errorf("read body %s: longer than %d bytes: %w", b.id, b.left, errCorrupt)
	}
	b.seg++
	return nil
}

// Close ends the reader. Idempotent.
func (b *bodyReader) Close() error {
	b.mu.Lock()
	b.mem, b.buf, b.left, b.seg = nil, nil, 0, b.segs
	b.mu.Unlock()
	return nil
}

// bodyLenOf is the length of r's body: staged in parts (BodyLen), or in Body.
func bodyLenOf(r *Record) int {
	if r.parts != "" {
		return int(r.BodyLen)
	}
	return len(r.Body)
}
