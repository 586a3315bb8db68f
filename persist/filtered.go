package persist

// What the agent's routes need beside the queue operations: a route's filter finishes a copy
// without delivering it, and a webhook's copies (one record per route) are read together.

// CompleteFiltered finishes a record as Delivered without an attempt (Attempts and
// Deliveries stay as they were) and keeps reason in DeadReason: the agent's route filter
// passed it by, and a Delivered record with a reason is how the agent tells "filtered" from
// "delivered". It counts as delivered for retention and reports. Filtering a record already
// Delivered does nothing.
func (s *Store) CompleteFiltered(id, reason string) error {
	return s.each("complete filtered", []string{id}, func(b *batch, id string) error {
		return b.modify(id, func(sr *staged) error {
			if sr.rec.State == StateDelivered {
				return errNoop
			}
			finish(sr.rec, StateDelivered, "", b.now)
			sr.rec.DeadReason = reason
			return nil
		})
	})
}

// Peek returns the records with these ids that are stored, in the order given, without
// bodies (as List returns them: a leased one shows StateLeased). An id not stored is left out.
func (s *Store) Peek(ids ...string) ([]*Record, error) {
	sel := make([]listed, 0, len(ids))
	s.mu.Lock()
	for _, id := range ids {
		if !validID(id) {
			continue
		}
		e := s.idx.byID[id]
		sel = append(sel, listed{id, e != nil && e.leased})
	}
	s.mu.Unlock()
	return s.readListed(sel, len(sel))
}
