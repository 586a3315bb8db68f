package persist

import (
	"context"
	"fmt"
	"slices"
	"time"
)

// Append stores r durably (fsynced, group commit) and returns only then. It assigns r.ID when
// empty (the committer does, in commit order: an Append that returned got a smaller id than
// any later committed), r.ReceivedAt when zero, and sets r.State = StateReady, r.Size. Errors: ErrExists when
// r.ID is already stored, ErrQuota over the queue's quota, ErrDiskFull, ErrClosed, ErrInvalid
// for an empty queue or an id with characters other than A-Z a-z 0-9 - _ . ~ (or over 128).
// A ctx that ends before the committer took r abandons it; r.Body must not change until
// Append returns.
func (s *Store) Append(ctx context.Context, r *Record) error {
	return s.appendCopies(ctx, r, nil)
}

// appendCopies is Append with copies (AppendCopies).
func (s *Store) appendCopies(ctx context.Context, r *Record, copies []Copy) error {
	if r.Queue == "" && len(copies) == 0 {
		return fmt.Errorf("append: %w: empty queue", ErrInvalid)
	}
	now := time.Now()
	if r.ID != "" && !validID(r.ID) {
		return fmt.Errorf("append: %w: id %q", ErrInvalid, r.ID)
	}
	if r.ReceivedAt.IsZero() {
		r.ReceivedAt = now
	}
	r.State = StateReady
	bodyLen := bodyLenOf(r) // see AppendBody
	r.BodyLen = int64(bodyLen)
	r.Size = recordSize(r)
	r.FinishedAt = time.Time{}
	r.Deliveries = lastDeliveries(r.Deliveries)
	meta := encodeMeta(r, bodyLen)
	var cached []byte // the recent cache's own copy: the caller may reuse r.Body afterwards
	switch {
	case len(r.Body) > recentBodyMax:
	case s.opts.SharedBodies:
		cached = r.Body
	default:
		cached = slices.Clone(r.Body)
	}
	recs, metas, err := copyRecords(r, bodyLen, copies)
	if err != nil {
		return fmt.Errorf("append to %s: %w", r.Queue, err)
	}
	_, err = s.submit(ctx, &request{
		bytes: len(r.Body) * (1 + len(copies)),
		stage: func(b *batch) (int, error) { return 0, b.insert(r, meta, cached, recs, metas) },
	})
	if err != nil {
		if r.ID == "" { // never staged
			return fmt.Errorf("append to %s: %w", r.Queue, err)
		}
		return fmt.Errorf("append %s: %w", r.ID, err)
	}
	return nil
}

// Ack marks records Acked (relay: the agent holds them). Acking an acked record does nothing;
// a finished one gives ErrState. Every id is tried; the first error is returned.
func (s *Store) Ack(ids ...string) error {
	return s.each("ack", ids, func(b *batch, id string) error { return b.ack(id, "") })
}

func (b *batch) ack(id, holder string) error {
	return b.modify(id, func(st *staged) error {
		switch {
		case st.rec.State == StateAcked && st.rec.Holder == holder:
			return errNoop
		case st.rec.State == StateReady, st.rec.State == StateAcked:
			st.rec.State = StateAcked
			st.rec.Holder = holder
			return nil
		}
		return ErrState
	})
}

// Nack returns a record (leased, ready or acked) to Ready, due at next. A non-nil d counts an
// attempt and is kept in Deliveries. A finished record gives ErrState.
func (s *Store) Nack(id string, next time.Time, d *Delivery) error {
	return s.each("nack", []string{id}, func(b *batch, id string) error { return b.nack(id, next, d) })
}

func (b *batch) nack(id string, next time.Time, d *Delivery) error {
	return b.modify(id, func(st *staged) error {
		if st.rec.State != StateReady && st.rec.State != StateAcked {
			return ErrState
		}
		st.rec.State = StateReady
		st.rec.NextAttempt = next
		addDelivery(st.rec, d)
		return nil
	})
}

