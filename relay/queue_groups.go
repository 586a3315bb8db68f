package relay

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"

	"github.com/hookrelay/hookrelay/persist"
)

// The Badger queue's reads across groups: a webhook is the sum of its copies (queue_badger.go),
// its state the least advanced of theirs.

// knownGroups is every group one of eps declares (nil: any endpoint), default first. A group
// no longer declared is not looked at: its copies age out with retention.
func (q badgerQueue) knownGroups(eps []string) []string {
	gs := []string{DefaultGroup}
	if eps == nil {
		eps = []string{""} // GroupsFunc: every group
	}
	for _, ep := range eps {
		for _, g := range q.groups(ep) {
			if !slices.Contains(gs, g) {
				gs = append(gs, g)
			}
		}
	}
	return gs
}

// endpoints lists the endpoints the store has records of.
func (q badgerQueue) endpoints() []string {
	var eps []string
	for _, st := range q.st.Stats() {
		if ep, _ := splitQueue(st.Queue); !slices.Contains(eps, ep) {
			eps = append(eps, ep)
		}
	}
	return eps
}

// copyIDs lists the ids id's copies may have.
func (q badgerQueue) copyIDs(id string) []string {
	gs := q.knownGroups(nil)
	ids := make([]string, len(gs))
	for i, g := range gs {
		ids[i] = copyID(g, id)
	}
	return ids
}

// merged reads every copy of id with get into one record: the least advanced copy's, with
// Groups.
func (q badgerQueue) merged(id string, get func(string) (*persist.Record, error)) (*persist.Record, error) {
	var out *persist.Record
	groups := map[string]persist.State{}
	for _, cid := range q.copyIDs(id) {
		r, err := get(cid) // small bodies ride along (Get)
		if errors.Is(err, persist.ErrNotFound) {
			continue
		}
		if err != nil {
			return nil, err
		}
		_, g := splitID(cid)
		groups[g] = r.State
		if out == nil || persist.StateRank(r.State) < persist.StateRank(out.State) {
			if out != nil && r.Body == nil {
				r.Body = out.Body
			}
			out = r
		}
	}
	if out == nil {
		return nil, fmt.Errorf("get %s: %w", id, persist.ErrNotFound)
	}
	plain(out)
	out.Groups = groups
	return out, nil
}

func (q badgerQueue) Get(_ context.Context, id string) (*persist.Record, error) {
	return q.merged(id, q.st.Get)
}

// Meta is Get without the body (relay.MetaReader).
func (q badgerQueue) Meta(_ context.Context, id string) (*persist.Record, error) {
	return q.merged(id, q.st.Meta)
}

// List returns records matching f, newest first: with f.Group that group's copies, else
// each webhook once, merged; a State of dead selects a webhook dead in any group.
func (q badgerQueue) List(_ context.Context, f persist.Filter) ([]*persist.Record, error) {
	limit := f.Limit
	if limit <= 0 {
		limit = 100
	}
	eps := []string{f.Queue}
	if f.Queue == "" {
		eps = q.endpoints()
	}
	var groups []string
	if f.Group != "" {
		groups = []string{f.Group}
	} else {
		groups = q.knownGroups(eps)
	}
	if f.Group == "" && len(groups) == 1 {
		groups = []string{groups[0]} // one group: its copies are the webhooks, as they are
		f.Group = groups[0]
	}
	var copies []*persist.Record
	for _, ep := range eps {
		for _, g := range groups {
			sub := f
			sub.Queue, sub.Limit = queueName(ep, g), limit
			recs, err := q.st.List(sub)
			if err != nil {
				return nil, err
			}
			copies = append(copies, recs...)
		}
	}
	slices.SortFunc(copies, func(a, b *persist.Record) int { return cmp.Compare(b.ID, a.ID) })
	out := []*persist.Record{}
	seen := map[string]bool{}
	for _, c := range copies {
		if len(out) == limit {
			break
		}
		id, g := splitID(c.ID)
		if seen[id] {
			continue
		}
		seen[id] = true
		if f.Group != "" {
			plain(c)
			c.Groups = map[string]persist.State{g: c.State}
			out = append(out, c)
			continue
		}
		r, err := q.merged(id, q.st.Meta)
		if errors.Is(err, persist.ErrNotFound) {
			continue // gone meanwhile
		}
		if err != nil {
			return nil, err
		}
		r.Body = nil
		if f.State != 0 && r.State != f.State && !(f.State == persist.StateDead && anyDead(r.Groups)) {
			continue
		}
		out = append(out, r)
	}
	return out, nil
}

