package jsqueue

import "time"

// StateRevision is the bucket revision this queue's mirror holds for group's state of id (0:
// none known), for tests that check it against the bucket.
func (q *Queue) StateRevision(group, id string) uint64 {
	s, _ := q.m.get(id, group)
	return s.slot.rev
}

// Batches says whether state writes go as atomic batches.
func (q *Queue) Batches() bool { return q.batches }

// SetMarkerAge makes delete markers stay d (instead of 30 minutes) until the returned
// function puts it back.
func SetMarkerAge(d time.Duration) func() {
	was := markerAge
	markerAge = d
	return func() { markerAge = was }
}