// Complete finishes a record as StateDelivered or StateDead (with reason), recording d if set.
// Completing a record already in st does nothing (a repeated report); a record finished the
// other way takes the new outcome. Any other st gives ErrState.
func (s *Store) Complete(id string, st State, d *Delivery, reason string) error {
	if st != StateDelivered && st != StateDead {
		return fmt.Errorf("complete %s as %v: %w", id, st, ErrState)
	}
	return s.each("complete", []string{id}, func(b *batch, id string) error {
		return b.complete(id, st, d, reason)
	})
}

func (b *batch) complete(id string, st State, d *Delivery, reason string) error {
	return b.modify(id, func(sr *staged) error {
		if sr.rec.State == st {
			return errNoop
		}
		finish(sr.rec, st, reason, b.now)
		addDelivery(sr.rec, d)
		return nil
	})
}

// Change is one state change for Apply: an Ack (State StateAcked, by Holder), a Nack (State StateReady
// with a non-zero Next, due then, with Delivery as Nack takes it) or a Complete (State StateDelivered or
// StateDead, with Delivery and Reason as Complete takes them).
type Change struct {
	ID       string
	State    State
	Next     time.Time // Nack only; required
	Delivery *Delivery
	Reason   string
	Holder   string // Ack only: the agent id that acked it (Record.Holder)
}

// Apply makes the changes in order as one request, so that they share one group commit
// however many they are, and returns one error per change (nil when it was applied or had
// nothing to do), with the same meaning as Ack's, Nack's and Complete's. A failed commit fails them
// all.
func (s *Store) Apply(changes []Change) []error {
	errs := make([]error, len(changes))
	if len(changes) == 0 {
		return errs
	}
	_, err := s.submit(context.Background(), &request{stage: func(b *batch) (int, error) {
		for i, c := range changes {
			switch c.State {
			case StateAcked:
				errs[i] = b.ack(c.ID, c.Holder)
			case StateReady:
				if c.Next.IsZero() {
					errs[i] = fmt.Errorf("record %s: nack without a next attempt time: %w", c.ID, ErrState)
					break
				}
				errs[i] = b.nack(c.ID, c.Next, c.Delivery)
			case StateDelivered, StateDead:
				errs[i] = b.complete(c.ID, c.State, c.Delivery, c.Reason)
			default:
				errs[i] = fmt.Errorf("record %s: change to %v: %w", c.ID, c.State, ErrState)
			}
		}
		return 0, nil
	}})
	if err != nil {
		for i := range errs {
			errs[i] = fmt.Errorf("apply: %w", err)
		}
	}
	return errs
}

// Replay makes a finished or acked record Ready again, due now, with Replay set; Attempts are
// kept. A record still ready or leased gives ErrState.
func (s *Store) Replay(id string) error {
	return s.each("replay", []string{id}, func(b *batch, id string) error {
		return b.modify(id, func(st *staged) error { return replay(st.rec, b.now) })
	})
}

// ReplayDead replays every dead record (of queue, or all when queue is ""); returns the count.
func (s *Store) ReplayDead(queue string) (int, error) {
	n, err := s.modifyMatching(queue, func(_ time.Time, e *entry) bool { return e.state == StateDead }, nil,
		func(st *staged, now time.Time) error {
			if st.rec.State != StateDead {
				return errNoop
			}
			return replay(st.rec, now)
		})
	if err != nil {
		return n, fmt.Errorf("replay dead: %w", err)
	}
	return n, nil
}

// Expire moves Ready records of queue (all queues when "") received before now-maxAge to
// Dead ("retention expired"); leased ones are left to their holder. Returns the count.
func (s *Store) Expire(queue string, maxAge time.Duration) (int, error) {
	for _, name := range s.diskQueues(queue, readyTag) {
		s.freshenColdOldest(name)
	}
	n, err := s.modifyMatching(queue, func(now time.Time, e *entry) bool {
		return e.state == StateReady && !e.leased && e.received.Before(now.Add(-maxAge))
	}, func(now time.Time, v readyVal) bool {
		return v.received.Before(now.Add(-maxAge))
	}, func(st *staged, now time.Time) error {
		if st.rec.State != StateReady || st.leased {
			return errNoop
		}
		finish(st.rec, StateDead, "retention expired", now)
		return nil
	})
	if err != nil {
		return n, fmt.Errorf("expire %s: %w", queue, err)
	}
	return n, nil
}