func anyDead(groups map[string]persist.State) bool {
	return slices.Contains(slices.Collect(maps.Values(groups)), persist.StateDead)
}

// Stats describes each endpoint, over its groups' copies: Pending, Dead and Bytes are the
// most any group has (each group's copies count against the quota apart), Oldest the oldest.
func (q badgerQueue) Stats(context.Context) ([]persist.QueueStats, error) {
	byEp := map[string]*persist.QueueStats{}
	var order []string
	for _, st := range q.st.Stats() {
		ep, _ := splitQueue(st.Queue)
		m := byEp[ep]
		if m == nil {
			m = &persist.QueueStats{Queue: ep}
			byEp[ep] = m
			order = append(order, ep)
		}
		m.Pending = max(m.Pending, st.Pending)
		m.Dead = max(m.Dead, st.Dead)
		m.Bytes = max(m.Bytes, st.Bytes)
		if !st.Oldest.IsZero() && (m.Oldest.IsZero() || st.Oldest.Before(m.Oldest)) {
			m.Oldest = st.Oldest
		}
	}
	slices.Sort(order)
	out := make([]persist.QueueStats, len(order))
	for i, ep := range order {
		out[i] = *byEp[ep]
	}
	return out, nil
}

// groupsFor is group, or the groups of id's copies that exist for "".
func (q badgerQueue) groupsFor(group, id string) []string {
	if group != "" {
		return []string{group}
	}
	r, err := q.merged(id, q.st.Meta)
	if err != nil {
		return []string{DefaultGroup} // the plain record says what is wrong
	}
	return slices.Sorted(maps.Keys(r.Groups))
}

func (q badgerQueue) Replay(_ context.Context, group, id string) error {
	if err := q.checkAnyGroup(group, true); err != nil {
		return fmt.Errorf("replay: %w", err)
	}
	return q.eachCopy(group, id, q.st.Replay) // every group where it was acked or finished
}

// eachCopy applies op to id's copy in group ("": in every group it has one): nil when op
// succeeded for any copy, else the first error.
func (q badgerQueue) eachCopy(group, id string, op func(id string) error) error {
	var first error
	n := 0
	for _, g := range q.groupsFor(group, id) {
		err := op(copyID(g, id))
		switch {
		case err == nil:
			n++
		case first == nil:
			first = err
		}
	}
	if n > 0 {
		return nil
	}
	return first
}

func (q badgerQueue) ReplayDead(_ context.Context, group, endpoint string) (int, error) {
	if err := q.checkAnyGroup(group, true); err != nil {
		return 0, fmt.Errorf("replay dead: %w", err)
	}
	eps := []string{endpoint}
	if endpoint == "" {
		eps = q.endpoints()
	}
	ids := map[string]bool{}
	for _, ep := range eps {
		groups := []string{group}
		if group == "" {
			groups = q.knownGroups([]string{ep})
		}
		for _, g := range groups {
			// Listed first, to count webhooks rather than copies.
			dead, err := q.st.List(persist.Filter{Queue: queueName(ep, g), State: persist.StateDead, Limit: 1 << 30})
			if err != nil {
				return len(ids), fmt.Errorf("replay dead: %w", err)
			}
			for _, r := range dead {
				if err := q.st.Replay(r.ID); err == nil {
					base, _ := splitID(r.ID)
					ids[base] = true
				}
			}
		}
	}
	return len(ids), nil
}

func (q badgerQueue) Delete(_ context.Context, group, id string) error {
	if err := q.checkAnyGroup(group, true); err != nil {
		return fmt.Errorf("delete: %w", err)
	}
	return q.eachCopy(group, id, q.st.Delete)
}
