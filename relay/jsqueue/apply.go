package jsqueue

import (
	"context"
	"errors"
	"fmt"
	"math"
	"sync"
	"time"

	"github.com/hookrelay/hookrelay/persist"
	"github.com/nats-io/nats.go/jetstream"
)

// Apply makes each change to group's state: the first change of each webhook all in one
// batch (mutateAll), then the further changes of a webhook, in order, one by one.
func (q *Queue) Apply(ctx context.Context, group string, changes []persist.Change) []error {
	errs := make([]error, len(changes))
	if err := q.checkGroup(group, false); err != nil {
		for i := range errs {
			errs[i] = fmt.Errorf("apply: %w", err)
		}
		return errs
	}
	seen := make(map[string]bool, len(changes))
	var ids []string
	var first, rest []int // indexes of each webhook's first change, and of the others
	for i, c := range changes {
		if seen[c.ID] {
			rest = append(rest, i)
			continue
		}
		seen[c.ID] = true
		ids = append(ids, c.ID)
		first = append(first, i)
	}
	for k, err := range q.mutateAll(ctx, group, ids, func(k int, g *gstate, now time.Time) (bool, error) {
		return change(g, changes[first[k]], now)
	}) {
		errs[first[k]] = err
		if err == nil {
			q.unhold(group, ids[k])
		}
	}
	forEachID(changes, rest, func(i int) {
		c := changes[i]
		errs[i] = q.mutate(ctx, group, c.ID, func(g *gstate, now time.Time) (bool, error) { return change(g, c, now) })
		if errs[i] == nil {
			q.unhold(group, c.ID)
		}
	})
	return errs
}

// maxInFlight bounds the state writes one call has outstanding at once.
const maxInFlight = 32

// forEachID calls f for each index in idx (ascending): the changes of one id one after the
// other, in order, different ids at once (at most maxInFlight).
func forEachID(changes []persist.Change, idx []int, f func(i int)) {
	byID := map[string][]int{}
	var ids []string
	for _, i := range idx {
		c := changes[i]
		if _, ok := byID[c.ID]; !ok {
			ids = append(ids, c.ID)
		}
		byID[c.ID] = append(byID[c.ID], i)
	}
	inParallel(len(ids), func(k int) {
		for _, i := range byID[ids[k]] {
			f(i)
		}
	})
}

// inParallel calls f(0..n-1), at most maxInFlight at once, and returns when all returned.
func inParallel(n int, f func(i int)) {
	if n == 1 {
		f(0)
		return
	}
	sem := make(chan struct{}, maxInFlight)
	var wg sync.WaitGroup
	for i := range n {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			f(i)
		})
	}
	wg.Wait()
}

// change is persist's transitions for one group: an ack or a nack of a webhook not finished,
// an outcome of any (a repeated one changes nothing).
func change(g *gstate, c persist.Change, now time.Time) (bool, error) {
	open := g.State == persist.StateReady || g.State == persist.StateLeased || g.State == persist.StateAcked
	switch c.State {
	case persist.StateAcked:
		if g.State == persist.StateAcked && g.Holder == c.Holder {
			return false, nil
		}
		if !open {
			return false, fmt.Errorf("record %s: ack when %v: %w", c.ID, g.State, persist.ErrState)
		}
		g.State, g.Holder = persist.StateAcked, c.Holder
	case persist.StateReady:
		if c.Next.IsZero() {
			return false, fmt.Errorf("record %s: nack without a next attempt time: %w", c.ID, persist.ErrState)
		}
		if !open {
			return false, fmt.Errorf("record %s: nack when %v: %w", c.ID, g.State, persist.ErrState)
		}
		g.State, g.Next = persist.StateReady, c.Next.UnixNano()
		addDelivery(g, c.Delivery)
	case persist.StateDelivered, persist.StateDead:
		if g.State == c.State {
			return false, nil
		}
		g.State, g.Finished, g.Replay, g.Reason = c.State, now.UnixNano(), false, ""
		if c.State == persist.StateDead {
			g.Reason = c.Reason
		}
		addDelivery(g, c.Delivery)
	default:
		return false, fmt.Errorf("record %s: change to %v: %w", c.ID, c.State, persist.ErrState)
	}
	g.Token, g.Until = 0, 0
	return true, nil
}

// addDelivery counts an attempt and keeps the newest persist.MaxDeliveries outcomes, in a new
// slice (the old one is the mirror's).
func addDelivery(g *gstate, d *persist.Delivery) {
	if d == nil {
		return
	}
	g.Attempts++
	ds := append(append([]persist.Delivery(nil), g.Dls...), *d)
	g.Dls = ds[max(0, len(ds)-persist.MaxDeliveries):]
}

// groupsIn is group, or every declared group for "".
func (q *Queue) groupsIn(group string) []string {
	if group == "" {
		return q.groupsOf("")
	}
	return []string{group}
}

