package jsqueue

import (
	"cmp"
	"fmt"
	"math/rand/v2"
	"reflect"
	"slices"
	"testing"
	"time"

	"github.com/hookrelay/hookrelay/persist"
)

// statsScan is Stats as a scan of every webhook the mirror holds, building each one's record:
// what Stats did before it kept counts, and the reference it must still agree with.
func statsScan(m *mirror) []persist.QueueStats {
	now := time.Now()
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []persist.QueueStats
	for ep, list := range m.byEp {
		st := persist.QueueStats{Queue: ep}
		for _, e := range list {
			switch {
			case m.unfinishedLocked(e):
				st.Pending++
				st.Bytes += e.meta.Size
				if at := time.Unix(0, e.meta.At); st.Oldest.IsZero() || at.Before(st.Oldest) {
					st.Oldest = at
				}
			case m.recordLocked(e, now).State == persist.StateDead:
				st.Dead++
			}
		}
		out = append(out, st)
	}
	slices.SortFunc(out, func(a, b persist.QueueStats) int { return cmp.Compare(a.Queue, b.Queue) })
	return out
}

// Stats keeps counts as states change (acked, delivered, dead in one group of two, replayed,
// removed, accepted for some groups only) and agrees with a scan of every webhook throughout.
func TestMirrorStatsFollowChanges(t *testing.T) {
	groups := []string{"default", "audit"}
	m := newMirror(groups)
	q := &Queue{m: m}
	r := rand.New(rand.NewPCG(1, 2))
	states := []persist.State{persist.StateReady, persist.StateLeased, persist.StateAcked,
		persist.StateDelivered, persist.StateDead}
	var ids []string
	rev := uint64(0)
	for step := range 3000 {
		switch k := r.IntN(10); {
		case k < 3 || len(ids) == 0: // a new webhook, out of clock order now and then
			id := fmt.Sprintf("W%05d", step)
			mt := meta{ID: id, Queue: []string{"e1", "e2"}[r.IntN(2)], Size: int64(1 + r.IntN(1000)),
				At: time.Unix(1e9, 0).Add(time.Duration(step+r.IntN(50)) * time.Millisecond).UnixNano()}
			if r.IntN(4) == 0 {
				mt.Groups = []string{groups[r.IntN(2)]}
			}
			m.watched(uint64(step+1), &mt, nil)
			ids = append(ids, id)
		default: // a group's state changes, or the group removes it
			rev++
			g := gstate{State: states[r.IntN(len(states))], Until: time.Now().Add(time.Hour).UnixNano()}
			if r.IntN(12) == 0 {
				g = gstate{Deleted: true}
			}
			m.set(ids[r.IntN(len(ids))], groups[r.IntN(2)], slot{g: g, rev: rev})
		}
		if step%50 != 49 {
			continue
		}
		got, err := q.Stats(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		slices.SortFunc(got, func(a, b persist.QueueStats) int { return cmp.Compare(a.Queue, b.Queue) })
		if want := statsScan(m); !reflect.DeepEqual(got, want) {
			t.Fatalf("step %d: Stats %+v, a scan of every webhook %+v", step, got, want)
		}
	}
}

// BenchmarkStats is Stats over 100,000 finished webhooks and 100 open ones, as a relay that
// keeps a day of them answers a scrape; "scan" is how Stats computed it before.
//
//	go test -bench=Stats -run='^$' ./relay/jsqueue
func BenchmarkStats(b *testing.B) {
	m := newMirror([]string{"default"})
	for i := range 100_100 {
		id := fmt.Sprintf("W%06d", i)
		m.watched(uint64(i+1), &meta{ID: id, Queue: "e", Size: 1000, At: int64(i)}, nil)
		if i < 100_000 {
			st := persist.StateDelivered
			if i%10 == 0 {
				st = persist.StateDead
			}
			m.set(id, "default", slot{g: gstate{State: st}, rev: uint64(i + 1)})
		}
	}
	q := &Queue{m: m}
	b.Run("counts", func(b *testing.B) {
		for b.Loop() {
			if st, err := q.Stats(b.Context()); err != nil || st[0].Dead != 10_000 || st[0].Pending != 100 {
				b.Fatalf("%+v %v", st, err)
			}
		}
	})
	b.Run("scan", func(b *testing.B) {
		for b.Loop() {
			statsScan(m)
		}
	})
}
