package persist

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"sync/atomic"
	"time"

	"github.com/dgraph-io/badger/v4"
)

const (
	maxBatchRequests = 4096
	maxBatchBytes    = 64 << 20 // body bytes held by one batch
)

// request is one write waiting for the committer. stage checks it against the index and the
// batch and writes its keys; it returns a count for the callers that want one.
type request struct {
	stage func(b *batch) (int, error)
	after func() error // run by the committer once the batch is committed (GC's flush)
	bytes int          // body bytes, for batch sizing

	claim atomic.Int32 // 0 queued, 1 taken by the committer, 2 given up by the caller
	done  chan struct{}

	// Set by the committer before done is closed.
	n    int
	err  error
	last int // number of the transaction holding its last write; -1 when it wrote nothing
}

// change is one record's new index summary (or its removal), kept until its transaction commits.
type change struct {
	id  string
	sum summary
	del bool
	txn int
}

// staged is a record's metadata as this batch has left it so far.
type staged struct {
	rec     *Record // no body
	bodyLen int
	leased  bool // when the batch first read it
	gone    bool // deleted in this batch
}

// batch is one group commit: the requests the committer took at once.
type batch struct {
	s       *Store
	now     time.Time
	rtxn    *badger.Txn // snapshot the batch reads current metadata from
	txn     *badger.Txn // the write transaction being filled; nil until the first write
	ntxn    int         // transactions committed so far: the open one has this number
	failed  int         // number of the transaction that failed to commit; -1 while none
	err     error       // why it failed
	took    time.Duration
	cur     *request
	changes []change
	ov      map[string]*staged
	touched []*entry         // index entries marked busy by this batch
	qbytes  map[string]int64 // bytes appended per queue
	free    int64            // filesystem free space at the start, minus what was appended
	freeOK  bool
}

// submit hands r to the committer and waits for its answer. A caller whose ctx ends before the
// committer took r gets ctx.Err() and r is dropped; once taken, r is finished and answered.
func (s *Store) submit(ctx context.Context, r *request) (int, error) {
	r.done = make(chan struct{})
	r.last = -1
	s.life.RLock()
	if s.closed {
		s.life.RUnlock()
		return 0, ErrClosed
	}
	select {
	case s.reqs <- r:
	case <-ctx.Done():
		s.life.RUnlock()
		return 0, ctx.Err()
	}
	s.life.RUnlock()
	select {
	case <-r.done:
	case <-ctx.Done():
		if r.claim.CompareAndSwap(0, 2) {
			return 0, ctx.Err()
		}
		<-r.done
	}
	return r.n, r.err
}

// commitLoop is the committer. On stop it finishes every request already queued; submit's
// read lock on life guarantees none arrives after that.
func (s *Store) commitLoop() {
	for {
		select {
		case r := <-s.reqs:
			s.runBatch(s.collect(r))
		case <-s.stop:
			for {
				select {
				case r := <-s.reqs:
					s.runBatch(s.collect(r))
				default:
					return
				}
			}
		}
	}
}

// collect takes r and whatever else is waiting, within the batch limits.
//
// Without more, a fixed set of busy producers splits into two halves that take turns: while
// one half's batch is being synced the other queues, and the first half comes back only after
// the committer took the second. So collect expects as many requests as the last batch had
// plus those that queued while it was committed (expect), and waits for the missing ones, but
// at most as long as the last commit took (and 500µs), since it cannot know they will come.
// It yields instead of sleeping: Go timers are ~1 ms coarse on an idle process. One producer,
// or sparse traffic, never waits.
func (s *Store) collect(r *request) []*request {
	reqs := []*request{r}
	bytes := r.bytes
	full := func() bool { return len(reqs) >= maxBatchRequests || bytes >= maxBatchBytes }
	take := func() bool {
		select {
		case r := <-s.reqs:
			reqs = append(reqs, r)
			bytes += r.bytes
			return true
		default:
			return false
		}
	}
	for !full() && take() {
	}
	if len(reqs) < s.expect && !s.down.Load() {
		deadline := time.Now().Add(s.linger)
		for idle := 0; len(reqs) < s.expect && !full(); {
			if take() {
				continue
			}
			if idle++; idle%8 == 0 && time.Now().After(deadline) {
				break
			}
			runtime.Gosched()
		}
	}
	return reqs
}

