package persist

import (
	"fmt"
	"slices"
	"testing"
	"time"
)

func TestListFilters(t *testing.T) {
	s := openT(t, "", nil)
	var a, b []string
	for i := range 6 {
		a = append(a, appendT(t, s, rec("a", fmt.Sprint(i))).ID)
		b = append(b, appendT(t, s, rec("b", fmt.Sprint(i))).ID)
	}
	mustOK(t, s.Complete(a[0], StateDead, nil, "x"))
	mustOK(t, s.Complete(a[1], StateDelivered, nil, ""))
	mustOK(t, s.Ack(a[2]))
	leased, _ := s.Lease("a", 1, time.Minute) // a[3]
	if len(leased) != 1 || leased[0].ID != a[3] {
		t.Fatalf("leased %+v", leased)
	}
	mid, _ := s.Get(b[3])

	ids := func(f Filter) []string {
		t.Helper()
		rs, err := s.List(f)
		if err != nil {
			t.Fatal(err)
		}
		var out []string
		for _, r := range rs {
			if r.Body != nil {
				t.Fatalf("list returned a body")
			}
			out = append(out, r.ID)
		}
		return out
	}
	rev := func(ids ...string) []string { ids = slices.Clone(ids); slices.Reverse(ids); return ids }
	cases := []struct {
		name string
		f    Filter
		want []string
	}{
		{"queue", Filter{Queue: "a"}, rev(a...)},
		{"limit newest first", Filter{Limit: 3}, []string{b[5], a[5], b[4]}},
		{"dead", Filter{State: StateDead}, []string{a[0]}},
		{"delivered", Filter{Queue: "a", State: StateDelivered}, []string{a[1]}},
		{"acked", Filter{State: StateAcked}, []string{a[2]}},
		{"leased", Filter{State: StateLeased}, []string{a[3]}},
		{"ready excludes leased", Filter{Queue: "a", State: StateReady}, []string{a[5], a[4]}},
		{"since", Filter{Queue: "b", Since: mid.ReceivedAt}, rev(b[3:]...)},
		{"unknown queue", Filter{Queue: "zzz"}, nil},
	}
	for _, c := range cases {
		if got := ids(c.f); !slices.Equal(got, c.want) {
			t.Errorf("%s: %v, want %v", c.name, got, c.want)
		}
	}
	rs, _ := s.List(Filter{State: StateLeased})
	if len(rs) != 1 || rs[0].State != StateLeased || rs[0].Method != "POST" || len(rs[0].Headers) != 3 {
		t.Fatalf("listed leased record: %+v", rs)
	}
}

func TestUnreportedAndMarkReported(t *testing.T) {
	s := openT(t, "", holdUnreported)
	var ids []string
	for i := range 4 {
		ids = append(ids, appendT(t, s, rec("q", fmt.Sprint(i))).ID)
	}
	mustOK(t, s.Complete(ids[2], StateDelivered, nil, ""))
	mustOK(t, s.Complete(ids[0], StateDead, nil, "x"))
	got, err := s.Unreported(10)
	if err != nil || len(got) != 2 || got[0].ID != ids[0] || got[1].ID != ids[2] || got[0].Body != nil {
		t.Fatalf("unreported: %+v %v", got, err)
	}
	if one, _ := s.Unreported(1); len(one) != 1 || one[0].ID != ids[0] {
		t.Fatalf("unreported(1): %+v", one)
	}
	if one, _ := s.UnreportedExcept(10, func(id string) bool { return id == ids[0] }); len(one) != 1 || one[0].ID != ids[2] {
		t.Fatalf("unreported except the first: %+v", one)
	}
	mustOK(t, s.MarkReported(ids[0], ids[2]))
	if got, _ := s.Unreported(10); len(got) != 0 {
		t.Fatalf("unreported after marking: %+v", got)
	}
	if g, _ := s.Get(ids[0]); !g.Reported {
		t.Fatal("Reported not stored")
	}
	// A replay delivered again needs reporting again.
	mustOK(t, s.Replay(ids[0]))
	mustOK(t, s.Complete(ids[0], StateDelivered, nil, ""))
	if got, _ := s.Unreported(10); len(got) != 1 || got[0].ID != ids[0] {
		t.Fatalf("replayed record not unreported again: %+v", got)
	}
}

