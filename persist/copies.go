package persist

import (
	"context"
	"errors"
	"fmt"
)

// Copies: one webhook, several independent records.
//
// The relay delivers each webhook once to each consumer group of its endpoint. On Badger a
// group's share is a record of its own (its queue, state, attempts, lease), a copy of the
// webhook written in the same commit as the original, so that a crash never leaves a group
// without its copy. A copy's id is the original's plus a suffix; its body is stored apart
// (a copy is deleted on its own when its group is done with it), which costs the body's
// bytes once per copy.

// Copy is one further record AppendCopies and AppendBodyCopies store with a record.
type Copy struct {
	Queue  string // the copy's queue
	Suffix string // the copy's id is the record's id + Suffix (A-Z a-z 0-9 - _ . ~)
	// Body is the copy's own staged body, for AppendBodyCopies: the same bytes as the
	// record's, written alongside it. Nil for AppendCopies.
	Body *BodyWriter
}

// AppendCopies is Append of r plus one record per copy, in one commit: all are stored or
// none. Each copy is r in its own queue, under r's id + its suffix, with its own body;
// r.ID is assigned as Append does. ErrQuota when any of their queues is over its quota.
// r with an empty Queue is not stored itself, only its copies (its id is theirs but for
// the suffix: a webhook none of whose copies is the plain id).
func (s *Store) AppendCopies(ctx context.Context, r *Record, copies []Copy) error {
	for _, c := range copies {
		if c.Body != nil {
			return errors.New("append: a copy's staged body needs AppendBodyCopies")
		}
	}
	return s.appendCopies(ctx, r, copies)
}

// AppendBodyCopies is AppendBody with copies: w holds r's body, each copy's Body the same
// bytes (write them all as the body arrives). Every writer ends here, appended or not.
func (s *Store) AppendBodyCopies(ctx context.Context, r *Record, w *BodyWriter, copies []Copy) error {
	abort := func() {
		w.Abort()
		for _, c := range copies {
			if c.Body != nil {
				c.Body.Abort()
			}
		}
	}
	for _, c := range copies {
		if c.Body == nil || c.Body == w || c.Body.n != w.n {
			abort()
			return errors.New("append: every copy needs its own staged body, of the same length")
		}
	}
	if !w.created { // small: stored inline, the copies too
		cs := make([]Copy, len(copies))
		for i, c := range copies {
			c.Body.Abort()
			cs[i] = Copy{Queue: c.Queue, Suffix: c.Suffix}
		}
		return s.appendBody(ctx, r, w, cs)
	}
	for _, c := range copies {
		if err := c.Body.finish(); err != nil {
			abort()
			return fmt.Errorf("append: %w", err)
		}
	}
	err := s.appendBody(ctx, r, w, copies)
	if err == nil && r.Queue == "" {
		s.removeBody(w.ref) // r is not stored: nothing names its file
	}
	for _, c := range copies {
		if err != nil {
			c.Body.Abort()
		} else {
			c.Body.end = true
		}
	}
	return err
}

// copyRecords builds the copies' records (their ID holds the suffix until the committer
// assigns r's) and metadata.
func copyRecords(r *Record, bodyLen int, copies []Copy) ([]*Record, [][]byte, error) {
	if len(copies) == 0 {
		return nil, nil, nil
	}
	recs := make([]*Record, len(copies))
	metas := make([][]byte, len(copies))
	for i, c := range copies {
		if c.Queue == "" || c.Suffix == "" || !validID("x"+c.Suffix) {
			return nil, nil, fmt.Errorf("%w: copy queue %q, suffix %q", ErrInvalid, c.Queue, c.Suffix)
		}
		cr := *r
		cr.Queue = c.Queue
		cr.ID = c.Suffix
		cr.Size = recordSize(&cr)
		if c.Body != nil {
			cr.parts = c.Body.ref
		}
		recs[i] = &cr
		metas[i] = encodeMeta(&cr, bodyLen)
	}
	return recs, metas, nil
}