func (s *Store) runBatch(reqs []*request) {
	b := &batch{
		s: s, now: time.Now(), rtxn: s.db.NewTransaction(false), failed: -1,
		ov: map[string]*staged{}, qbytes: map[string]int64{},
	}
	if s.minFree >= 0 {
		b.free, b.freeOK = diskFree(s.opts.Dir)
	}
	taken := reqs[:0]
	for _, r := range reqs {
		if !r.claim.CompareAndSwap(0, 1) {
			continue // its caller gave up before we got to it
		}
		taken = append(taken, r)
		b.cur = r
		r.n, r.err = r.stage(b)
	}
	b.commit()
	b.rtxn.Discard()
	s.expect = min(len(taken)+len(s.reqs), maxBatchRequests)
	s.linger = min(b.took, 500*time.Microsecond)

	applied := b.apply(taken)
	if s.opts.OnCommit != nil && applied > 0 {
		s.opts.OnCommit(applied, b.took)
	}
	for _, r := range taken {
		if r.after != nil && r.err == nil {
			r.err = r.after()
		}
		close(r.done)
	}
}

// apply updates the index with every change whose transaction committed, and fails the
// requests whose writes did not all commit.
func (b *batch) apply(reqs []*request) int {
	s := b.s
	now := time.Now()
	applied := 0
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, c := range b.changes {
		if b.failed >= 0 && c.txn >= b.failed {
			continue
		}
		applied++
		e := s.idx.byID[c.id]
		switch {
		case c.del && e != nil:
			s.freed.Add(e.size)
			s.idx.removeLocked(e)
			continue
		case c.del:
			continue
		case e == nil:
			e = s.idx.addLocked(c.id, c.sum, now)
		default:
			s.idx.updateLocked(e, c.sum, now)
		}
		if e.state == StateReady {
			e.q.broadcastLocked()
		}
	}
	for _, e := range b.touched {
		e.busy--
	}
	for _, r := range reqs {
		if b.failed >= 0 && r.last >= b.failed {
			r.err = fmt.Errorf("commit: %w", b.err)
		}
	}
	return applied
}

// write adds one write to the open transaction, committing it and opening another when Badger
// says it is full. Its error is about this write alone; a failed commit fails the batch's
// later requests instead.
func (b *batch) write(f func(txn *badger.Txn) error) error {
	if b.err != nil {
		b.cur.last = b.failed
		return nil
	}
	if b.txn == nil {
		b.txn = b.s.db.NewTransaction(true)
	}
	err := f(b.txn)
	if errors.Is(err, badger.ErrTxnTooBig) {
		b.commit()
		if b.err != nil {
			b.cur.last = b.failed
			return nil
		}
		b.txn = b.s.db.NewTransaction(true)
		err = f(b.txn)
	}
	if err != nil {
		return mapErr(err)
	}
	b.cur.last = b.ntxn
	return nil
}

func (b *batch) set(key, val []byte) error {
	return b.write(func(txn *badger.Txn) error { return txn.Set(key, val) })
}

func (b *batch) del(key []byte) error {
	return b.write(func(txn *badger.Txn) error { return txn.Delete(key) })
}

// commit commits the open transaction; Badger fsyncs before it returns (SyncWrites).
func (b *batch) commit() {
	if b.txn == nil || b.err != nil {
		return
	}
	start := time.Now()
	err := b.txn.Commit()
	b.took += time.Since(start)
	b.txn.Discard()
	b.txn = nil
	if err != nil {
		b.err = mapErr(err)
		// Badger flattens the errors it wraps, so ENOSPC may not show through errors.Is:
		// ask the filesystem instead.
		if free, ok := diskFree(b.s.opts.Dir); ok && free < max(b.s.minFree, 1<<20) && !errors.Is(b.err, ErrDiskFull) {
			b.err = fmt.Errorf("%w: %w", ErrDiskFull, b.err)
		}
		b.failed = b.ntxn
		b.s.log.Error("persist commit failed", "err", err)
		return
	}
	b.ntxn++
	b.s.txns.Add(1)
}

