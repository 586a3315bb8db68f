package persist

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	"github.com/dgraph-io/badger/v4"
)

const (
	maxBatchRequests = 4096
	maxBatchBytes    = 64 << 20 // body bytes held by one batch
	spareMax         = 1024     // records a batch kept for the next may have held (keepBatch)
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

// change is one record's new index summary and metadata (or its removal), kept until its
// transaction commits.
type change struct {
	id      string
	sum     summary
	meta    *Record // canonical, for the recent cache
	bodyLen int
	body    []byte // of a new record, for the recent cache; nil when not kept
	del     bool
	txn     int
	cold    *summary // the record was cold, with this summary, before this change
}

// staged is a record's metadata as this batch has left it so far.
type staged struct {
	rec *Record // no body
	// shared: rec is (or will be, once applied) the recent cache's, which never changes: a
	// change copies it first (modify). It saves a copy of the metadata per change.
	shared  bool
	bodyLen int
	leased  bool     // when the batch first read it
	gone    bool     // deleted in this batch
	cold    *summary // what it was, when it was cold (cold.go), until its first change is noted
	txn     int      // the transaction holding this batch's last write of it; -1 when unwritten
}

// batch is one group commit: the requests the committer took at once.
type batch struct {
	s           *Store
	now         time.Time
	rtxn        *badger.Txn // snapshot the batch reads current metadata from
	txn         *badger.Txn // the write transaction being filled; nil until the first write
	ntxn        int         // transactions committed so far: the open one has this number
	failed      int         // number of the transaction that failed to commit; -1 while none
	err         error       // why it failed
	took        time.Duration
	cur         *request
	changes     []change
	ov          map[string]*staged
	touched     []*entry         // index entries marked busy by this batch
	coldTouched []string         // ids counted in index.coldBusy by this batch
	qbytes      map[string]int64 // bytes appended per queue
	files       []fileDrop       // body files of records this batch deletes
	free        int64            // filesystem free space at the start, minus what was appended
	freeOK      bool
}

// submit hands r to the committer and waits for its answer. A caller whose ctx ends before the
// committer took r gets ctx.Err() and r is dropped; once taken, r is finished and answered.
func (s *Store) submit(ctx context.Context, r *request) (int, error) {
	r.done = make(chan struct{})
	r.last = -1
	if s.submitHook != nil {
		s.submitHook()
	}
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
// the committer took the second. So when fewer requests wait than the last batch had plus
// those that queued while it was committed (expect), collect first yields to let producers
// that are runnable right now (woken by the last commit) queue theirs, stopping after
// yieldIdle yields in a row bring nothing; then, if some are still missing, it blocks on the
// queue for them, at most half as long as the last commit took (and lingerMax), since it
// cannot know they will come. Blocking, not spinning: a committer that spun until a deadline
// (as this one once did, up to 500µs) burned a fifth of a core per process on a loaded
// two-core machine, time the other process needed. Waiting longer than a commit gains
// nothing: a request that comes later joins the next batch just as soon. One producer, or
// sparse traffic, costs a few yields of an otherwise idle process.
func (s *Store) collect(r *request) []*request {
	reqs := []*request{r}
	bytes := r.bytes
	full := func() bool { return len(reqs) >= maxBatchRequests || bytes >= maxBatchBytes }
	add := func(r *request) {
		reqs = append(reqs, r)
		bytes += r.bytes
	}
	for idle := 0; !full(); {
		select {
		case r := <-s.reqs:
			add(r)
			idle = 0
			continue
		default:
		}
		if len(reqs) >= s.expect || idle >= yieldIdle || s.down.Load() {
			break
		}
		idle++
		runtime.Gosched()
	}
	if len(reqs) >= s.expect || full() || s.down.Load() {
		return reqs
	}
	linger := min(s.lastTook/2, lingerMax)
	if s.lingerT == nil {
		s.lingerT = time.NewTimer(linger)
	} else {
		s.lingerT.Reset(linger)
	}
	defer s.lingerT.Stop()
	for len(reqs) < s.expect && !full() {
		select {
		case r := <-s.reqs:
			add(r)
		case <-s.lingerT.C:
			return reqs
		case <-s.stop:
			return reqs
		}
	}
	return reqs
}

const (
	// yieldIdle is how many yields in a row that bring no request end collect's yielding.
	yieldIdle = 4
	// lingerMax bounds how long collect blocks for the requests it expects.
	lingerMax = 500 * time.Microsecond
)

func (s *Store) runBatch(reqs []*request) {
	b := s.newBatch()
	defer s.keepBatch(b)
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
	s.lastTook = b.took
	wrote := 0
	for _, r := range taken {
		wrote += r.bytes
	}

	applied := b.apply(taken)
	b.removeFiles() // before the answers: a Delete returns with the file gone
	s.askSweep(time.Now())
	if s.opts.OnCommit != nil && applied > 0 {
		s.opts.OnCommit(applied, b.took)
	}
	for _, r := range taken {
		if r.after != nil && r.err == nil {
			r.err = r.after()
		}
		close(r.done)
	}
	// Once the callers have their answers: reading /proc/self/maps and advising mappings
	// (every 100 ms, all of Badger's files every second) made the answers of the batch it
	// fell on that much later.
	s.adviseLogs(time.Now(), wrote)
}

// newBatch starts a batch, with the slices and maps of the last one (keepBatch): a batch
// notes a change or two of each record it writes, and growing them afresh every time was a
// tenth of the agent's allocations.
func (s *Store) newBatch() *batch {
	b := s.spare
	s.spare = nil
	if b == nil {
		b = &batch{ov: map[string]*staged{}, qbytes: map[string]int64{}}
	}
	b.s, b.now, b.rtxn, b.failed = s, time.Now(), s.db.NewTransaction(false), -1
	return b
}

// keepBatch empties b for newBatch, dropping what it points to; a batch grown past
// spareMax records is left to the GC rather than kept that big.
func (s *Store) keepBatch(b *batch) {
	if cap(b.changes) > spareMax || len(b.ov) > spareMax || cap(b.touched) > spareMax ||
		cap(b.coldTouched) > spareMax || cap(b.files) > spareMax {
		return
	}
	clear(b.changes)
	clear(b.touched)
	clear(b.coldTouched)
	clear(b.files)
	clear(b.ov)
	clear(b.qbytes)
	*b = batch{
		changes: b.changes[:0], touched: b.touched[:0], coldTouched: b.coldTouched[:0],
		files: b.files[:0], ov: b.ov, qbytes: b.qbytes,
	}
	s.spare = b
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
		if b.applyOne(c, now) {
			s.recent.delLocked(c.id)
		}
	}
	// Newest staged first: a window over its bound sheds its largest ids, which wait
	// on disk least out of order.
	for _, e := range slices.Backward(b.touched) {
		e.busy--
		s.idx.trimLocked(e)
	}
	for _, id := range b.coldTouched {
		if s.idx.coldBusy[id]--; s.idx.coldBusy[id] <= 0 {
			delete(s.idx.coldBusy, id)
		}
		if e := s.idx.byID[id]; e != nil && e.busy > 0 {
			e.busy-- // loaded by refill meanwhile, with our count
			s.idx.trimLocked(e)
		}
	}
	for _, r := range reqs {
		if b.failed >= 0 && r.last >= b.failed {
			r.err = fmt.Errorf("commit: %w", b.err)
		}
	}
	return applied
}

// applyOne applies one committed change to the index and the recent cache; it reports
// whether the record is gone.
func (b *batch) applyOne(c change, now time.Time) (gone bool) {
	s := b.s
	x := s.idx
	e := x.byID[c.id]
	// Take the old state out where the new one is not kept in its place.
	switch {
	case e != nil && (c.del || c.sum.state == StateAcked || x.compact(c.sum)):
		if c.del {
			s.freed.Add(e.size)
		}
		x.removeLocked(e)
		e = nil
	case e == nil && c.cold != nil: // on disk only (cold, or acked), or finished held compactly
		if c.del {
			s.freed.Add(c.cold.size)
		}
		if !x.dropDoneLocked(c.id) {
			x.countDiskLocked(x.queueLocked(c.cold.queue), c.id, *c.cold, -1)
		}
	}
	if c.del {
		return true
	}
	var id string
	if e != nil {
		id = e.id
		x.updateLocked(e, c.sum, now)
	} else {
		// A copy: the caller's id may share memory with more (the agent's ids point
		// into the decoded frame's strings), which the index would keep alive.
		id = strings.Clone(c.id)
		x.insertLocked(id, c.sum, c.bodyLen, now)
	}
	s.recent.putLocked(id, c.meta, c.bodyLen, c.body)
	if c.sum.state == StateReady {
		x.queueLocked(c.sum.queue).broadcastLocked()
	}
	return false
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
	err := b.s.ioErr
	if hook := b.s.commitHook; hook != nil && err == nil {
		err = hook()
	}
	if err == nil {
		err = b.txn.Commit()
	}
	if err == nil {
		// Badger logs a failed value-log sync and reports success: when it logged anything,
		// check the value log ourselves. The disk lost writes; no later commit can be
		// trusted either, until a restart.
		if b.s.badgerErr.Swap(false) {
			if err = b.s.vlog.check(); err != nil {
				b.s.ioErr = err
			}
		}
	}
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
