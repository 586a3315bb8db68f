package persist

import (
	"container/heap"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/dgraph-io/badger/v4"
)

// Lease hands out up to max Ready records of queue whose NextAttempt is due, oldest first,
// with bodies, marking them Leased until ttl passes (then they are Ready again).
func (s *Store) Lease(queue string, max int, ttl time.Duration) ([]*Record, error) {
	if max <= 0 {
		return nil, nil
	}
	s.life.RLock()
	defer s.life.RUnlock()
	if s.closed {
		return nil, ErrClosed
	}
	now := time.Now()
	var picked []*entry
	s.mu.Lock()
	s.idx.expireLeasesLocked(now)
	if q := s.idx.queues[queue]; q != nil {
		q.promoteLocked(now)
		s.refillLocked(q, now, "")
		var busy []*entry
		for len(picked) < max && q.due.Len() > 0 {
			e := heap.Pop(&q.due).(*entry)
			e.inDue = false
			if e.busy > 0 {
				busy = append(busy, e)
				continue
			}
			s.idx.leaseLocked(e, now.Add(ttl))
			picked = append(picked, e)
			if q.due.Len() == 0 && q.cold > 0 {
				s.refillLocked(q, now, "")
			}
		}
		for _, e := range busy {
			e.inDue = true
			heap.Push(&q.due, e)
		}
	}
	// What was just written comes from the recent cache; the rest from Badger.
	found := make([]*Record, len(picked))
	read := make([]bool, len(picked))     // read from Badger
	tokens := make([]uint64, len(picked)) // the leases handed out
	missing := 0
	for i, e := range picked {
		tokens[i] = e.lease
		if c := s.recent.getLocked(e.id); c != nil {
			found[i], _ = c.record(true, s.opts.SharedBodies)
		}
		if found[i] == nil {
			missing++
			read[i] = true
		}
	}
	s.mu.Unlock()
	if len(picked) == 0 {
		return nil, nil
	}
	s.kickReaper()

	var err error
	if missing > 0 {
		err = s.db.View(func(txn *badger.Txn) error {
			for i, e := range picked {
				if found[i] != nil {
					continue
				}
				r, err := s.readLeased(txn, e.id)
				if errors.Is(err, ErrNotFound) {
					continue // deleted while we looked
				}
				if err != nil {
					return err
				}
				found[i] = r
			}
			return nil
		})
	}
	recs := make([]*Record, 0, len(picked))
	s.mu.Lock()
	for i, r := range found {
		if r == nil {
			continue
		}
		if read[i] && cacheLeased {
			s.cacheLeasedLocked(picked[i], tokens[i], r)
		}
		r.State = StateLeased
		r.Lease = tokens[i]
		recs = append(recs, r)
	}
	s.mu.Unlock()
	if err != nil {
		ids := make([]string, len(picked))
		for i, e := range picked {
			ids[i] = e.id
		}
		s.Release(ids...)
		return nil, fmt.Errorf("lease: %w", err)
	}
	return recs, nil
}

// cacheLeased is on but in BenchmarkDrain's baseline.
var cacheLeased = true

// cacheLeasedLocked puts the metadata of r, just read from Badger for lease tok of e, in the
// recent cache, so that the holder's ack and outcome (and the agent's report) find it there
// instead of reading it again: a backlog's records are read from disk to be leased, and every
// one was then read twice more (relay: ack and outcome; agent: outcome and report). Only while
// the record is unchanged since it was picked: any committed change ends the lease (a new
// lease has a new token), a staged one makes it busy; either brings its own entry.
func (s *Store) cacheLeasedLocked(e *entry, tok uint64, r *Record) {
	if s.idx.byID[e.id] != e || !e.leased || e.lease != tok || e.busy > 0 || s.recent.getLocked(e.id) != nil {
		return
	}
	meta := *r // as decodeMeta returned it: canonical, State as stored
	meta.Body = nil
	s.recent.putLocked(e.id, &meta, int(r.BodyLen), nil)
}

// Release returns leased records to Ready, due now, without counting an attempt, whoever
// holds the lease (the agent's deliverer, the only one leasing there). See ReleaseLease.
func (s *Store) Release(ids ...string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, id := range ids {
		s.releaseLocked(id, 0)
	}
}

// ReleaseLease is Release for the leases given (id → Record.Lease): a record whose lease
// expired and was handed out again is left to its new holder. It reports how many it released.
func (s *Store) ReleaseLease(leases map[string]uint64) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for id, token := range leases {
		if s.releaseLocked(id, token) {
			n++
		}
	}
	return n
}

// ExtendLease moves the expiry of the given leases (id → Record.Lease) to ttl from now, and
// returns the ids whose lease is no longer theirs (expired, released or handed out again).
// A holder that keeps records longer than its ttl (queued behind a slow writer) extends them,
// so that nobody else is handed them meanwhile.
func (s *Store) ExtendLease(leases map[string]uint64, ttl time.Duration) []string {
	exp := time.Now().Add(ttl)
	s.mu.Lock()
	defer s.mu.Unlock()
	var lost []string
	for id, token := range leases {
		e := s.idx.byID[id]
		if e == nil || !e.leased || e.lease != token {
			lost = append(lost, id)
			continue
		}
		e.leaseExp = exp
		heap.Fix(&s.idx.leases, e.lidx)
	}
	return lost
}

