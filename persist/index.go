package persist

import (
	"container/heap"
	"time"
)

// entry is the in-memory index of one record. Its fields are guarded by index.mu.
type entry struct {
	id string
	q  *queue
	summary

	busy     int    // changes staged by the committer, not yet committed: Lease skips it
	leased   bool   // in memory only
	lease    uint64 // the current lease's token (Record.Lease); 0 when not leased
	leaseExp time.Time
	lidx     int  // position in index.leases; -1 when not leased
	hidx     int  // position in q.due or q.wait; -1 when in neither
	inDue    bool // which of the two hidx refers to
}

// queue is the index of one queue.
type queue struct {
	name    string
	entries map[string]*entry
	due     dueHeap  // ready, due, not leased: oldest id first
	wait    waitHeap // ready, not due yet, not leased: earliest next attempt first
	wake    chan struct{}

	pending int   // Ready + Leased + Acked, cold ones too
	bytes   int64 // their sizes
	dead    int
	done    int // finished records held compactly (index.done)

	// Records on disk only (cold.go): Ready ones beyond the window, and every Acked one.
	cold       int
	acked      int
	coldFrom   string    // no cold record has a smaller id
	coldOldest time.Time // no record on disk only was received before; the oldest's unless coldStale
	coldStale  bool
}

// index is everything the store knows without reading Badger: every record but the cold and
// the acked ones (cold.go). Methods named xLocked need mu.
type index struct {
	byID     map[string]*entry
	queues   map[string]*queue
	leases   leaseHeap // by expiry, over all queues
	nextTok  uint64    // the last lease token handed out
	finished int       // Delivered + Dead records, all queues
	bytes    int64     // sizes of all records
	cold     int       // cold records, all queues
	acked    int       // acked records (on disk only), all queues
	// coldBusy counts, per id of a record that was cold when a batch read it, the changes
	// staged and not applied yet: refill gives a record it loads that busy count.
	coldBusy map[string]int
	// unreported holds the finished records whose outcome was not reported yet, so that the
	// agent's reporter does not scan every record each time one finishes.
	unreported map[string]*entry
	// done holds the other finished records, compactly (doneRec): not in byID.
	done map[string]doneRec
	hold bool // HoldUnreported: a finished record is held whole until its outcome is reported
}

// doneRec is a finished record as the index holds it once nothing will change it but a
// replay, a sweep or a delete: what listings, the sweep and the queue's figures need; whatever
// reads or changes it reads the record from disk. A store keeps thousands of finished records
// listable (KeepDoneMax, KeepDeadMax, and up to sweepSlack more between sweeps). As entries
// they took ~290 bytes each and two objects more for the GC to mark; as doneRecs ~115 bytes
// and none (TestFinishedRecordsHeldCompactly). Over a 50,000 backlog drained, the agent's GC
// then used 5.3–5.8 CPU-seconds against 6.7–8.1, the relay's 2.4–2.7 against 3.4–3.7
// (GODEBUG=gctrace=1, hookbench -backlog 50000).
type doneRec struct {
	q                  *queue
	received, finished int64 // unix ns; 0 = zero time
	size               int64
	bodyLen            int64
	dead               bool
}

// compact says whether the index holds a record with summary s as a doneRec: finished and,
// with hold, its outcome reported.
func (x *index) compact(s summary) bool {
	return (s.state == StateDelivered || s.state == StateDead) && (s.reported || !x.hold)
}

// addDoneLocked holds finished record id compactly (compact(s) is true).
func (x *index) addDoneLocked(q *queue, id string, s summary, bodyLen int) {
	x.done[id] = doneRec{q: q, received: unixNano(s.received), finished: unixNano(s.finished),
		size: s.size, bodyLen: int64(bodyLen), dead: s.state == StateDead}
	q.done++
	x.finished++
	if s.state == StateDead {
		q.dead++
	}
	x.bytes += s.size
}

