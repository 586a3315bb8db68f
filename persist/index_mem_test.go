package persist

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"slices"
	"testing"
	"time"
)

// A finished record stays listable for KeepDone (up to KeepDoneMax of them, and as many dead
// letters), so a busy store holds thousands in its index. Only listings, sweeps and replays
// use them, and all of those read the record from disk anyway: each must cost the index little
// memory and the GC few objects. As full entries (an entry and its slots in two maps) they
// took 293 bytes each here; held compactly (doneRec), 116.
func TestFinishedRecordsHeldCompactly(t *testing.T) {
	const n = 20000
	for _, hold := range []bool{false, true} {
		t.Run(fmt.Sprintf("hold_unreported=%v", hold), func(t *testing.T) {
			ids := make([]string, n) // the ids count apart: the index keeps the caller's string
			for i := range ids {
				ids[i] = fmt.Sprintf("01J%023d", i)
			}
			now := time.Now()
			before := liveHeap()
			x := newIndex(hold)
			for i, id := range ids {
				state := StateDelivered
				if i%4 == 0 {
					state = StateDead
				}
				x.insertLocked(id, summary{state: state, received: now, finished: now, size: 1100,
					reported: true, queue: "q"}, 1024, now)
			}
			per := float64(liveHeap()-before) / n
			runtime.KeepAlive(x)
			runtime.KeepAlive(ids)
			t.Logf("%.0f bytes per finished record", per)
			if per > 160 {
				t.Errorf("the index holds %.0f bytes per finished record, want at most 160", per)
			}
			if x.finished != n || x.queues["q"].dead != n/4 {
				t.Errorf("counted %d finished, %d dead; want %d, %d", x.finished, x.queues["q"].dead, n, n/4)
			}
		})
	}
}

func liveHeap() int64 {
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return int64(m.HeapAlloc)
}

