package agent

import (
	"fmt"
	"time"

	"github.com/hookrelay/hookrelay/persist"
	"github.com/hookrelay/hookrelay/protocol"
)

// outcome is the report of webhook wid of endpoint, and the ids of the copies it stands for;
// a nil report while a copy is not finished. rec, when set, is one of its copies as just
// read (the only one when the endpoint has one route, or rec's route is gone from the config).
//
// A webhook with several routes is delivered once every route delivered or filtered it, and
// dead once all finished and any died; the report then carries the first dead copy's status
// and reason (prefixed by its route), and the attempts of all copies.
func (s *session) outcome(endpoint, wid string, rec *persist.Record) (*protocol.Report, []string, error) {
	rs := s.env.routes
	if len(rs.byEndpoint[endpoint]) <= 1 || (rec != nil && rs.byQueue[rec.Queue] == nil) {
		if rec == nil {
			recs, err := s.env.store.Peek(rs.copyIDs(endpoint, wid)...)
			if err != nil {
				return nil, nil, fmt.Errorf("read copies: %w", err)
			}
			if len(recs) == 0 {
				return nil, nil, nil
			}
			rec = recs[0]
		}
		rep := reportFor(rec, s.exposes(rec.Queue))
		if rep != nil {
			rep.ID = wid
		}
		return rep, []string{rec.ID}, nil
	}
	cs, err := rs.copies(s.env.store, endpoint, wid)
	if err != nil {
		return nil, nil, fmt.Errorf("read copies: %w", err)
	}
	if !finishedAll(cs) {
		return nil, nil, nil
	}
	var base *persist.Record
	var baseRoute string
	ids := make([]string, len(cs))
	attempts := 0
	var at time.Time
	for i, c := range cs {
		ids[i] = c.rec.ID
		attempts += c.rec.Attempts
		if c.rec.FinishedAt.After(at) {
			at = c.rec.FinishedAt
		}
		// The first dead copy, else the first delivered (not filtered) one, else any.
		if base == nil || rank(c.rec) < rank(base) {
			base, baseRoute = c.rec, c.d.r.Name
		}
	}
	rep := reportFor(base, s.exposes(base.Queue))
	rep.ID, rep.Attempts = wid, attempts
	if !at.IsZero() {
		rep.At = at
	}
	if rep.Outcome == protocol.OutcomeDead {
		rep.Error = "route " + baseRoute + ": " + rep.Error
	}
	return rep, ids, nil
}