// dropDoneLocked forgets id when it is held compactly, and says whether it was.
func (x *index) dropDoneLocked(id string) bool {
	r, ok := x.done[id]
	if !ok {
		return false
	}
	delete(x.done, id)
	r.q.done--
	x.finished--
	if r.dead {
		r.q.dead--
	}
	x.bytes -= r.size
	return true
}

// entry is r as an index entry would be, for the callers that match entries (pick).
func (r doneRec) entry(id string) entry {
	st := StateDelivered
	if r.dead {
		st = StateDead
	}
	return entry{id: id, q: r.q, lidx: -1, hidx: -1, summary: summary{state: st, received: fromUnixNano(r.received),
		finished: fromUnixNano(r.finished), size: r.size, reported: true, queue: r.q.name}}
}

// record is r as the metadata a removal needs (remove): no headers, no deliveries, the body
// under the record's own id.
func (r doneRec) record(id string) *Record {
	e := r.entry(id)
	return &Record{ID: id, Queue: r.q.name, State: e.state, ReceivedAt: e.received,
		FinishedAt: e.finished, Size: r.size, BodyLen: r.bodyLen, Reported: true}
}

func unixNano(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixNano()
}

func fromUnixNano(ns int64) time.Time {
	if ns == 0 {
		return time.Time{}
	}
	return time.Unix(0, ns)
}

func newIndex(hold bool) *index {
	return &index{byID: map[string]*entry{}, queues: map[string]*queue{}, unreported: map[string]*entry{},
		coldBusy: map[string]int{}, done: map[string]doneRec{}, hold: hold}
}

func (x *index) queueLocked(name string) *queue {
	q := x.queues[name]
	if q == nil {
		q = &queue{name: name, entries: map[string]*entry{}}
		x.queues[name] = q
	}
	return q
}

// addLocked indexes a record just committed (or loaded at Open).
func (x *index) addLocked(id string, s summary, now time.Time) *entry {
	q := x.queueLocked(s.queue)
	s.queue = q.name // one copy of the name, not one per record
	e := &entry{id: id, q: q, summary: s, lidx: -1, hidx: -1}
	x.byID[id] = e
	q.entries[id] = e
	x.bytes += s.size
	x.countLocked(e, 1)
	x.placeLocked(e, now)
	return e
}

// updateLocked applies a committed change. Any change ends a lease: the record was acked,
// nacked, finished or replayed by whoever held it.
func (x *index) updateLocked(e *entry, s summary, now time.Time) {
	x.countLocked(e, -1)
	x.unleaseLocked(e)
	x.bytes += s.size - e.size
	s.queue = e.q.name
	e.summary = s
	x.countLocked(e, 1)
	x.placeLocked(e, now)
}

func (x *index) removeLocked(e *entry) {
	x.countLocked(e, -1)
	x.unleaseLocked(e)
	x.unplaceLocked(e)
	delete(x.byID, e.id)
	delete(e.q.entries, e.id)
	x.bytes -= e.size
}

func (x *index) countLocked(e *entry, sign int) {
	q := e.q
	switch e.state {
	case StateReady, StateAcked:
		q.pending += sign
		q.bytes += int64(sign) * e.size
	case StateDead:
		q.dead += sign
		x.finished += sign
	case StateDelivered:
		x.finished += sign
	}
	if (e.state == StateDelivered || e.state == StateDead) && !e.reported {
		if sign > 0 {
			x.unreported[e.id] = e
		} else {
			delete(x.unreported, e.id)
		}
	}
}

// placeLocked puts a ready, unleased record into the due or the wait heap.
func (x *index) placeLocked(e *entry, now time.Time) {
	x.unplaceLocked(e)
	if e.state != StateReady || e.leased {
		return
	}
	if e.next.After(now) {
		heap.Push(&e.q.wait, e)
		return
	}
	e.inDue = true
	heap.Push(&e.q.due, e)
}

