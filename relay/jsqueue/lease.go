package jsqueue

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"time"

	"github.com/hookrelay/hookrelay/persist"
	"github.com/nats-io/nats.go/jetstream"
)

// write stores group's state of id as g if its key is still at rev (0: no key yet), and
// gives errConflict when another writer (here or on another relay) came first.
func (q *Queue) write(ctx context.Context, group, id string, g gstate, rev uint64) error {
	nrev, err := q.kv.Update(ctx, stateKey(group, id), g.encode(), rev)
	if errors.Is(err, jetstream.ErrKeyRevisionMismatch) || errors.Is(err, jetstream.ErrKeyExists) {
		return errConflict
	}
	if err != nil {
		return fmt.Errorf("write state: %w", err)
	}
	q.m.set(id, group, slot{g: g, rev: nrev})
	return nil
}

// refresh reads group's state of id from the bucket into the mirror, after a conflict said
// the mirror is behind. KV reads may be served by a replica that is behind too (direct
// gets): "not found" then proves nothing, and the watch brings delete markers anyway.
func (q *Queue) refresh(ctx context.Context, group, id string) {
	if e, err := q.kv.Get(ctx, stateKey(group, id)); err == nil {
		q.onState(e)
	}
}

// mutate changes group's state of id with f (which says whether there is anything to write)
// and writes it, reading the state again after a conflicting write.
func (q *Queue) mutate(ctx context.Context, group, id string, f func(g *gstate, now time.Time) (bool, error)) error {
	for try := 0; ; try++ {
		s, ok := q.m.get(id, group)
		if !ok || s.slot.g.Deleted {
			return fmt.Errorf("record %s: %w", id, persist.ErrNotFound)
		}
		g := s.slot.g
		write, err := f(&g, time.Now())
		if err != nil || !write {
			return err
		}
		err = q.write(ctx, group, id, g, s.slot.rev)
		if errors.Is(err, errConflict) && try < 20 {
			q.refresh(ctx, group, id)
			time.Sleep(time.Duration(try) * 2 * time.Millisecond) // let a lagging replica catch up
			continue
		}
		return err
	}
}

func (q *Queue) hold(group, id string, tok uint64) {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.held[heldKey{group, id}] = tok
}

func (q *Queue) unhold(group, id string) {
	q.mu.Lock()
	defer q.mu.Unlock()
	delete(q.held, heldKey{group, id})
}

// take leases c for group until now+ttl; errConflict when another holder came first.
func (q *Queue) take(ctx context.Context, group string, c snap, now time.Time, ttl time.Duration) (*persist.Record, error) {
	w := leaseOf(group, c, now, ttl)
	if err := q.write(ctx, group, w.id, w.g, w.rev); err != nil {
		return nil, err
	}
	return q.leased(ctx, c, w)
}

// leaseOf is the write that leases c for group until now+ttl, with a token of its own.
func leaseOf(group string, c snap, now time.Time, ttl time.Duration) stateWrite {
	g := c.slot.g
	g.State = persist.StateLeased
	g.Token = rand.Uint64() | 1
	g.Until = now.Add(ttl).UnixNano()
	return stateWrite{group: group, id: c.meta.ID, g: g, rev: c.slot.rev}
}

// leased is c as a record once lease w is written: held (for Close), with its body.
func (q *Queue) leased(ctx context.Context, c snap, w stateWrite) (*persist.Record, error) {
	q.hold(w.group, w.id, w.g.Token)
	r := c.meta.record()
	fill(&r, &w.g, persist.StateLeased)
	switch {
	case c.body != nil:
		r.Body = bytes.Clone(c.body)
	case c.meta.Parts == 0:
		body, err := q.inlineBody(ctx, c.seq)
		if err != nil {
			q.release(ctx, w.group, w.id, w.g.Token)
			return nil, err
		}
		r.Body = body
	}
	return &r, nil
}

// LeaseBatch is how many webhooks a relay session leases at once (relay.LeaseBatcher): each
// is a replicated write, issued together, and a round of them takes a commit's time however
// many it holds. The bodies of a round are in memory together, so this bounds them too.
func (q *Queue) LeaseBatch() int { return 32 }

// Lease leases up to max of endpoint's ready, due webhooks for group, in stream order.
func (q *Queue) Lease(ctx context.Context, group, endpoint string, max int, ttl time.Duration) ([]*persist.Record, error) {
	if err := q.checkGroupOf(group, endpoint); err != nil {
		return nil, fmt.Errorf("lease: %w", err)
	}
	now := time.Now()
	// A few more candidates than wanted, for those another relay takes first: copying every
	// ready one of a long backlog at each call costs more than the leases.
	cands := q.m.pick(endpoint, group, func(g *gstate) bool {
		return g.effective(now) == persist.StateReady && g.Next <= now.UnixNano()
	}, 4*max)
	// The candidates still wanted are taken at once, in one batch of writes; of those
	// another relay took first, as many more are tried next.
	var out []*persist.Record
	for len(out) < max && len(cands) > 0 {
		chunk := cands[:min(max-len(out), len(cands))]
		cands = cands[len(chunk):]
		ws := make([]stateWrite, len(chunk))
		for i, c := range chunk {
			ws[i] = leaseOf(group, c, now, ttl)
		}
		errs := q.writeAll(ctx, ws) // one commit for the round (batch.go)
		recs := make([]*persist.Record, len(chunk))
		inParallel(len(chunk), func(i int) {
			switch {
			case errs[i] == nil:
				recs[i], errs[i] = q.leased(ctx, chunk[i], ws[i])
			case errors.Is(errs[i], errConflict):
				q.refresh(ctx, group, chunk[i].meta.ID) // another relay has it
			}
		})
		var failed error
		for i := range chunk {
			switch {
			case errs[i] == nil:
				out = append(out, recs[i])
			case !errors.Is(errs[i], errConflict) && failed == nil:
				failed = errs[i]
			}
		}
		if failed != nil && len(out) == 0 {
			return nil, fmt.Errorf("lease: %w", failed)
		}
		if failed != nil {
			return out, nil
		}
	}
	return out, nil
}

