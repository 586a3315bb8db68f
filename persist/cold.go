package persist

import (
	"bytes"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/dgraph-io/badger/v4"
)

// windowMax bounds the ready, unleased records a queue holds in memory (its due and wait
// heaps). The others are "cold": on disk only, counted in the queue's pending and bytes, and
// found again in id order through their ready keys ("r" + queue + id, written while a record
// is Ready on disk) when the window runs low. Acked records (the relay's, held by an agent
// until it reports) are never held in memory: counted, and listed through their acked keys
// ("a" + queue + id). So a backlog of a million waiting webhooks costs no memory per webhook,
// neither waiting nor while an agent holds them; what is leased or finished stays in memory
// (bounded by the lease sizes and retention).
//
// A state key is written before the metadata that puts a record in its state and deleted
// after the metadata that takes it out, so however a batch is split into transactions, a
// record Ready or Acked on disk always has one. A stale one (a crash between the two) is
// skipped: refill and List read the metadata of every record they return.
const windowMax = 2048

// window is how many ready, unleased records q holds in memory.
func (q *queue) window() int { return len(q.due) + len(q.wait) }

// insertLocked indexes a record just committed (or loaded at Open): in memory, or on disk
// only when it is Acked, or Ready while the queue's window is full or has cold records
// already (which come first: ids are handed out in order). Returns nil when on disk only.
func (x *index) insertLocked(id string, s summary, bodyLen int, now time.Time) *entry {
	q := x.queueLocked(s.queue)
	if x.compact(s) {
		x.addDoneLocked(q, id, s, bodyLen)
		return nil
	}
	if s.state == StateAcked || (s.state == StateReady && (q.cold > 0 || q.window() >= windowMax)) {
		s.queue = q.name
		x.countDiskLocked(q, id, s, 1)
		return nil
	}
	return x.addLocked(id, s, now)
}

// countDiskLocked counts a record on disk only (cold, or acked) in (sign 1) or out (-1) of
// the queue's figures.
func (x *index) countDiskLocked(q *queue, id string, s summary, sign int) {
	if s.state == StateAcked {
		q.acked += sign
		x.acked += sign
	} else {
		q.cold += sign
		x.cold += sign
	}
	q.pending += sign
	q.bytes += int64(sign) * s.size
	x.bytes += int64(sign) * s.size
	switch {
	case sign < 0:
		x.warmLocked(q, s.received)
	case s.state == StateReady:
		x.coolLocked(q, id, s.received)
	default:
		x.oldestLocked(q, s.received)
	}
}

// coolLocked notes that ready record id, received then, is cold now.
func (x *index) coolLocked(q *queue, id string, received time.Time) {
	if q.cold == 1 || id < q.coldFrom {
		q.coldFrom = strings.Clone(id) // the caller's may hold a whole frame alive
	}
	x.oldestLocked(q, received)
}

// oldestLocked notes a record received then that is on disk only now.
func (x *index) oldestLocked(q *queue, received time.Time) {
	if q.cold+q.acked == 1 || received.Before(q.coldOldest) {
		q.coldOldest = received
		q.coldStale = false
	}
}

// warmLocked notes that a record received then is on disk only no longer.
func (x *index) warmLocked(q *queue, received time.Time) {
	if q.cold+q.acked == 0 {
		q.coldOldest, q.coldStale = time.Time{}, false
		return
	}
	if !received.After(q.coldOldest) {
		q.coldStale = true
	}
}

// trimLocked makes e cold when it is ready in a window over windowMax (a nack or an expired
// lease put it back) and nothing is staging a change of it.
func (x *index) trimLocked(e *entry) {
	q := e.q
	if e.hidx < 0 || e.busy > 0 || q.window() <= windowMax {
		return
	}
	x.unplaceLocked(e)
	delete(x.byID, e.id)
	delete(q.entries, e.id)
	q.cold++
	x.cold++
	x.coolLocked(q, e.id, e.received)
}

// refillLocked loads cold records of q, in id order from q.coldFrom, while its window is
// under half full (or, with upTo set, every cold record with an id below upTo: LeaseHead's
// head must be the lowest). It reads Badger under s.mu: a batch applied after the snapshot was
// committed after it, and one committed before is either seen applied or sees the record here.
func (s *Store) refillLocked(q *queue, now time.Time, upTo string) {
	if q.cold == 0 || (upTo == "" && q.window() >= windowMax/2) || (upTo != "" && q.coldFrom >= upTo) {
		return
	}
	x := s.idx
	prefix := readyPrefix(q.name)
	err := s.db.View(func(txn *badger.Txn) error {
		for pass := 0; pass < 2 && q.cold > 0; pass++ {
			from := q.coldFrom
			if pass == 1 {
				if from == "" {
					break
				}
				// Ran out past coldFrom with records still counted cold: the bound was wrong.
				s.log.Warn("persist: cold records below their bound, scanning the queue again", "queue", q.name)
				from = ""
			}
			full, err := s.loadCold(txn, q, prefix, from, upTo, now)
			if err != nil || full {
				return err
			}
		}
		if q.cold > 0 && upTo == "" {
			s.log.Error("persist: cold records counted but not found; recounting", "queue", q.name, "missing", q.cold)
			q.pending -= q.cold
			x.cold -= q.cold
			q.cold = 0
		}
		return nil
	})
	if err != nil {
		s.log.Error("persist: reading waiting records", "queue", q.name, "err", err)
	}
}

