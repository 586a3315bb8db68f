package persist

import (
	"errors"
	"fmt"
	"slices"

	"github.com/dgraph-io/badger/v4"
)

// record notes a staged change of a record for apply: its new summary and metadata (for
// the recent cache, with the body when new), or its removal. meta is st.rec, made canonical
// and shared with the cache from here (staged.shared).
// st, when set, is the record's staged state: its first change carries what it was when cold.
func (b *batch) record(id string, st *staged, meta *Record, bodyLen int, body []byte) {
	c := change{id: id, txn: b.ntxn, del: meta == nil}
	if st != nil {
		c.cold, st.cold = st.cold, nil
	}
	if meta != nil {
		c.sum = summaryOf(meta) // before canonicalize: as the index always had it
		canonicalize(meta)
		c.meta, c.bodyLen, c.body = meta, bodyLen, body
		st.shared = true
	}
	b.changes = append(b.changes, c)
}

// get returns a record's metadata as the batch has it, marking its index entry busy so Lease
// leaves it alone until the batch is applied. A cold record (cold.go) is read from disk and
// counted in coldBusy instead.
func (b *batch) get(id string) (*staged, error) { return b.getFor(id, false) }

// getFor is get; forRemove says the caller only deletes the record (remove), which needs no
// more of a finished record than the index holds (doneRec), unless its body may be staged
// in parts under a name of its own (mayHaveParts). A sweep deletes thousands of finished
// records at a time in the committer, and each was a metadata read from disk.
func (b *batch) getFor(id string, forRemove bool) (*staged, error) {
	if st, ok := b.ov[id]; ok {
		b.dependOn(st)
		if st.gone {
			return nil, ErrNotFound
		}
		return st, nil
	}
	if !validID(id) {
		return nil, ErrNotFound
	}
	s := b.s
	s.mu.Lock()
	e := s.idx.byID[id]
	dr, done := s.idx.done[id]
	leased, cold := false, false
	var cached *recentRec
	switch {
	case e != nil:
		e.busy++
		leased = e.leased
		b.touched = append(b.touched, e)
		cached = s.recent.getLocked(id)
	case done || s.idx.cold > 0 || s.idx.acked > 0:
		// Finished, or perhaps on disk only; the recent cache has it when it was just
		// changed.
		cold = true
		s.idx.coldBusy[id]++
		b.coldTouched = append(b.coldTouched, id)
		cached = s.recent.getLocked(id)
	}
	s.mu.Unlock()
	if e == nil && !cold {
		return nil, ErrNotFound
	}
	var st *staged
	switch {
	case cached != nil: // modify copies it before a change
		st = &staged{rec: cached.meta, shared: true, bodyLen: cached.bodyLen, leased: leased, txn: -1}
	case e == nil && done && forRemove && !mayHaveParts(int(dr.bodyLen)):
		st = &staged{rec: dr.record(id), bodyLen: int(dr.bodyLen), txn: -1}
	default:
		rec, bodyLen, err := readMeta(b.rtxn, id)
		if err != nil {
			return nil, err
		}
		st = &staged{rec: rec, bodyLen: bodyLen, leased: leased, txn: -1}
	}
	if cold && (done || st.rec.State == StateReady || st.rec.State == StateAcked) {
		sum := summaryOf(st.rec)
		st.cold = &sum
	}
	b.ov[id] = st
	return st, nil
}

// dependOn makes the current request's answer depend on the batch's earlier write of st: if
// that write's transaction fails to commit, so does this request, whatever it saw staged
// (an Append answered ErrExists by a copy that never committed would be acked wrongly).
func (b *batch) dependOn(st *staged) {
	if st.txn > b.cur.last {
		b.cur.last = st.txn
	}
}

// errNoop tells modify that the record is already as asked: nothing to write.
var errNoop = errors.New("no change")

// modify stages a change of one record: fn checks and edits its metadata.
func (b *batch) modify(id string, fn func(st *staged) error) error {
	st, err := b.get(id)
	if err != nil {
		return fmt.Errorf("record %s: %w", id, err)
	}
	if st.shared {
		cp := *st.rec
		st.rec, st.shared = &cp, false
	}
	was := st.rec.State
	if err := fn(st); err != nil {
		if errors.Is(err, errNoop) {
			return nil
		}
		return fmt.Errorf("record %s: %w", id, err)
	}
	// The new state key goes first, the old one is deleted last: see windowMax.
	r := st.rec
	if k := stateKey(r.State, r.Queue, id); k != nil && (r.State != was || r.State == StateReady) {
		if err := b.set(k, encodeReady(r.NextAttempt, r.ReceivedAt)); err != nil {
			return fmt.Errorf("record %s: %w", id, err)
		}
	}
	if err := b.set(metaKey(id), encodeMeta(r, st.bodyLen)); err != nil {
		return fmt.Errorf("record %s: %w", id, err)
	}
	if k := stateKey(was, r.Queue, id); k != nil && r.State != was {
		if err := b.del(k); err != nil {
			return fmt.Errorf("record %s: %w", id, err)
		}
	}
	st.txn = b.cur.last
	b.record(id, st, r, st.bodyLen, nil)
	return nil
}