// The reporter's set of unreported records follows reopen and deletion.
func TestUnreportedAfterReopenAndDelete(t *testing.T) {
	dir := t.TempDir()
	s := openT(t, dir, holdUnreported)
	a := appendT(t, s, rec("q", "a"))
	b := appendT(t, s, rec("q", "b"))
	appendT(t, s, rec("q", "c"))
	mustOK(t, s.Complete(a.ID, StateDelivered, nil, ""))
	mustOK(t, s.Complete(b.ID, StateDead, nil, "x"))
	mustOK(t, s.MarkReported(b.ID))
	mustOK(t, s.Close())
	s = openT(t, dir, holdUnreported)
	if got, _ := s.Unreported(10); len(got) != 1 || got[0].ID != a.ID {
		t.Fatalf("unreported after reopen: %+v", got)
	}
	mustOK(t, s.Delete(a.ID))
	if got, _ := s.Unreported(10); len(got) != 0 {
		t.Fatalf("unreported after delete: %+v", got)
	}
}

func TestStats(t *testing.T) {
	s := openT(t, "", nil)
	first := appendT(t, s, rec("a", "12345"))
	second := appendT(t, s, rec("a", "1"))
	appendT(t, s, rec("b", ""))
	mustOK(t, s.Complete(first.ID, StateDead, nil, "x"))
	st := s.Stats()
	if len(st) != 2 || st[0].Queue != "a" || st[0].Pending != 1 || st[0].Dead != 1 ||
		st[0].Bytes != second.Size || !st[0].Oldest.Equal(second.ReceivedAt) || st[1].Pending != 1 {
		t.Fatalf("stats: %+v", st)
	}
	mustOK(t, s.Delete(first.ID))
	mustOK(t, s.Delete(second.ID))
	if st := s.Stats(); len(st) != 1 || st[0].Queue != "b" {
		t.Fatalf("stats after emptying a: %+v", st)
	}
}

func TestExpireAndReplayDead(t *testing.T) {
	s := openT(t, "", nil)
	oldLeased := rec("q", "old, being delivered")
	oldLeased.ReceivedAt = time.Now().Add(-3 * time.Hour)
	appendT(t, s, oldLeased)
	leaseOne(t, s, "q", oldLeased.ID)
	old := rec("q", "old")
	old.ReceivedAt = time.Now().Add(-2 * time.Hour)
	appendT(t, s, old)
	oldAcked := rec("q", "old, agent has it")
	oldAcked.ReceivedAt = time.Now().Add(-3 * time.Hour)
	appendT(t, s, oldAcked)
	mustOK(t, s.Ack(oldAcked.ID))
	fresh := appendT(t, s, rec("q", "fresh"))
	otherOld := rec("other", "old")
	otherOld.ReceivedAt = time.Now().Add(-2 * time.Hour)
	appendT(t, s, otherOld)

	n, err := s.Expire("q", time.Hour)
	if err != nil || n != 1 {
		t.Fatalf("expire = %d, %v; want 1", n, err)
	}
	want := map[string]State{old.ID: StateDead, oldLeased.ID: StateLeased, oldAcked.ID: StateAcked, fresh.ID: StateReady, otherOld.ID: StateReady}
	for id, st := range want {
		if got := stateOf(t, s, id); got != st {
			t.Errorf("%s: %v, want %v", id, got, st)
		}
	}
	if g, _ := s.Get(old.ID); g.DeadReason != "retention expired" {
		t.Errorf("dead reason %q", g.DeadReason)
	}
	mustOK(t, s.Complete(otherOld.ID, StateDead, nil, "max attempts"))
	if n, err := s.ReplayDead("q"); err != nil || n != 1 {
		t.Fatalf("replay dead q = %d, %v", n, err)
	}
	if st := stateOf(t, s, otherOld.ID); st != StateDead {
		t.Fatalf("replay of queue q touched queue other")
	}
	if n, err := s.ReplayDead(""); err != nil || n != 1 {
		t.Fatalf("replay dead all = %d, %v", n, err)
	}
	for _, id := range []string{old.ID, otherOld.ID} {
		if g, _ := s.Get(id); g.State != StateReady || !g.Replay {
			t.Errorf("replayed %s: %+v", id, g)
		}
	}
}

// holdUnreported opens a store as the agent does: outcomes tracked until reported.
func holdUnreported(o *Options) { o.HoldUnreported = true }
