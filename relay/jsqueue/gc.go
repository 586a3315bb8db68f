package jsqueue

import (
	"context"
	"time"

	"github.com/hookrelay/hookrelay/persist"
)

// sweepLoop deletes finished webhooks once keep_done (delivered) or keep_dead (dead in a
// group) has passed, every GCInterval until ctx ends. Every relay sweeps; deleting what
// another relay deleted first is harmless.
func (q *Queue) sweepLoop(ctx context.Context) {
	t := time.NewTicker(q.opts.GCInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			q.sweep(ctx)
		}
	}
}

func (q *Queue) sweep(ctx context.Context) {
	now := time.Now()
	for _, id := range q.m.expired(now, q.opts.KeepDone, q.opts.KeepDead) {
		if err := q.Delete(ctx, "", id); err != nil && ctx.Err() == nil {
			q.log.Warn("jetstream queue: retention sweep", "id", id, "err", err)
		}
	}
	// Delete markers outlive their webhooks by 30 minutes, so relays that were away see them.
	if err := q.kv.PurgeDeletes(ctx); err != nil && ctx.Err() == nil {
		q.log.Warn("jetstream queue: purge delete markers", "err", err)
	}
}

// expired lists the webhooks finished in every group longer ago than keepDone, or keepDead
// when dead in one.
func (m *mirror) expired(now time.Time, keepDone, keepDead time.Duration) []string {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []string
	for _, list := range m.byEp {
		for _, e := range list {
			if m.unfinishedLocked(e) {
				continue
			}
			var fin int64
			keep := keepDone
			for _, g := range m.groupsLocked(e) {
				s := e.slot(g)
				if s.g.Deleted {
					continue
				}
				fin = max(fin, s.g.Finished)
				if s.g.State == persist.StateDead {
					keep = keepDead
				}
			}
			if fin < now.Add(-keep).UnixNano() {
				out = append(out, e.meta.ID)
			}
		}
	}
	return out
}
