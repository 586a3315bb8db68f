package jsqueue

import (
	"cmp"
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/hookrelay/hookrelay/persist"
)

// record builds the Record of id: its state is the least advanced of its groups'.
func (m *mirror) record(id string, now time.Time) (r *persist.Record, seq uint64, parts int, ok bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	e, ok := m.byID[id]
	if !ok {
		return nil, 0, 0, false
	}
	return m.recordLocked(e, now), e.seq, e.meta.Parts, true
}

func (m *mirror) recordLocked(e *entry, now time.Time) *persist.Record {
	r := e.meta.record()
	r.Groups = map[string]persist.State{}
	best := -1
	for _, g := range m.groupsLocked(e) {
		s := e.slot(g)
		if s.g.Deleted {
			continue
		}
		st := s.g.effective(now)
		r.Groups[g] = st
		if rk := persist.StateRank(st); best < 0 || rk < best {
			best = rk
			fill(&r, &s.g, st)
		}
	}
	return &r
}

// fill sets r's delivery fields from one group's state g, in state st.
func fill(r *persist.Record, g *gstate, st persist.State) {
	r.State = st
	r.Attempts = g.Attempts
	r.NextAttempt = unixTime(g.Next)
	r.Deliveries = slices.Clone(g.Dls)
	r.DeadReason = g.Reason
	r.FinishedAt = unixTime(g.Finished)
	r.Holder = g.Holder
	r.Replay = g.Replay
	r.Lease = 0
	if st == persist.StateLeased {
		r.Lease = g.Token
	}
}

func unixTime(ns int64) time.Time {
	if ns == 0 {
		return time.Time{}
	}
	return time.Unix(0, ns)
}

// List returns the webhooks matching f, newest (in stream order) first, without bodies.
func (q *Queue) List(_ context.Context, f persist.Filter) ([]*persist.Record, error) {
	if err := q.check(); err != nil {
		return nil, fmt.Errorf("list: %w", err)
	}
	limit := f.Limit
	if limit <= 0 {
		limit = 100
	}
	now := time.Now()
	m := q.m
	m.mu.Lock()
	defer m.mu.Unlock()
	var list []*entry
	if f.Queue != "" {
		list = m.byEp[f.Queue]
	} else {
		for _, l := range m.byEp {
			list = append(list, l...)
		}
		slices.SortFunc(list, func(a, b *entry) int { return cmp.Compare(a.seq, b.seq) })
	}
	out := []*persist.Record{}
	for i := len(list) - 1; i >= 0 && len(out) < limit; i-- {
		e := list[i]
		if !f.Since.IsZero() && e.meta.At < f.Since.UnixNano() {
			continue
		}
		r := m.recordLocked(e, now)
		if f.Group != "" { // that group's copy, as the Badger queue lists it
			st, ok := r.Groups[f.Group]
			if !ok {
				continue
			}
			s := e.slot(f.Group)
			fill(r, &s.g, st)
			r.Groups = map[string]persist.State{f.Group: st}
		}
		if f.State != 0 && r.State != f.State && !(f.State == persist.StateDead && f.Group == "" && anyDead(r.Groups)) {
			continue
		}
		out = append(out, r)
	}
	return out, nil
}

// Stats describes each endpoint that has webhooks, by name.
func (q *Queue) Stats(context.Context) ([]persist.QueueStats, error) {
	if err := q.check(); err != nil {
		return nil, fmt.Errorf("stats: %w", err)
	}
	m := q.m
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []persist.QueueStats
	for ep := range m.byEp {
		st := persist.QueueStats{Queue: ep, Pending: len(m.open[ep]), Bytes: m.openBytes[ep], Dead: m.dead[ep]}
		var oldest int64
		for _, e := range m.open[ep] { // in stream order, which other relays' clocks may not follow
			if oldest == 0 || e.meta.At < oldest {
				oldest = e.meta.At
			}
		}
		if oldest != 0 {
			st.Oldest = time.Unix(0, oldest)
		}
		out = append(out, st)
	}
	slices.SortFunc(out, func(a, b persist.QueueStats) int { return cmp.Compare(a.Queue, b.Queue) })
	return out, nil
}

// anyDead says whether a group has the webhook dead: the dead letters list it.
func anyDead(groups map[string]persist.State) bool {
	for _, st := range groups {
		if st == persist.StateDead {
			return true
		}
	}
	return false
}