func (b *batch) record(id string, sum summary, del bool) {
	b.changes = append(b.changes, change{id: id, sum: sum, del: del, txn: b.ntxn})
}

// get returns a record's metadata as the batch has it, marking its index entry busy so Lease
// leaves it alone until the batch is applied.
func (b *batch) get(id string) (*staged, error) {
	if st, ok := b.ov[id]; ok {
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
	leased := false
	if e != nil {
		e.busy++
		leased = e.leased
		b.touched = append(b.touched, e)
	}
	s.mu.Unlock()
	if e == nil {
		return nil, ErrNotFound
	}
	rec, bodyLen, err := readMeta(b.rtxn, id)
	if err != nil {
		return nil, err
	}
	st := &staged{rec: rec, bodyLen: bodyLen, leased: leased}
	b.ov[id] = st
	return st, nil
}

// errNoop tells modify that the record is already as asked: nothing to write.
var errNoop = errors.New("no change")

// modify stages a change of one record: fn checks and edits its metadata.
func (b *batch) modify(id string, fn func(st *staged) error) error {
	st, err := b.get(id)
	if err != nil {
		return fmt.Errorf("record %s: %w", id, err)
	}
	if err := fn(st); err != nil {
		if errors.Is(err, errNoop) {
			return nil
		}
		return fmt.Errorf("record %s: %w", id, err)
	}
	if err := b.set(metaKey(id), encodeMeta(st.rec, st.bodyLen)); err != nil {
		return fmt.Errorf("record %s: %w", id, err)
	}
	b.record(id, summaryOf(st.rec), false)
	return nil
}

// remove stages the deletion of a record and its body; fn may refuse it.
func (b *batch) remove(id string, fn func(st *staged) error) error {
	st, err := b.get(id)
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
	for i := range segments(st.bodyLen) {
		if err := b.del(bodyKey(id, i)); err != nil {
			return fmt.Errorf("record %s: %w", id, err)
		}
	}
	if err := b.del(metaKey(id)); err != nil {
		return fmt.Errorf("record %s: %w", id, err)
	}
	st.gone = true
	b.record(id, summary{}, true)
	return nil
}

// insert stages a new record: body segments first, metadata last, so a crash between
// transactions leaves at most an orphan body (removed at Open), never metadata without body.
func (b *batch) insert(r *Record, meta []byte) error {
	s := b.s
	st, inBatch := b.ov[r.ID]
	s.mu.Lock()
	_, indexed := s.idx.byID[r.ID]
	var held int64
	if q := s.idx.queues[r.Queue]; q != nil {
		held = q.bytes
	}
	s.mu.Unlock()
	if (inBatch && !st.gone) || (indexed && !inBatch) {
		return ErrExists
	}
	held += b.qbytes[r.Queue]
	if s.opts.Quota != nil {
		if limit := s.opts.Quota(r.Queue); limit > 0 && held+r.Size > limit {
			return fmt.Errorf("%w: queue %s holds %d of %d bytes", ErrQuota, r.Queue, held, limit)
		}
	}
	if b.freeOK && b.free-int64(len(r.Body)) < s.minFree {
		return fmt.Errorf("%w: %d bytes free, keeping %d", ErrDiskFull, b.free, s.minFree)
	}
	for i := range segments(len(r.Body)) {
		seg := r.Body[i*segSize : min((i+1)*segSize, len(r.Body))]
		if err := b.set(bodyKey(r.ID, i), seg); err != nil {
			return err
		}
	}
	if err := b.set(metaKey(r.ID), meta); err != nil {
		return err
	}
	b.free -= int64(len(r.Body) + len(meta))
	b.qbytes[r.Queue] += r.Size
	rec := *r
	rec.Body = nil
	b.ov[r.ID] = &staged{rec: &rec, bodyLen: len(r.Body)}
	b.record(r.ID, summaryOf(r), false)
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
