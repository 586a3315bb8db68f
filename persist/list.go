package persist

import (
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/dgraph-io/badger/v4"
)

// Listing: what List, Unreported and Peek return, and the queues' figures (Stats). The index
// picks the records (the cold ones from their state keys), and their metadata is read from
// the recent cache or from disk.

// listed is an index entry picked for a listing: its id and whether it is leased then.
type listed struct {
	id     string
	leased bool
}

// List returns records matching f, newest first (by id), without bodies.
func (s *Store) List(f Filter) ([]*Record, error) {
	limit := f.Limit
	if limit <= 0 {
		limit = 100
	}
	sel := s.pick(f.Queue, func(e *entry) bool {
		st := e.state
		if e.leased {
			st = StateLeased
		}
		return (f.State == 0 || st == f.State) && !e.received.Before(f.Since)
	})
	for tag, st := range map[byte]State{readyTag: StateReady, ackedTag: StateAcked} {
		if f.State != 0 && f.State != st {
			continue
		}
		// The newest limit of each queue on disk only are all that can make the cut.
		for _, name := range s.diskQueues(f.Queue, tag) {
			n := 0
			err := s.coldScan(tag, name, true, func(id string, v readyVal) bool {
				if !v.received.Before(f.Since) {
					sel = append(sel, listed{id: id})
					n++
				}
				return n < limit
			})
			if err != nil {
				return nil, fmt.Errorf("list: %w", err)
			}
		}
	}
	slices.SortFunc(sel, func(a, b listed) int { return strings.Compare(b.id, a.id) })
	sel = slices.CompactFunc(sel, func(a, b listed) bool { return a.id == b.id })
	return s.readListed(sel, limit)
}

// Unreported returns up to max finished records whose outcome was not reported yet, oldest
// first, without bodies. It reads only those records (the index keeps them in a set). Only a
// store with HoldUnreported keeps that set: without, it returns none.
func (s *Store) Unreported(max int) ([]*Record, error) {
	return s.UnreportedExcept(max, nil)
}

// UnreportedExcept is Unreported leaving out the ids skip says (nil: none) before any record
// is read: the agent's reporter skips the reports it sent and awaits confirmation of, which
// may be many, without reading them again each time.
func (s *Store) UnreportedExcept(max int, skip func(id string) bool) ([]*Record, error) {
	if max <= 0 {
		return nil, nil
	}
	s.mu.Lock()
	sel := make([]listed, 0, len(s.idx.unreported))
	for _, e := range s.idx.unreported {
		if skip == nil || !skip(e.id) {
			sel = append(sel, listed{e.id, e.leased})
		}
	}
	s.mu.Unlock()
	slices.SortFunc(sel, func(a, b listed) int { return strings.Compare(a.id, b.id) })
	return s.readListed(sel, max)
}

// pick selects index entries of queue (all when "").
func (s *Store) pick(queue string, match func(e *entry) bool) []listed {
	s.mu.Lock()
	defer s.mu.Unlock()
	var sel []listed
	for name, q := range s.idx.queues {
		if queue != "" && name != queue {
			continue
		}
		for _, e := range q.entries {
			if match(e) {
				sel = append(sel, listed{e.id, e.leased})
			}
		}
	}
	if len(s.idx.done) == 0 {
		return sel
	}
	var e entry // one for all: match only reads it
	for id, r := range s.idx.done {
		if queue != "" && r.q.name != queue {
			continue
		}
		if e = r.entry(id); match(&e) {
			sel = append(sel, listed{id: id})
		}
	}
	return sel
}

// readListed reads the metadata of the first limit entries of sel still stored.
func (s *Store) readListed(sel []listed, limit int) ([]*Record, error) {
	s.life.RLock()
	defer s.life.RUnlock()
	if s.closed {
		return nil, ErrClosed
	}
	out := make([]*Record, 0, min(limit, len(sel)))
	cached := make([]*Record, min(limit, len(sel))) // from the recent cache, for the first ones
	s.mu.Lock()
	for i := range cached {
		if c := s.recent.getLocked(sel[i].id); c != nil {
			cached[i], _ = c.record(false, false)
		}
	}
	s.mu.Unlock()
	err := s.db.View(func(txn *badger.Txn) error {
		for i, l := range sel {
			if len(out) == limit {
				return nil
			}
			var r *Record
			if i < len(cached) {
				r = cached[i]
			}
			if r == nil {
				var err error
				r, err = s.readRecord(txn, l.id, false)
				if errors.Is(err, ErrNotFound) {
					continue
				}
				if err != nil {
					return err
				}
			}
			if l.leased && r.State == StateReady {
				r.State = StateLeased
			}
			out = append(out, r)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("list: %w", err)
	}
	return out, nil
}

// Stats returns one entry per queue that has records, by queue name.
func (s *Store) Stats() []QueueStats {
	for _, name := range s.diskQueues("", 0) {
		s.freshenColdOldest(name)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []QueueStats
	for name, q := range s.idx.queues {
		if len(q.entries) == 0 && q.cold == 0 && q.acked == 0 && q.done == 0 {
			continue
		}
		st := QueueStats{Queue: name, Pending: q.pending, Bytes: q.bytes, Dead: q.dead}
		if q.cold > 0 || q.acked > 0 {
			st.Oldest = q.coldOldest
		}
		for _, e := range q.entries {
			if (e.state == StateReady || e.state == StateAcked) &&
				(st.Oldest.IsZero() || e.received.Before(st.Oldest)) {
				st.Oldest = e.received
			}
		}
		out = append(out, st)
	}
	slices.SortFunc(out, func(a, b QueueStats) int { return strings.Compare(a.Queue, b.Queue) })
	return out
}
