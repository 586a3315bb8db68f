package persist

import (
	"fmt"
	"time"

	"github.com/dgraph-io/badger/v4"
)

// LeaseHead leases the head of queue (its Ready record with the lowest id) for ordered
// delivery, with its body, if it is due. Otherwise it returns no record and when the head
// becomes due: its NextAttempt when it waits out a backoff (a later record is never handed
// out instead), a zero time when there is no head or it is leased already (Wait says when to
// look again).
func (s *Store) LeaseHead(queue string, ttl time.Duration) (*Record, time.Time, error) {
	s.life.RLock()
	defer s.life.RUnlock()
	if s.closed {
		return nil, time.Time{}, ErrClosed
	}
	now := time.Now()
	s.mu.Lock()
	s.idx.expireLeasesLocked(now)
	q := s.idx.queues[queue]
	var head *entry
	if q != nil {
		q.promoteLocked(now)
		s.refillLocked(q, now, "")
		head = q.headLocked(s.idx)
		if head != nil && q.cold > 0 && q.coldFrom < head.id {
			// The head may be cold (put back by a nack into a full window).
			s.refillLocked(q, now, head.id)
			q.promoteLocked(now)
			head = q.headLocked(s.idx)
		}
	}
	switch {
	case head == nil || head.leased:
		s.mu.Unlock()
		return nil, time.Time{}, nil
	case head.next.After(now):
		s.mu.Unlock()
		return nil, head.next, nil
	case head.busy > 0:
		// A change of it is being committed; the commit wakes the queue if it stays ready.
		s.mu.Unlock()
		return nil, now.Add(headBusyWait), nil
	}
	s.idx.unplaceLocked(head)
	s.idx.leaseLocked(head, now.Add(ttl))
	token := head.lease
	var r *Record
	if c := s.recent.getLocked(head.id); c != nil {
		r, _ = c.record(true, s.opts.SharedBodies)
	}
	id := head.id
	s.mu.Unlock()
	s.kickReaper()
	if r == nil {
		err := s.db.View(func(txn *badger.Txn) error {
			var err error
			r, err = s.readLeased(txn, id)
			return err
		})
		if err != nil {
			s.Release(id)
			return nil, time.Time{}, fmt.Errorf("lease head of %s: %w", queue, err)
		}
	}
	r.State = StateLeased
	r.Lease = token
	return r, time.Time{}, nil
}

// headBusyWait is how soon LeaseHead's caller looks again at a head being changed.
const headBusyWait = 5 * time.Millisecond

// headLocked returns the ready record of q with the lowest id, leased or not; nil when none.
// The due heap is ordered by id; the wait heap and the leases are scanned (an ordered queue
// has at most its head in either).
func (q *queue) headLocked(x *index) *entry {
	var head *entry
	if len(q.due) > 0 {
		head = q.due[0]
	}
	for _, e := range q.wait {
		if head == nil || e.id < head.id {
			head = e
		}
	}
	for _, e := range x.leases {
		if e.q == q && e.state == StateReady && (head == nil || e.id < head.id) {
			head = e
		}
	}
	return head
}