// remove stages the deletion of a record and its body; fn may refuse it.
func (b *batch) remove(id string, fn func(st *staged) error) error {
	st, err := b.getFor(id, true)
	if err != nil {
		return fmt.Errorf("record %s: %w", id, err)
	}
	if fn != nil {
		if err := fn(st); err != nil {
			if errors.Is(err, errNoop) {
				return nil
			}
			return fmt.Errorf("record %s: %w", id, err)
		}
	}
	file := isFile(st.rec.parts)
	for i := range segments(st.bodyLen) {
		if file {
			break
		}
		if err := b.del(bodyKey(partsName(st.rec), i)); err != nil {
			return fmt.Errorf("record %s: %w", id, err)
		}
	}
	if err := b.del(metaKey(id)); err != nil {
		return fmt.Errorf("record %s: %w", id, err)
	}
	if file { // removed once the deletion of its metadata committed (removeFiles)
		b.files = append(b.files, fileDrop{ref: st.rec.parts, txn: b.cur.last})
	}
	if k := stateKey(st.rec.State, st.rec.Queue, id); k != nil {
		if err := b.del(k); err != nil {
			return fmt.Errorf("record %s: %w", id, err)
		}
	}
	st.gone = true
	st.txn = b.cur.last
	b.record(id, st, nil, 0, nil)
	return nil
}

// insert stages a new record: body segments first, metadata last, so a crash between
// transactions leaves at most an orphan body (removed at Open), never metadata without body.
// cached is a copy of the body for the recent cache (nil when too big to keep). A record
// without an id gets one here, so that ids follow the order of staging, which is commit
// order (metadata does not hold the id: meta is already right).
//
// copies (AppendCopies) are staged with it, all or none: each holds its id's suffix in ID
// until here, and its own metadata in metas. With copies, r without a queue is not stored
// itself: it only gives them its id.
func (b *batch) insert(r *Record, meta, cached []byte, copies []*Record, metas [][]byte) error {
	given := r.ID != ""
	if !given {
		r.ID = b.s.ids.Next(b.now)
	}
	for _, c := range copies {
		c.ID = r.ID + c.ID
	}
	var free int64
	if r.Queue != "" {
		if err := b.checkInsert(r, given, &free); err != nil {
			return err
		}
	}
	for _, c := range copies {
		if err := b.checkInsert(c, given, &free); err != nil {
			return fmt.Errorf("copy %s: %w", c.ID, err)
		}
	}
	if r.Queue != "" {
		if err := b.writeInsert(r, meta, cached); err != nil {
			return err
		}
	}
	for i, c := range copies {
		if err := b.writeInsert(c, metas[i], cached); err != nil {
			return err
		}
	}
	return nil
}

// checkInsert refuses r when its id is taken, its queue over quota or the disk too full
// (free counts the bytes of the records checked before it in the same insert).
func (b *batch) checkInsert(r *Record, given bool, free *int64) error {
	s := b.s
	st, inBatch := b.ov[r.ID]
	if inBatch {
		b.dependOn(st)
	}
	s.mu.Lock()
	_, indexed := s.idx.byID[r.ID]
	if _, done := s.idx.done[r.ID]; done {
		indexed = true
	}
	anyCold := s.idx.cold > 0 || s.idx.acked > 0
	var held int64
	if q := s.idx.queues[r.Queue]; q != nil {
		held = q.bytes
	}
	s.mu.Unlock()
	if given && anyCold && !indexed && !inBatch {
		// It may be stored cold; one we made up is new.
		switch _, err := b.rtxn.Get(metaKey(r.ID)); {
		case err == nil:
			indexed = true
		case !errors.Is(err, badger.ErrKeyNotFound):
			return fmt.Errorf("look up %s: %w", r.ID, err)
		}
	}
	if (inBatch && !st.gone) || (indexed && !inBatch) {
		return ErrExists
	}
	held += b.qbytes[r.Queue]
	if s.opts.Quota != nil {
		if limit := s.opts.Quota(r.Queue); limit > 0 && held+r.Size > limit {
			return fmt.Errorf("%w: queue %s holds %d of %d bytes", ErrQuota, r.Queue, held, limit)
		}
	}
	*free += int64(len(r.Body))
	if b.freeOK && b.free-*free < s.minFree {
		return fmt.Errorf("%w: %d bytes free, keeping %d", ErrDiskFull, b.free, s.minFree)
	}
	return nil
}

// writeInsert stages the keys of r, checked by checkInsert.
func (b *batch) writeInsert(r *Record, meta, cached []byte) error {
	for i := range segments(len(r.Body)) {
		seg := r.Body[i*segSize : min((i+1)*segSize, len(r.Body))]
		if err := b.set(bodyKey(r.ID, i), seg); err != nil {
			return err
		}
	}
	if err := b.set(readyKey(r.Queue, r.ID), encodeReady(r.NextAttempt, r.ReceivedAt)); err != nil {
		return err
	}
	if err := b.set(metaKey(r.ID), meta); err != nil {
		return err
	}
	b.free -= int64(len(r.Body) + len(meta))
	b.qbytes[r.Queue] += r.Size
	rec := *r
	rec.Body = nil
	if len(r.Headers) > 0 {
		// The store's own from here: the caller may change r's; the cache shares these.
		rec.Headers = slices.Clone(r.Headers)
	}
	st := &staged{rec: &rec, bodyLen: bodyLenOf(r), txn: b.cur.last}
	b.ov[r.ID] = st
	b.record(r.ID, st, &rec, bodyLenOf(r), cached)
	return nil
}

func summaryOf(r *Record) summary {
	return summary{
		state: r.State, next: r.NextAttempt, received: r.ReceivedAt, finished: r.FinishedAt,
		size: r.Size, reported: r.Reported, queue: r.Queue,
	}
}

// readMeta reads and decodes a record's metadata.
func readMeta(txn *badger.Txn, id string) (*Record, int, error) {
	item, err := txn.Get(metaKey(id))
	if errors.Is(err, badger.ErrKeyNotFound) {
		return nil, 0, ErrNotFound
	}
	if err != nil {
		return nil, 0, fmt.Errorf("read record %s: %w", id, err)
	}
	var rec *Record
	var bodyLen int
	err = item.Value(func(v []byte) error {
		rec, bodyLen, err = decodeMeta(id, v)
		return err
	})
	return rec, bodyLen, err
}