// LeaseHead leases endpoint's head for group: its oldest webhook neither acked nor finished.
func (q *Queue) LeaseHead(ctx context.Context, group, endpoint string, ttl time.Duration) (*persist.Record, time.Time, error) {
	if err := q.checkGroupOf(group, endpoint); err != nil {
		return nil, time.Time{}, fmt.Errorf("lease head: %w", err)
	}
	for try := 0; try < 10; try++ {
		now := time.Now()
		h, ok, behind := q.m.head(endpoint, group)
		if behind > 0 {
			// Appended here, not yet delivered by the watch: wait for it to get there
			// (the endpoint is woken then, should the wait end first).
			if !q.m.waitThrough(ctx, behind, time.Second) {
				return nil, time.Time{}, nil
			}
			continue
		}
		if !ok {
			return nil, time.Time{}, nil
		}
		if h.slot.g.effective(now) == persist.StateLeased {
			return nil, time.Time{}, nil
		}
		if h.slot.g.Next > now.UnixNano() {
			return nil, time.Unix(0, h.slot.g.Next), nil
		}
		r, err := q.take(ctx, group, h, now, ttl)
		if errors.Is(err, errConflict) {
			q.refresh(ctx, group, h.meta.ID)
			continue
		}
		if err != nil {
			return nil, time.Time{}, fmt.Errorf("lease head: %w", err)
		}
		return r, time.Time{}, nil
	}
	return nil, time.Time{}, nil // contended: the wake-up after the other's change retries
}

// head is the first of endpoint's webhooks that is ready or leased for group. None while
// that one is beyond what the stream watch delivered (one appended here): another relay may
// have appended one before it that this relay has not seen yet, and stream order is the
// order of an ordered endpoint. behind is then its sequence, to wait for (waitThrough).
func (m *mirror) head(endpoint, group string) (h snap, ok bool, behind uint64) {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, e := range m.open[endpoint] {
		s := e.slot(group)
		if !s.g.Deleted && (s.g.State == persist.StateReady || s.g.State == persist.StateLeased) {
			if e.seq > m.through {
				return snap{}, false, e.seq
			}
			return snap{e.seq, e.meta, s, e.body}, true, 0
		}
	}
	return snap{}, false, 0
}

// release makes id ready again if tok is still its lease.
func (q *Queue) release(ctx context.Context, group, id string, tok uint64) error {
	defer q.unhold(group, id)
	return q.mutate(ctx, group, id, func(g *gstate, _ time.Time) (bool, error) {
		if g.State != persist.StateLeased || g.Token != tok {
			return false, nil
		}
		g.State, g.Token, g.Until = persist.StateReady, 0, 0
		return true, nil
	})
}

// Release makes the given leases ready at once; leases no longer current are left alone.
func (q *Queue) Release(ctx context.Context, group string, leases map[string]uint64) error {
	if err := q.checkGroup(group, false); err != nil {
		return fmt.Errorf("release: %w", err)
	}
	for id, tok := range leases {
		if err := q.release(ctx, group, id, tok); err != nil && !errors.Is(err, persist.ErrNotFound) {
			return fmt.Errorf("release: %w", err)
		}
	}
	return nil
}

// Extend keeps the given leases ttl longer and returns those no longer current.
func (q *Queue) Extend(ctx context.Context, group string, leases map[string]uint64, ttl time.Duration) ([]string, error) {
	if err := q.checkGroup(group, false); err != nil {
		return nil, fmt.Errorf("extend: %w", err)
	}
	ids := make([]string, 0, len(leases))
	for id := range leases {
		ids = append(ids, id)
	}
	gone := make([]bool, len(ids))
	errs := q.mutateAll(ctx, group, ids, func(i int, g *gstate, now time.Time) (bool, error) {
		if g.State != persist.StateLeased || g.Token != leases[ids[i]] {
			gone[i] = true
			return false, nil
		}
		g.Until = now.Add(ttl).UnixNano()
		return true, nil
	})
	var lost []string
	var failed error
	for i, id := range ids {
		switch {
		case errors.Is(errs[i], persist.ErrNotFound):
			gone[i] = true
		case errs[i] != nil && failed == nil:
			failed = errs[i]
		}
		if gone[i] {
			lost = append(lost, id)
		}
	}
	if failed != nil {
		return lost, fmt.Errorf("extend: %w", failed)
	}
	return lost, nil
}

// Ready returns a channel closed on the endpoint's next change, and when its earliest retry
// or lease end is due.
func (q *Queue) Ready(group, endpoint string) (<-chan struct{}, time.Time) {
	if err := q.checkGroupOf(group, endpoint); err != nil {
		if errors.Is(err, persist.ErrClosed) {
			return q.m.waiter(endpoint), time.Time{}
		}
		return nil, time.Time{}
	}
	wake := q.m.waiter(endpoint)
	return wake, q.m.due(endpoint, group, time.Now())
}
