package jsqueue

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"slices"
	"time"

	"github.com/hookrelay/hookrelay/persist"
	"github.com/nats-io/nats.go/jetstream"
)

// Retention. Finished webhooks are deleted once keep_done (delivered) or keep_dead (dead in a
// group) has passed, or when more are kept than keep_done_max or keep_dead_max (the ones
// finished first go), by one relay of the cluster at a time: the sweeper, which holds the
// bucket's key x.sweep (its node and token, until when; taken over with a revision-checked
// write once it ran out). When every relay swept, every relay deleted every expired webhook:
// three delete markers per state key, three message deletes.
//
// A state key's delete marker stays markerAge, so that a relay whose watch was away for a
// while still sees the delete; then it is purged. Each relay purges the markers of its own
// deletes (it knows their keys and when). nats.go's PurgeDeletes did that by reading the
// whole bucket, values included, and sending a purge for every marker in it, young ones too:
// every relay, every minute, a cost that grows with everything the cluster keeps. It now runs
// only as a backstop, for markers a relay left when it died: when a relay becomes the sweeper
// and then every fullPurgeEvery.

// markerAge is how long a delete marker stays (a variable for tests).
var markerAge = 30 * time.Minute

// fullPurgeEvery is how often the sweeper purges every old marker of the bucket.
const fullPurgeEvery = 6 * time.Hour

const sweepKey = "x.sweep"

// sweepLock is the value of sweepKey.
type sweepLock struct {
	Node  string `json:"node"`
	Token uint64 `json:"tok"`
	Until int64  `json:"until"` // unix nanoseconds
}

// marker is a delete marker this relay wrote.
type marker struct {
	key string
	at  time.Time
}

// sweepLoop runs the retention sweep every GCInterval until ctx ends.
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
	if took, ok := q.takeSweep(ctx, now); ok {
		// Each delete is a round trip per group and one for the message: maxInFlight at once,
		// or a sweep of a busy cluster's day would take longer than the minute between sweeps.
		ids := q.m.expired(now, keep{q.opts.KeepDone, q.opts.KeepDead, q.opts.KeepDoneMax, q.opts.KeepDeadMax})
		inParallel(len(ids), func(i int) {
			if err := q.Delete(ctx, "", ids[i]); err != nil && !errors.Is(err, persist.ErrNotFound) && ctx.Err() == nil {
				q.log.Warn("jetstream queue: retention sweep", "id", ids[i], "err", err)
			}
		})
		if took || now.Sub(q.fullPurged) >= fullPurgeEvery {
			if err := q.kv.PurgeDeletes(ctx, jetstream.DeleteMarkersOlderThan(markerAge)); err != nil && ctx.Err() == nil {
				q.log.Warn("jetstream queue: purge delete markers", "err", err)
			} else {
				q.fullPurged = now
			}
		}
	}
	q.purgeMarkers(ctx, now)
}

// takeSweep makes this relay the sweeper until three sweeps from now, unless another relay
// is; took says that it was not the sweeper before.
func (q *Queue) takeSweep(ctx context.Context, now time.Time) (took, ok bool) {
	var rev uint64
	e, err := q.kv.Get(ctx, sweepKey)
	switch {
	case errors.Is(err, jetstream.ErrKeyNotFound):
	case err != nil:
		return false, false
	default:
		var l sweepLock
		if json.Unmarshal(e.Value(), &l) == nil && l.Token != q.sweepToken && l.Until > now.UnixNano() {
			return false, false // another relay's
		}
		rev = e.Revision()
	}
	v, _ := json.Marshal(sweepLock{Node: q.opts.NodeID, Token: q.sweepToken,
		Until: now.Add(3 * q.opts.GCInterval).UnixNano()})
	if rev == 0 {
		_, err = q.kv.Create(ctx, sweepKey, v)
	} else {
		_, err = q.kv.Update(ctx, sweepKey, v, rev)
	}
	if err != nil {
		return false, false // another relay came first, or the cluster did not answer
	}
	took = !q.sweeping
	q.sweeping = true
	return took, true
}

// giveUpSweep lets another relay take the sweeper's key at its next sweep (Close), instead of
// after three sweeps without this one.
func (q *Queue) giveUpSweep(ctx context.Context) {
	if !q.sweeping {
		return
	}
	e, err := q.kv.Get(ctx, sweepKey)
	if err != nil {
		return
	}
	var l sweepLock
	if json.Unmarshal(e.Value(), &l) != nil || l.Token != q.sweepToken {
		return
	}
	l.Until = 0
	v, _ := json.Marshal(l)
	q.kv.Update(ctx, sweepKey, v, e.Revision()) // else it runs out by itself
}

// deleted notes the delete marker this relay just wrote for key.
func (q *Queue) deleted(key string) {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.markers = append(q.markers, marker{key, time.Now()})
}

// purgeMarkers purges the delete markers this relay wrote more than markerAge ago.
func (q *Queue) purgeMarkers(ctx context.Context, now time.Time) {
	q.mu.Lock()
	n := 0
	for n < len(q.markers) && now.Sub(q.markers[n].at) >= markerAge {
		n++
	}
	old := q.markers[:n:n]
	q.mu.Unlock()
	done := 0
	for _, m := range old {
		// The key is gone for good (ids are not reused), so its subject may go whole.
		err := q.kvStream.Purge(ctx, jetstream.WithPurgeSubject(q.kvSubject(m.key)))
		if err != nil {
			if ctx.Err() == nil {
				q.log.Warn("jetstream queue: purge delete marker", "key", m.key, "err", err)
			}
			break // the next sweep tries again
		}
		done++
	}
	q.mu.Lock()
	q.markers = q.markers[done:]
	if len(q.markers) == 0 {
		q.markers = nil // let the backing array go
	}
	q.mu.Unlock()
}

// kvSubject is the subject of key in the state bucket's stream.
func (q *Queue) kvSubject(key string) string { return "$KV." + q.opts.Name + "_STATE." + key }

// keep is what retention keeps: finished webhooks for done (delivered) or dead (dead in a
// group), at most doneMax and deadMax of them (0: no bound).
type keep struct {
	done, dead       time.Duration
	doneMax, deadMax int
}

// expired lists the webhooks finished in every group longer ago than k.done, or k.dead when
// dead in one, and beyond the newest k.doneMax delivered and k.deadMax dead ones.
func (m *mirror) expired(now time.Time, k keep) []string {
	type fin struct {
		id string
		at int64
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []string
	var done, dead []fin // kept by time
	for _, list := range m.byEp {
		for _, e := range list {
			if e.open {
				continue
			}
			var at int64
			for _, g := range m.groupsLocked(e) {
				if s := e.slot(g); !s.g.Deleted {
					at = max(at, s.g.Finished)
				}
			}
			keep, kept := k.done, &done
			if e.dead {
				keep, kept = k.dead, &dead
			}
			if at < now.Add(-keep).UnixNano() {
				out = append(out, e.meta.ID)
			} else {
				*kept = append(*kept, fin{e.meta.ID, at})
			}
		}
	}
	for _, c := range []struct {
		kept []fin
		max  int
	}{{done, k.doneMax}, {dead, k.deadMax}} {
		if c.max <= 0 || len(c.kept) <= c.max {
			continue
		}
		slices.SortFunc(c.kept, func(a, b fin) int { return cmp.Or(cmp.Compare(a.at, b.at), cmp.Compare(a.id, b.id)) })
		for _, f := range c.kept[:len(c.kept)-c.max] {
			out = append(out, f.id)
		}
	}
	return out
}