// releaseLocked releases id's lease when it is token's (any lease with token 0).
func (s *Store) releaseLocked(id string, token uint64) bool {
	e := s.idx.byID[id]
	if e == nil || !e.leased || (token != 0 && e.lease != token) {
		return false
	}
	now := time.Now()
	s.idx.unleaseLocked(e)
	if e.next.After(now) {
		e.next = now // in memory only: on disk it is older still, so due as well
	}
	s.idx.placeLocked(e, now)
	s.idx.trimLocked(e)
	e.q.broadcastLocked()
	return true
}

// Wait returns a channel closed when a record of queue may have become ready (append,
// release, nack, replay, lease expiry) or the store closed. Take a new one after each wake-up.
func (s *Store) Wait(queue string) <-chan struct{} {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.down.Load() {
		return closedChan
	}
	q := s.idx.queueLocked(queue)
	if q.wake == nil {
		q.wake = make(chan struct{})
	}
	return q.wake
}

var closedChan = func() chan struct{} { c := make(chan struct{}); close(c); return c }()

// NextDue returns the earliest NextAttempt among the Ready, unleased records of queue; a time
// not after now when one is due already. False when there is none.
func (s *Store) NextDue(queue string) (time.Time, bool) {
	now := time.Now()
	s.mu.Lock()
	defer s.mu.Unlock()
	q := s.idx.queues[queue]
	if q == nil {
		return time.Time{}, false
	}
	q.promoteLocked(now)
	s.refillLocked(q, now, "")
	if q.due.Len() > 0 {
		return now, true
	}
	if q.wait.Len() > 0 {
		return q.wait[0].next, true
	}
	return time.Time{}, false
}

// Has reports whether a record with this id is stored (in any state).
func (s *Store) Has(id string) (bool, error) {
	if s.down.Load() {
		return false, ErrClosed
	}
	s.mu.Lock()
	_, ok := s.idx.byID[id]
	if _, done := s.idx.done[id]; done {
		ok = true
	}
	cold := s.idx.cold > 0 || s.idx.acked > 0
	s.mu.Unlock()
	if ok || !cold || !validID(id) {
		return ok, nil
	}
	err := s.db.View(func(txn *badger.Txn) error {
		_, err := txn.Get(metaKey(id))
		return err
	})
	switch {
	case err == nil:
		return true, nil
	case errors.Is(err, badger.ErrKeyNotFound):
		return false, nil
	}
	return false, fmt.Errorf("has %s: %w", id, mapErr(err))
}

// Get returns the record with its body, or ErrNotFound. A leased record shows StateLeased.
func (s *Store) Get(id string) (*Record, error) { return s.get(id, true) }

// Meta is Get without the body (Body nil, BodyLen its size), from the recent cache when it
// holds the record.
func (s *Store) Meta(id string) (*Record, error) { return s.get(id, false) }

func (s *Store) get(id string, body bool) (*Record, error) {
	if !validID(id) {
		return nil, fmt.Errorf("get %q: %w", id, ErrNotFound)
	}
	s.life.RLock()
	defer s.life.RUnlock()
	if s.closed {
		return nil, ErrClosed
	}
	var r *Record
	if !body {
		s.mu.Lock()
		if c := s.recent.getLocked(id); c != nil {
			r, _ = c.record(false, false)
		}
		s.mu.Unlock()
	}
	if r == nil {
		err := s.db.View(func(txn *badger.Txn) error {
			var err error
			r, err = s.readRecord(txn, id, body)
			return err
		})
		if err != nil {
			return nil, fmt.Errorf("get %s: %w", id, err)
		}
	}
	s.mu.Lock()
	if e := s.idx.byID[id]; e != nil && e.leased {
		r.State = StateLeased
	}
	s.mu.Unlock()
	return r, nil
}

// readRecord reads a record's metadata and, when body is set, its body.
func (s *Store) readRecord(txn *badger.Txn, id string, body bool) (*Record, error) {
	r, bodyLen, err := readMeta(txn, id)
	if err != nil || !body {
		return r, err
	}
	if err := s.readBody(txn, r, bodyLen); err != nil {
		return nil, err
	}
	return r, nil
}

// readBody reads into r.Body the body of bodyLen bytes of r, whose metadata was just read.
func (s *Store) readBody(txn *badger.Txn, r *Record, bodyLen int) error {
	if isFile(r.parts) {
		var err error
		r.Body, err = s.readBodyFile(r.ID, r.parts, bodyLen)
		return err
	}
	r.Body = make([]byte, 0, bodyLen)
	for i := range segments(bodyLen) {
		item, err := txn.Get(bodyKey(partsName(r), i))
		if err != nil {
			return fmt.Errorf("read body %s segment %d: %w", r.ID, i, err)
		}
		if err := item.Value(func(v []byte) error {
			r.Body = append(r.Body, v...)
			return nil
		}); err != nil {
			return fmt.Errorf("read body %s segment %d: %w", r.ID, i, err)
		}
	}
	if len(r.Body) != bodyLen {
		return fmt.Errorf("read body %s: %d bytes, want %d: %w", r.ID, len(r.Body), bodyLen, errCorrupt)
	}
	return nil
}

// Quarantined returns the ids of records set aside at Open because their metadata did not
// decode. They are kept on disk untouched (metadata and body) for an operator to inspect.
func (s *Store) Quarantined() []string {
	return slices.Clone(s.quarantined)
}