// modifyMatching changes, in one request, the records of queue (all when "") whose index entry
// matches at the batch's time, and the cold ones (Ready on disk only) whose ready value
// coldMatch matches (nil: none); change re-checks each against the batch (errNoop leaves it).
// Returns how many it changed.
func (s *Store) modifyMatching(queue string, match func(now time.Time, e *entry) bool, coldMatch func(now time.Time, v readyVal) bool, change func(st *staged, now time.Time) error) (int, error) {
	return s.submit(context.Background(), &request{stage: func(b *batch) (int, error) {
		n := 0
		sel := s.pick(queue, func(e *entry) bool { return match(b.now, e) })
		if coldMatch != nil {
			cold, err := s.pickCold(queue, func(v readyVal) bool { return coldMatch(b.now, v) })
			if err != nil {
				return 0, err
			}
			sel = append(sel, cold...)
		}
		for _, l := range sel {
			changed := false
			err := b.modify(l.id, func(st *staged) error {
				err := change(st, b.now)
				changed = err == nil
				return err
			})
			if err != nil {
				return n, err
			}
			if changed {
				n++
			}
		}
		return n, nil
	}})
}

// Delete removes a record (in any state, leased too) and its body.
func (s *Store) Delete(id string) error {
	return s.each("delete", []string{id}, func(b *batch, id string) error {
		return b.remove(id, nil)
	})
}

// MarkReported records that a finished record's outcome reached the relay (agent). A record
// not finished gives ErrState.
func (s *Store) MarkReported(ids ...string) error {
	return s.each("mark reported", ids, func(b *batch, id string) error {
		return b.modify(id, func(st *staged) error {
			switch {
			case st.rec.State != StateDelivered && st.rec.State != StateDead:
				return ErrState
			case st.rec.Reported:
				return errNoop
			}
			st.rec.Reported = true
			return nil
		})
	})
}

// each runs fn for every id in one request; every id is tried and the first error returned.
func (s *Store) each(what string, ids []string, fn func(b *batch, id string) error) error {
	if len(ids) == 0 {
		return nil
	}
	_, err := s.submit(context.Background(), &request{stage: func(b *batch) (int, error) {
		var first error
		for _, id := range ids {
			if err := fn(b, id); err != nil && first == nil {
				first = err
			}
		}
		return 0, first
	}})
	if err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	return nil
}

func finish(r *Record, st State, reason string, now time.Time) {
	r.State = st
	r.FinishedAt = now
	r.Reported = false
	r.Replay = false
	r.DeadReason = ""
	if st == StateDead {
		r.DeadReason = reason
	}
}

func replay(r *Record, now time.Time) error {
	switch r.State {
	case StateAcked, StateDelivered, StateDead:
	default:
		return ErrState
	}
	r.State = StateReady
	r.NextAttempt = now
	r.Replay = true
	r.Reported = false
	r.DeadReason = ""
	r.FinishedAt = time.Time{}
	return nil
}

// addDelivery counts an attempt and keeps its outcome, the newest MaxDeliveries of them.
// It builds a new slice: the old one may be the caller's.
func addDelivery(r *Record, d *Delivery) {
	if d == nil {
		return
	}
	r.Attempts++
	r.Deliveries = lastDeliveries(append(r.Deliveries[:len(r.Deliveries):len(r.Deliveries)], *d))
}

func lastDeliveries(ds []Delivery) []Delivery {
	if len(ds) > MaxDeliveries {
		return ds[len(ds)-MaxDeliveries:]
	}
	return ds
}
