package persist

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/dgraph-io/badger/v4"
)

const gcChunk = 2000 // deletions per committer request

// GC runs one retention sweep now (Delivered and Dead records older than KeepDone, or beyond
// KeepDoneMax, oldest first) and then gives disk space back. The background loop calls it
// every GCInterval.
//
// Badger reclaims in two steps. Deleted keys and their inline values leave the LSM tree only
// when compaction rewrites the tables holding them, and only compaction tells the value log
// which of its entries are garbage (discard stats); records still in a memtable are seen by
// neither. Value-log GC then rewrites files that are mostly garbage, but never the one being
// written. So after bulk deletes (at least half a value-log file, and half of what is still
// stored, deleted since the last time) GC flushes the memtables and flattens the LSM tree
// before value-log GC; otherwise it relies on compactions as they come. Without the flush, a
// stream of records with value-log bodies grew the directory with the count (69 MiB written,
// 65 MiB on disk). With it (TestDiskStaysBounded: small profile, 6k records, 69 MiB appended,
// delivered and deleted, GC after each sixth) the directory stays between 2 and 14 MiB: the
// value-log file being written (up to 16 MiB), the memtable WAL and a few small tables.
func (s *Store) GC() error {
	s.gcMu.Lock()
	defer s.gcMu.Unlock()
	if _, err := s.sweep(time.Now()); err != nil {
		return err
	}
	return s.reclaim()
}

func (s *Store) gcLoop() {
	t := time.NewTicker(s.opts.GCInterval)
	defer t.Stop()
	for {
		select {
		case <-s.stop:
			return
		case <-t.C:
		case <-s.sweepNow:
		}
		if err := s.GC(); err != nil && !errors.Is(err, ErrClosed) {
			s.log.Warn("persist gc", "err", err)
		}
	}
}

// sweepSlack is how many finished records beyond KeepDoneMax + KeepDeadMax the index may
// hold before the committer asks for a sweep ahead of GCInterval: they are held in memory,
// and a backlog drained at thousands a second would otherwise pile up a minute's worth.
const sweepSlack = 4096

// askSweep asks the GC loop for a sweep when the index holds too many finished records, at
// most once a second (with HoldUnreported a sweep may find nothing to delete). Committer only.
func (s *Store) askSweep(now time.Time) {
	s.mu.Lock()
	finished := s.idx.finished
	s.mu.Unlock()
	if finished <= s.opts.KeepDoneMax+s.opts.KeepDeadMax+sweepSlack || now.Sub(s.sweptAt) < time.Second {
		return
	}
	s.sweptAt = now
	select {
	case s.sweepNow <- struct{}{}:
	default:
	}
}

// sweep deletes the finished records retention no longer keeps; returns how many.
func (s *Store) sweep(now time.Time) (int, error) {
	ids := s.sweepPick(now)
	deleted := 0
	for len(ids) > 0 {
		chunk := ids[:min(gcChunk, len(ids))]
		ids = ids[len(chunk):]
		n, err := s.submit(context.Background(), &request{stage: func(b *batch) (int, error) {
			n := 0
			for _, id := range chunk {
				err := b.remove(id, func(st *staged) error {
					if st.rec.State != StateDelivered && st.rec.State != StateDead {
						return errNoop // replayed since we picked it
					}
					return nil
				})
				switch {
				case errors.Is(err, ErrNotFound):
				case err != nil:
					return n, err
				default:
					n++
				}
			}
			return n, nil
		}})
		deleted += n
		if err != nil {
			return deleted, fmt.Errorf("gc sweep: %w", err)
		}
	}
	if deleted > 0 {
		s.log.Debug("persist gc swept", "records", deleted)
	}
	return deleted, nil
}

// sweepPick returns the finished records to delete: delivered ones past KeepDone, then the
// oldest beyond KeepDoneMax; dead ones likewise by KeepDead and KeepDeadMax. With
// HoldUnreported, a record whose outcome was not reported yet is never picked.
func (s *Store) sweepPick(now time.Time) []string {
	var done, dead []finishedEntry
	s.mu.Lock()
	for _, q := range s.idx.queues {
		for _, e := range q.entries {
			if s.opts.HoldUnreported && !e.reported {
				continue
			}
			switch e.state {
			case StateDelivered:
				done = append(done, finishedEntry{e.id, e.finished})
			case StateDead:
				dead = append(dead, finishedEntry{e.id, e.finished})
			}
		}
	}
	for id, r := range s.idx.done { // reported, with HoldUnreported
		if r.dead {
			dead = append(dead, finishedEntry{id, fromUnixNano(r.finished)})
		} else {
			done = append(done, finishedEntry{id, fromUnixNano(r.finished)})
		}
	}
	s.mu.Unlock()
	old := pickOld(nil, done, now.Add(-s.opts.KeepDone), s.opts.KeepDoneMax)
	return pickOld(old, dead, now.Add(-s.opts.KeepDead), s.opts.KeepDeadMax)
}

type finishedEntry struct {
	id string
	at time.Time
}

// pickOld adds to old the ids of es finished before cutoff, then the oldest beyond max.
func pickOld(old []string, es []finishedEntry, cutoff time.Time, max int) []string {
	slices.SortFunc(es, func(a, b finishedEntry) int {
		if c := a.at.Compare(b.at); c != 0 {
			return c
		}
		return strings.Compare(a.id, b.id)
	})
	over := len(es) - max
	for i, e := range es {
		if i >= over && !e.at.Before(cutoff) {
			break
		}
		old = append(old, e.id)
	}
	return old
}

// flushMemtables writes the memtables out as tables, so that compaction sees what was deleted
// in them. Badger has no call for just that; DropPrefix flushes every memtable first, so the
// committer writes a marker key and drops it. DropPrefix refuses concurrent writes; in the
// committer there are none (and GC holds gcMu, so no value-log GC rewrites either).
func (s *Store) flushMemtables() error {
	_, err := s.submit(context.Background(), &request{
		stage: func(b *batch) (int, error) { return 0, b.set(flushKey, nil) },
		after: func() error { return s.db.DropPrefix(flushKey) },
	})
	if err != nil {
		return fmt.Errorf("flush memtables: %w", err)
	}
	return nil
}

// reclaim flushes the memtables and flattens the LSM tree when much was deleted, then runs
// value-log GC.
func (s *Store) reclaim() error {
	s.mu.Lock()
	live := s.idx.bytes
	s.mu.Unlock()
	// Flattening rewrites what is live; doing it only once at least half as much was deleted
	// keeps its cost in proportion to the space it gives back.
	if freed := s.freed.Load(); freed >= s.flattenAfter && freed >= live/2 {
		s.freed.Add(-freed)
		if err := s.flushMemtables(); err != nil {
			return err
		}
		if err := s.flatten(); err != nil {
			return err
		}
	}
	return s.vlogGC()
}

func (s *Store) flatten() error {
	s.life.RLock()
	defer s.life.RUnlock()
	if s.closed {
		return ErrClosed
	}
	if err := s.db.Flatten(1); err != nil {
		return fmt.Errorf("flatten: %w", err)
	}
	return nil
}

// vlogGC rewrites value-log files until Badger finds none worth it.
func (s *Store) vlogGC() error {
	s.life.RLock()
	defer s.life.RUnlock()
	if s.closed {
		return ErrClosed
	}
	for range 100 {
		err := s.db.RunValueLogGC(0.5)
		if errors.Is(err, badger.ErrNoRewrite) || errors.Is(err, badger.ErrRejected) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("value log gc: %w", err)
		}
	}
	return nil
}