// loadCold loads q's cold records with ids from from, until the window is full (or, with
// upTo, past upTo); full reports that it stopped for that rather than running out.
func (s *Store) loadCold(txn *badger.Txn, q *queue, prefix []byte, from, upTo string, now time.Time) (full bool, err error) {
	x := s.idx
	it := txn.NewIterator(badger.IteratorOptions{Prefix: prefix})
	defer it.Close()
	for it.Seek(append(bytes.Clone(prefix), from...)); it.Valid() && q.cold > 0; it.Next() {
		id := string(it.Item().Key()[len(prefix):])
		if (upTo == "" && q.window() >= windowMax) || (upTo != "" && id >= upTo) {
			q.coldFrom = id
			return true, nil
		}
		if x.byID[id] != nil {
			continue
		}
		sum, err := readSummary(txn, id)
		if errors.Is(err, ErrNotFound) {
			continue // a stale ready key
		}
		if err != nil {
			return false, err
		}
		if sum.state != StateReady || sum.queue != q.name {
			continue
		}
		q.cold--
		x.cold--
		x.warmLocked(q, sum.received)
		sum.queue = q.name
		e := &entry{id: id, q: q, summary: sum, lidx: -1, hidx: -1, busy: x.coldBusy[id]}
		x.byID[id] = e
		q.entries[id] = e
		x.placeLocked(e, now)
		q.coldFrom = id
	}
	return false, nil
}

// readSummary reads the index fields of a record's metadata.
func readSummary(txn *badger.Txn, id string) (summary, error) {
	item, err := txn.Get(metaKey(id))
	if errors.Is(err, badger.ErrKeyNotFound) {
		return summary{}, ErrNotFound
	}
	if err != nil {
		return summary{}, err
	}
	var sum summary
	err = item.Value(func(v []byte) error {
		sum, _, err = decodeSummary(v)
		return err
	})
	return sum, err
}

// coldScan calls fn with the id and value of queue's state keys of tag (readyTag, ackedTag)
// whose record is not in memory, oldest id first or, with newestFirst, newest first, until fn
// returns false. Called without s.mu; a record loaded or changed meanwhile may show or not.
func (s *Store) coldScan(tag byte, queue string, newestFirst bool, fn func(id string, v readyVal) bool) error {
	prefix := statePrefix(tag, queue)
	return s.db.View(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{Prefix: prefix, Reverse: newestFirst, PrefetchValues: true, PrefetchSize: 256})
		defer it.Close()
		seek := bytes.Clone(prefix)
		if newestFirst {
			seek = append(seek, 0xff)
		}
		for it.Seek(seek); it.Valid(); it.Next() {
			id := string(it.Item().Key()[len(prefix):])
			s.mu.Lock()
			hot := s.idx.byID[id] != nil
			s.mu.Unlock()
			if hot {
				continue
			}
			var rv readyVal
			err := it.Item().Value(func(v []byte) error {
				var err error
				rv, err = decodeReady(v)
				return err
			})
			if err != nil {
				return err
			}
			if !fn(id, rv) {
				return nil
			}
		}
		return nil
	})
}

// diskQueues returns the names of the queues with records on disk only (queue only, when not
// ""): cold ones for readyTag, acked ones for ackedTag, either for 0.
func (s *Store) diskQueues(queue string, tag byte) []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []string
	for name, q := range s.idx.queues {
		n := map[byte]int{readyTag: q.cold, ackedTag: q.acked, 0: q.cold + q.acked}[tag]
		if n > 0 && (queue == "" || queue == name) {
			out = append(out, name)
		}
	}
	return out
}

// freshenColdOldest recomputes the oldest ReceivedAt of queue's cold records when a record
// that may have been it left the cold ones (Stats reports it).
func (s *Store) freshenColdOldest(queue string) {
	s.mu.Lock()
	q := s.idx.queues[queue]
	stale := q != nil && q.coldStale
	s.mu.Unlock()
	if !stale {
		return
	}
	var oldest time.Time
	for _, tag := range []byte{readyTag, ackedTag} {
		err := s.coldScan(tag, queue, false, func(_ string, v readyVal) bool {
			if oldest.IsZero() || v.received.Before(oldest) {
				oldest = v.received
			}
			return true
		})
		if err != nil {
			s.log.Warn("persist: reading waiting records", "queue", queue, "err", err)
			return
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	// A record that went cold meanwhile lowered coldOldest itself; one that left may leave
	// it stale again, for the next Stats.
	if q.coldStale && q.cold+q.acked > 0 && !oldest.IsZero() {
		q.coldOldest, q.coldStale = oldest, false
	}
}

// pickCold returns the cold records of queue (all when "") whose ready value matches, for
// Expire: a queue whose oldest cold record (by ReceivedAt, as last known) does not match is
// not scanned.
func (s *Store) pickCold(queue string, match func(v readyVal) bool) ([]listed, error) {
	var sel []listed
	for _, name := range s.diskQueues(queue, readyTag) {
		s.mu.Lock()
		q := s.idx.queues[name]
		skip := !q.coldStale && !match(readyVal{received: q.coldOldest})
		s.mu.Unlock()
		if skip {
			continue
		}
		err := s.coldScan(readyTag, name, false, func(id string, v readyVal) bool {
			if match(v) {
				sel = append(sel, listed{id: id})
			}
			return true
		})
		if err != nil {
			return nil, fmt.Errorf("read waiting records of %s: %w", name, err)
		}
	}
	return sel, nil
}