// Finished records held compactly keep every behaviour a full entry had: listed by state and
// time, counted, found by id (a second append of the same id is refused), replayed, replayed
// as dead letters, deleted, swept by count, and the same after a reopen. On the relay's
// profile every finished record is compact; on the agent's, once its outcome is reported.
func TestCompactFinishedRecords(t *testing.T) {
	for _, hold := range []bool{false, true} {
		t.Run(fmt.Sprintf("hold_unreported=%v", hold), func(t *testing.T) {
			dir := t.TempDir()
			s := openT(t, dir, func(o *Options) { o.HoldUnreported = hold; o.KeepDoneMax = 3 })
			var done, dead []string
			for i := range 4 {
				r := appendT(t, s, rec("q", fmt.Sprint("done", i)))
				mustOK(t, s.Complete(r.ID, StateDelivered, nil, ""))
				done = append(done, r.ID)
				r = appendT(t, s, rec("q", fmt.Sprint("dead", i)))
				mustOK(t, s.Complete(r.ID, StateDead, nil, "gave up"))
				dead = append(dead, r.ID)
			}
			pending := appendT(t, s, rec("q", "pending"))
			if hold {
				mustOK(t, s.MarkReported(append(slices.Clone(done), dead...)...))
			}
			s.mu.Lock()
			compact := len(s.idx.done)
			s.mu.Unlock()
			if compact != 8 {
				t.Fatalf("%d finished records held compactly, want 8", compact)
			}
			check := func(when string, wantDone, wantDead []string) {
				t.Helper()
				listed := func(f Filter) []string {
					rs, err := s.List(f)
					mustOK(t, err)
					var ids []string
					for _, r := range rs {
						ids = append(ids, r.ID)
					}
					slices.Sort(ids)
					return ids
				}
				if got := listed(Filter{Queue: "q", State: StateDelivered}); !slices.Equal(got, wantDone) {
					t.Errorf("%s: delivered listed %v, want %v", when, got, wantDone)
				}
				if got := listed(Filter{State: StateDead}); !slices.Equal(got, wantDead) {
					t.Errorf("%s: dead listed %v, want %v", when, got, wantDead)
				}
				if got := listed(Filter{Queue: "q", State: StateDead, Since: time.Now().Add(time.Hour)}); len(got) != 0 {
					t.Errorf("%s: dead received in an hour listed %v", when, got)
				}
				if got := listed(Filter{Queue: "other"}); len(got) != 0 {
					t.Errorf("%s: another queue listed %v", when, got)
				}
				st := s.Stats()
				if len(st) != 1 || st[0].Dead != len(wantDead) || st[0].Pending != 1 {
					t.Errorf("%s: stats %+v, want %d dead, 1 pending", when, st, len(wantDead))
				}
				for _, id := range append(slices.Clone(wantDone), wantDead...) {
					if ok, err := s.Has(id); !ok || err != nil {
						t.Errorf("%s: Has(%s) = %v, %v", when, id, ok, err)
					}
					if g, err := s.Get(id); err != nil || string(g.Body) == "" {
						t.Errorf("%s: Get(%s): %+v, %v", when, id, g, err)
					}
					r := rec("q", "again")
					r.ID = id
					if err := s.Append(context.Background(), r); !errors.Is(err, ErrExists) {
						t.Errorf("%s: appending %s again: %v, want ErrExists", when, id, err)
					}
				}
			}
			check("stored", done, dead)

			// Replay moves a delivered record back to ready, ReplayDead every dead letter.
			mustOK(t, s.Replay(done[0]))
			if n, err := s.ReplayDead("q"); err != nil || n != 4 {
				t.Fatalf("ReplayDead: %d, %v; want 4", n, err)
			}
			got, err := s.Lease("q", 10, time.Minute)
			mustOK(t, err)
			if len(got) != 6 { // the replayed five and the pending one
				t.Fatalf("leased %d after the replays, want 6", len(got))
			}
			for _, r := range got {
				if r.ID == done[0] || slices.Contains(dead, r.ID) {
					mustOK(t, s.Complete(r.ID, StateDead, nil, "again"))
				} else {
					mustOK(t, s.Complete(r.ID, StateDelivered, nil, ""))
				}
			}
			if hold {
				ids := []string{done[0], pending.ID}
				mustOK(t, s.MarkReported(append(ids, dead...)...))
			}
			mustOK(t, s.Delete(dead[3]))
			wantDone := append(slices.Clone(done[1:]), pending.ID)
			wantDead := append([]string{done[0]}, dead[:3]...)
			slices.Sort(wantDone)
			slices.Sort(wantDead)
			// Pending is now delivered: the stats hold no pending record.
			pendingNow := func() int {
				st := s.Stats()
				if len(st) == 0 {
					return -1
				}
				return st[0].Pending
			}
			if p := pendingNow(); p != 0 {
				t.Fatalf("pending %d after all were finished", p)
			}
			if ok, _ := s.Has(dead[3]); ok {
				t.Fatal("a deleted record is still there")
			}

			// The sweep keeps the three delivered last (KeepDoneMax 3): done[1] goes. After a
			// reopen, so that it finds nothing in the recent cache and deletes what the index
			// alone holds.
			mustOK(t, s.Close())
			s = openT(t, dir, func(o *Options) { o.HoldUnreported = hold; o.KeepDoneMax = 3 })
			mustOK(t, s.GC())
			keep := []string{done[2], done[3], pending.ID}
			slices.Sort(keep)
			delivered := func(when string) {
				t.Helper()
				rs, err := s.List(Filter{State: StateDelivered})
				mustOK(t, err)
				var ids []string
				for _, r := range rs {
					ids = append(ids, r.ID)
				}
				slices.Sort(ids)
				if !slices.Equal(ids, keep) {
					t.Fatalf("%s: delivered %v, want %v (KeepDoneMax 3 of %v)", when, ids, keep, wantDone)
				}
			}
			delivered("after the sweep")
			// Deleted without reading the records, their bodies went too (one segment each).
			if n := countKeys(t, s, bodyPrefix); n != len(keep)+len(wantDead) {
				t.Fatalf("%d body keys after the sweep, want %d", n, len(keep)+len(wantDead))
			}
			mustOK(t, s.Close())
			s = openT(t, dir, func(o *Options) { o.HoldUnreported = hold; o.KeepDoneMax = 3 })
			delivered("after reopening")
			st := s.Stats()
			if len(st) != 1 || st[0].Dead != len(wantDead) || st[0].Pending != 0 {
				t.Fatalf("stats after reopening %+v, want %d dead", st, len(wantDead))
			}
			s.mu.Lock()
			compact = len(s.idx.done)
			s.mu.Unlock()
			if compact != len(keep)+len(wantDead) {
				t.Fatalf("%d held compactly after reopening, want %d", compact, len(keep)+len(wantDead))
			}
		})
	}
}