func (x *index) unplaceLocked(e *entry) {
	if e.hidx < 0 {
		return
	}
	if e.inDue {
		heap.Remove(&e.q.due, e.hidx)
	} else {
		heap.Remove(&e.q.wait, e.hidx)
	}
	e.inDue = false
}

func (x *index) leaseLocked(e *entry, exp time.Time) {
	x.nextTok++
	e.lease = x.nextTok
	e.leased = true
	e.leaseExp = exp
	heap.Push(&x.leases, e)
}

// unleaseLocked ends a lease (without placing the record back; callers do).
func (x *index) unleaseLocked(e *entry) {
	if e.lidx >= 0 {
		heap.Remove(&x.leases, e.lidx)
	}
	e.leased = false
	e.lease = 0
	e.leaseExp = time.Time{}
}

// expireLeasesLocked makes expired leases ready again and wakes their queues.
func (x *index) expireLeasesLocked(now time.Time) {
	for len(x.leases) > 0 && !x.leases[0].leaseExp.After(now) {
		e := x.leases[0]
		x.unleaseLocked(e)
		x.placeLocked(e, now)
		x.trimLocked(e)
		e.q.broadcastLocked()
	}
}

// promoteLocked moves records whose next attempt has come from the wait to the due heap.
func (q *queue) promoteLocked(now time.Time) {
	for len(q.wait) > 0 && !q.wait[0].next.After(now) {
		e := heap.Pop(&q.wait).(*entry)
		e.inDue = true
		heap.Push(&q.due, e)
	}
}

// broadcastLocked wakes every Wait of the queue.
func (q *queue) broadcastLocked() {
	if q.wake != nil {
		close(q.wake)
		q.wake = nil
	}
}

// dueHeap orders by id: ULIDs sort by arrival.
type dueHeap []*entry

func (h dueHeap) Len() int           { return len(h) }
func (h dueHeap) Less(i, j int) bool { return h[i].id < h[j].id }
func (h dueHeap) Swap(i, j int)      { h[i], h[j] = h[j], h[i]; h[i].hidx = i; h[j].hidx = j }
func (h *dueHeap) Push(v any)        { e := v.(*entry); e.hidx = len(*h); *h = append(*h, e) }
func (h *dueHeap) Pop() any          { return popEntry((*[]*entry)(h)) }

// waitHeap orders by next attempt, then id.
type waitHeap []*entry

func (h waitHeap) Len() int { return len(h) }
func (h waitHeap) Less(i, j int) bool {
	if !h[i].next.Equal(h[j].next) {
		return h[i].next.Before(h[j].next)
	}
	return h[i].id < h[j].id
}
func (h waitHeap) Swap(i, j int) { h[i], h[j] = h[j], h[i]; h[i].hidx = i; h[j].hidx = j }
func (h *waitHeap) Push(v any)   { e := v.(*entry); e.hidx = len(*h); *h = append(*h, e) }
func (h *waitHeap) Pop() any     { return popEntry((*[]*entry)(h)) }

func popEntry(h *[]*entry) any {
	old := *h
	e := old[len(old)-1]
	old[len(old)-1] = nil
	*h = old[:len(old)-1]
	e.hidx = -1
	return e
}

// leaseHeap orders leases by expiry.
type leaseHeap []*entry

func (h leaseHeap) Len() int           { return len(h) }
func (h leaseHeap) Less(i, j int) bool { return h[i].leaseExp.Before(h[j].leaseExp) }
func (h leaseHeap) Swap(i, j int)      { h[i], h[j] = h[j], h[i]; h[i].lidx = i; h[j].lidx = j }
func (h *leaseHeap) Push(v any)        { e := v.(*entry); e.lidx = len(*h); *h = append(*h, e) }
func (h *leaseHeap) Pop() any {
	old := *h
	e := old[len(old)-1]
	old[len(old)-1] = nil
	*h = old[:len(old)-1]
	e.lidx = -1
	return e
}