// replayIn replays id in the given groups where it is acked or finished; how many it replayed.
func (q *Queue) replayIn(ctx context.Context, groups []string, id string, only persist.State) (int, error) {
	n := 0
	for _, grp := range groups {
		done := false
		err := q.mutate(ctx, grp, id, func(g *gstate, now time.Time) (bool, error) {
			switch {
			case only != 0 && g.State != only:
				return false, nil
			case g.State == persist.StateAcked, g.State == persist.StateDelivered, g.State == persist.StateDead:
			default:
				return false, nil
			}
			g.State, g.Next, g.Replay, g.Reason, g.Finished, g.Token, g.Until =
				persist.StateReady, now.UnixNano(), true, "", 0, 0, 0
			done = true
			return true, nil
		})
		if err != nil {
			return n, err
		}
		if done {
			n++
		}
	}
	return n, nil
}

// Replay makes id ready again for group ("": every group where it is acked or finished).
func (q *Queue) Replay(ctx context.Context, group, id string) error {
	if err := q.checkGroup(group, true); err != nil {
		return fmt.Errorf("replay: %w", err)
	}
	n, err := q.replayIn(ctx, q.groupsIn(group), id, 0)
	if err != nil {
		return fmt.Errorf("replay: %w", err)
	}
	if n == 0 {
		return fmt.Errorf("replay %s: still ready or leased: %w", id, persist.ErrState)
	}
	return nil
}

// ReplayDead replays endpoint's ("": every endpoint's) dead webhooks for group ("": every
// group where they are dead) and returns how many webhooks it replayed.
func (q *Queue) ReplayDead(ctx context.Context, group, endpoint string) (int, error) {
	if err := q.checkGroup(group, true); err != nil {
		return 0, fmt.Errorf("replay dead: %w", err)
	}
	count := 0
	for _, id := range q.m.ids(endpoint) {
		n, err := q.replayIn(ctx, q.groupsIn(group), id, persist.StateDead)
		if err != nil && !errors.Is(err, persist.ErrNotFound) {
			return count, fmt.Errorf("replay dead: %w", err)
		}
		if n > 0 {
			count++
		}
	}
	return count, nil
}

// Expire makes endpoint's ("": every endpoint's) webhooks received before now-maxAge dead in
// every group where they still wait (leased ones are left to their holder).
func (q *Queue) Expire(ctx context.Context, endpoint string, maxAge time.Duration) (int, error) {
	if err := q.check(); err != nil {
		return 0, fmt.Errorf("expire: %w", err)
	}
	cutoff := time.Now().Add(-maxAge).UnixNano()
	count := 0
	for _, id := range q.m.idsBefore(endpoint, cutoff) {
		changed := false
		for _, grp := range q.groupsOf("") {
			err := q.mutate(ctx, grp, id, func(g *gstate, now time.Time) (bool, error) {
				if g.effective(now) != persist.StateReady {
					return false, nil
				}
				g.State, g.Finished, g.Reason, g.Replay, g.Token, g.Until =
					persist.StateDead, now.UnixNano(), "retention expired", false, 0, 0
				changed = true
				return true, nil
			})
			if err != nil && !errors.Is(err, persist.ErrNotFound) {
				return count, fmt.Errorf("expire %s: %w", endpoint, err)
			}
		}
		if changed {
			count++
		}
	}
	return count, nil
}

// Delete removes id from group; with "" (or once no group is left) the webhook itself.
func (q *Queue) Delete(ctx context.Context, group, id string) error {
	if err := q.checkGroup(group, true); err != nil {
		return fmt.Errorf("delete: %w", err)
	}
	s, ok := q.m.get(id, q.opts.Groups[0])
	if !ok {
		return fmt.Errorf("delete %s: %w", id, persist.ErrNotFound)
	}
	// Markers first: every relay's mirror drops the webhook on them, so none leases it while
	// its messages go.
	for _, grp := range q.groupsIn(group) {
		if err := q.kv.Delete(ctx, stateKey(grp, id)); err != nil {
			return fmt.Errorf("delete %s: %w", id, err)
		}
		q.deleted(stateKey(grp, id))
		q.unhold(grp, id)
		q.m.set(id, grp, slot{g: gstate{Deleted: true}, rev: math.MaxUint64})
	}
	if _, still := q.m.get(id, q.opts.Groups[0]); still {
		return nil // other groups keep it
	}
	if err := q.stream.DeleteMsg(ctx, s.seq); err != nil && !errors.Is(err, jetstream.ErrMsgNotFound) {
		return fmt.Errorf("delete %s: %w", id, err)
	}
	if s.meta.Parts > 0 {
		if err := q.stream.Purge(ctx, jetstream.WithPurgeSubject(q.prefix+".part."+id+".>")); err != nil {
			return fmt.Errorf("delete %s body: %w", id, err)
		}
	}
	return nil
}

// ids lists endpoint's ("": every endpoint's) webhook ids, in stream order per endpoint.
func (m *mirror) ids(endpoint string) []string { return m.idsBefore(endpoint, math.MaxInt64) }

// idsBefore lists the ids of endpoint's ("": every endpoint's) webhooks received before t.
func (m *mirror) idsBefore(endpoint string, t int64) []string {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []string
	for ep, list := range m.byEp {
		if endpoint != "" && ep != endpoint {
			continue
		}
		for _, e := range list {
			if e.meta.At < t {
				out = append(out, e.meta.ID)
			}
		}
	}
	return out
}
