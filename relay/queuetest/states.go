package queuetest

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hookrelay/hookrelay/persist"
	"github.com/hookrelay/hookrelay/relay"
)

// Ids are unique and in commit order: an Append that returned before another began has the
// smaller id, also among concurrent appenders.
func testAppendIDs(t *testing.T, q relay.Queue) {
	var prev string
	for i := range 20 {
		r := appendT(t, q, rec("ep", fmt.Sprint(i)))
		if r.ID <= prev || r.State != persist.StateReady || r.ReceivedAt.IsZero() || r.BodyLen != int64(len(r.Body)) {
			t.Fatalf("append %d: id %q after %q, state %v, received %v, body len %d", i, r.ID, prev, r.State, r.ReceivedAt, r.BodyLen)
		}
		prev = r.ID
	}
	type span struct {
		id         string
		start, end int64
	}
	var clock atomic.Int64
	var mu sync.Mutex
	var spans []span
	var wg sync.WaitGroup
	for w := range 8 {
		wg.Go(func() {
			for i := range 25 {
				start := clock.Add(1)
				r := rec("ep", fmt.Sprintf("%d/%d", w, i))
				if err := q.Append(context.Background(), r); err != nil {
					t.Errorf("append: %v", err)
					return
				}
				end := clock.Add(1)
				mu.Lock()
				spans = append(spans, span{r.ID, start, end})
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	seen := map[string]bool{}
	for _, a := range spans {
		if seen[a.id] {
			t.Fatalf("id %s assigned twice", a.id)
		}
		seen[a.id] = true
		for _, b := range spans {
			if a.end < b.start && a.id >= b.id {
				t.Fatalf("id %s returned before %s was appended, but sorts after it", a.id, b.id)
			}
		}
	}
}

// Lease hands out the oldest due records, each to one holder, until released or the lease
// ends.
func testLeaseExclusive(t *testing.T, q relay.Queue) {
	var want []string
	for i := range 5 {
		want = append(want, appendT(t, q, rec("ep", fmt.Sprint(i))).ID)
	}
	appendT(t, q, rec("other", "x"))
	first := lease(t, q, "ep", 3)
	if !slices.Equal(ids(first), want[:3]) {
		t.Fatalf("first lease %v, want %v", ids(first), want[:3])
	}
	for _, r := range first {
		if r.State != persist.StateLeased || get(t, q, r.ID).State != persist.StateLeased {
			t.Fatalf("leased record %s in state %v", r.ID, r.State)
		}
	}
	second := lease(t, q, "ep", 10)
	if !slices.Equal(ids(second), want[3:]) {
		t.Fatalf("second lease %v, want %v", ids(second), want[3:])
	}
	if got := lease(t, q, "ep", 10); len(got) != 0 {
		t.Fatalf("leased again while held: %v", ids(got))
	}
	// Concurrent leases never share a record.
	if err := q.Release(t.Context(), group, leasesOf(append(first, second...)...)); err != nil {
		t.Fatalf("release: %v", err)
	}
	var mu sync.Mutex
	got := map[string]int{}
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			for {
				recs, err := q.Lease(context.Background(), group, "ep", 1, ttl)
				if err != nil || len(recs) == 0 {
					return
				}
				mu.Lock()
				got[recs[0].ID]++
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if len(got) != len(want) {
		t.Fatalf("concurrent leases took %d records, want %d", len(got), len(want))
	}
	for id, n := range got {
		if n != 1 {
			t.Fatalf("%s leased %d times at once", id, n)
		}
	}
	// A lease that ends makes the record ready again.
	r := appendT(t, q, rec("short", "x"))
	if got, err := q.Lease(t.Context(), group, "short", 1, 100*time.Millisecond); err != nil || len(got) != 1 {
		t.Fatalf("short lease: %v %v", got, err)
	}
	eventually(t, 5*time.Second, "an expired lease is leased again", func() bool {
		got := lease(t, q, "short", 1)
		return len(got) == 1 && got[0].ID == r.ID
	})
}

// Acks, nacks and outcomes move a record as the relay's states say, and refuse what does
// not fit.
func testTransitions(t *testing.T, q relay.Queue) {
	a := appendT(t, q, rec("ep", "a"))
	b := appendT(t, q, rec("ep", "b"))
	c := appendT(t, q, rec("ep", "c"))
	lease(t, q, "ep", 3)

	next := time.Now().Add(time.Hour)
	d := &persist.Delivery{At: time.Now(), Status: 503, Millis: 7, Error: "busy"}
	errs := q.Apply(t.Context(), group, []persist.Change{
		{ID: a.ID, State: persist.StateAcked},
		{ID: b.ID, State: persist.StateReady, Next: next},
		{ID: c.ID, State: persist.StateReady, Next: next, Delivery: d},
	})
	for i, err := range errs {
		if err != nil {
			t.Fatalf("change %d: %v", i, err)
		}
	}
	if r := get(t, q, a.ID); r.State != persist.StateAcked {
		t.Fatalf("acked: state %v", r.State)
	}
	rb, rc := get(t, q, b.ID), get(t, q, c.ID)
	if rb.State != persist.StateReady || rb.Attempts != 0 || !rb.NextAttempt.Equal(next.Truncate(0)) && rb.NextAttempt.Sub(next).Abs() > time.Millisecond {
		t.Fatalf("nacked: %+v", rb)
	}
	if rc.Attempts != 1 || len(rc.Deliveries) != 1 || rc.Deliveries[0].Status != 503 || rc.Deliveries[0].Error != "busy" {
		t.Fatalf("nacked with a delivery: %+v", rc)
	}
	if got := lease(t, q, "ep", 10); len(got) != 0 {
		t.Fatalf("nacked records leased before they are due: %v", ids(got))
	}
	// Outcomes, repeated outcomes, and what a finished record refuses.
	done := &persist.Delivery{At: time.Now(), Status: 200, Millis: 3}
	if err := apply(q, persist.Change{ID: a.ID, State: persist.StateDelivered, Delivery: done}); err != nil {
		t.Fatalf("deliver: %v", err)
	}
	if err := apply(q, persist.Change{ID: a.ID, State: persist.StateDelivered, Delivery: done}); err != nil {
		t.Fatalf("deliver again: %v", err)
	}
	if err := apply(q, persist.Change{ID: b.ID, State: persist.StateDead, Delivery: d, Reason: "max attempts"}); err != nil {
		t.Fatalf("die: %v", err)
	}
	ra, rb := get(t, q, a.ID), get(t, q, b.ID)
	if ra.State != persist.StateDelivered || ra.FinishedAt.IsZero() || ra.Attempts != 1 || ra.Deliveries[0].Status != 200 {
		t.Fatalf("delivered: %+v", ra)
	}
	if rb.State != persist.StateDead || rb.DeadReason != "max attempts" || rb.FinishedAt.IsZero() {
		t.Fatalf("dead: %+v", rb)
	}
	for _, ch := range []persist.Change{
		{ID: a.ID, State: persist.StateAcked},
		{ID: a.ID, State: persist.StateReady, Next: time.Now()},
	} {
		if err := apply(q, ch); !errors.Is(err, persist.ErrState) {
			t.Fatalf("%v of a delivered record: %v, want ErrState", ch.State, err)
		}
	}
	if err := apply(q, persist.Change{ID: "01NOSUCHRECORD", State: persist.StateAcked}); !errors.Is(err, persist.ErrNotFound) {
		t.Fatalf("ack of a missing id: %v, want ErrNotFound", err)
	}
	if _, err := q.Get(t.Context(), "01NOSUCHRECORD"); !errors.Is(err, persist.ErrNotFound) {
		t.Fatalf("get of a missing id: %v, want ErrNotFound", err)
	}
	if m, ok := q.(relay.MetaReader); ok {
		if _, err := m.Meta(t.Context(), "01NOSUCHRECORD"); !errors.Is(err, persist.ErrNotFound) {
			t.Fatalf("meta of a missing id: %v, want ErrNotFound", err)
		}
	}
	// Release of a record that is not leased changes nothing.
	if err := q.Release(t.Context(), group, map[string]uint64{a.ID: 1, c.ID: 2}); err != nil {
		t.Fatalf("release: %v", err)
	}
	if get(t, q, a.ID).State != persist.StateDelivered || lease(t, q, "ep", 10) != nil {
		t.Fatal("release changed records that were not leased")
	}
}

// Past the quota Append gives ErrQuota; finished records do not count.
func testQuota(t *testing.T, q relay.Queue) {
	body := string(bytes.Repeat([]byte("q"), 1000))
	var stored []*persist.Record
	var err error
	for range 10 {
		r := rec("small", body)
		if err = q.Append(t.Context(), r); err != nil {
			break
		}
		stored = append(stored, r)
	}
	if !errors.Is(err, persist.ErrQuota) || len(stored) == 0 {
		t.Fatalf("after %d appends: %v, want ErrQuota", len(stored), err)
	}
	appendT(t, q, rec("big", body)) // other endpoints are not held back
	if err := q.Append(t.Context(), rec("small", body)); !errors.Is(err, persist.ErrQuota) {
		t.Fatalf("append over quota: %v", err)
	}
	lease(t, q, "small", 1)
	if err := apply(q, persist.Change{ID: stored[0].ID, State: persist.StateAcked}); err != nil {
		t.Fatal(err)
	}
	if err := q.Append(t.Context(), rec("small", body)); !errors.Is(err, persist.ErrQuota) {
		t.Fatalf("an acked record must still count: %v", err)
	}
	if err := apply(q, persist.Change{ID: stored[0].ID, State: persist.StateDelivered}); err != nil {
		t.Fatal(err)
	}
	if err := apply(q, persist.Change{ID: stored[1].ID, State: persist.StateDead, Reason: "x"}); err != nil {
		t.Fatal(err)
	}
	appendT(t, q, rec("small", body)) // room again: finished records do not count
	stats, err := q.Stats(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	for _, st := range stats {
		if st.Queue == "small" && (st.Pending != len(stored)-1 || st.Dead != 1 || st.Bytes > 4000) {
			t.Fatalf("stats %+v", st)
		}
	}
}

// Ready's channel closes on an append; its due time says when a nacked record comes due, and
// a lease then gets it.
func testReady(t *testing.T, q relay.Queue) {
	wake, due := q.Ready(group, "ep")
	if !due.IsZero() {
		t.Fatalf("due %v with nothing stored", due)
	}
	select {
	case <-wake:
		t.Fatal("woke with nothing stored")
	default:
	}
	r := appendT(t, q, rec("ep", "x"))
	select {
	case <-wake:
	case <-time.After(5 * time.Second):
		t.Fatal("append did not wake the waiter")
	}
	if _, due := q.Ready(group, "ep"); due.IsZero() || due.After(time.Now()) {
		t.Fatalf("due %v with a ready record", due)
	}
	lease(t, q, "ep", 1)
	next := time.Now().Add(300 * time.Millisecond)
	if err := apply(q, persist.Change{ID: r.ID, State: persist.StateReady, Next: next}); err != nil {
		t.Fatal(err)
	}
	wake, due = q.Ready(group, "ep")
	if due.Sub(next).Abs() > 5*time.Millisecond {
		t.Fatalf("due %v, want the nack's next attempt %v", due, next)
	}
	if got := lease(t, q, "ep", 1); len(got) != 0 {
		t.Fatal("leased before due")
	}
	select {
	case <-wake:
	case <-time.After(time.Until(due)):
	}
	var got []*persist.Record
	eventually(t, 5*time.Second, "the nacked record is leased once due", func() bool {
		got = lease(t, q, "ep", 1)
		return len(got) == 1 && got[0].ID == r.ID
	})
	// A release wakes too.
	wake, _ = q.Ready(group, "ep")
	if err := q.Release(t.Context(), group, leasesOf(got...)); err != nil {
		t.Fatal(err)
	}
	select {
	case <-wake:
	case <-time.After(5 * time.Second):
		t.Fatal("release did not wake the waiter")
	}
}

// A group the queue does not hold is refused with ErrInvalid.
func testUnknownGroup(t *testing.T, q relay.Queue) {
	r := appendT(t, q, rec("ep", "x"))
	ctx := t.Context()
	if _, err := q.Lease(ctx, "audit", "ep", 1, ttl); !errors.Is(err, persist.ErrInvalid) {
		t.Fatalf("lease: %v, want ErrInvalid", err)
	}
	if err := q.Release(ctx, "audit", map[string]uint64{r.ID: 1}); !errors.Is(err, persist.ErrInvalid) {
		t.Fatalf("release: %v", err)
	}
	if err := q.Apply(ctx, "audit", []persist.Change{{ID: r.ID, State: persist.StateAcked}})[0]; !errors.Is(err, persist.ErrInvalid) {
		t.Fatalf("apply: %v", err)
	}
	if err := q.Replay(ctx, "audit", r.ID); !errors.Is(err, persist.ErrInvalid) {
		t.Fatalf("replay: %v", err)
	}
	if _, err := q.ReplayDead(ctx, "audit", ""); !errors.Is(err, persist.ErrInvalid) {
		t.Fatalf("replay dead: %v", err)
	}
	if err := q.Delete(ctx, "audit", r.ID); !errors.Is(err, persist.ErrInvalid) {
		t.Fatalf("delete: %v", err)
	}
	if get(t, q, r.ID).State != persist.StateReady {
		t.Fatal("a refused call changed the record")
	}
}

// What was stored survives Close and a new Open: records, states (a lease does not), bodies.
func testDurable(t *testing.T, open Open) {
	dir := t.TempDir()
	q := open(t, dir, Config{})
	body := make([]byte, 1<<20)
	rand.Read(body)
	a := appendT(t, q, &persist.Record{Queue: "ep", Method: "POST", Path: "/x", Query: "q=1",
		Headers: []persist.Header{{Name: "A", Value: "1"}, {Name: "a", Value: "2"}}, Body: bytes.Clone(body)})
	b := appendT(t, q, rec("ep", "b"))
	c := appendT(t, q, rec("ep", "c"))
	lease(t, q, "ep", 3)
	errs := q.Apply(t.Context(), group, []persist.Change{
		{ID: b.ID, State: persist.StateAcked},
		{ID: c.ID, State: persist.StateDead, Reason: "gone", Delivery: &persist.Delivery{At: time.Now(), Status: 410}},
	})
	if errs[0] != nil || errs[1] != nil {
		t.Fatalf("apply: %v", errs)
	}
	if err := q.Close(); err != nil {
		t.Fatalf("close: %v", err)
	}
	if err := q.Close(); err != nil {
		t.Fatalf("close again: %v", err)
	}
	if _, err := q.Get(t.Context(), a.ID); !errors.Is(err, persist.ErrClosed) {
		t.Fatalf("get after close: %v, want ErrClosed", err)
	}
	q = open(t, dir, Config{})
	defer q.Close()
	ra := get(t, q, a.ID)
	if ra.State != persist.StateReady || ra.Path != "/x" || ra.Query != "q=1" || len(ra.Headers) != 2 || ra.Headers[1].Value != "2" {
		t.Fatalf("reopened: %+v", ra)
	}
	rc, err := q.Body(t.Context(), a.ID)
	if err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(rc)
	rc.Close()
	if err != nil || !bytes.Equal(got, body) {
		t.Fatalf("reopened body: %d bytes, %v", len(got), err)
	}
	if get(t, q, b.ID).State != persist.StateAcked {
		t.Fatal("ack lost across reopen")
	}
	if r := get(t, q, c.ID); r.State != persist.StateDead || r.DeadReason != "gone" || r.Attempts != 1 {
		t.Fatalf("outcome lost across reopen: %+v", r)
	}
	if got := lease(t, q, "ep", 10); !slices.Equal(ids(got), []string{a.ID}) {
		t.Fatalf("lease after reopen %v, want the one that was only leased", ids(got))
	}
	d := appendT(t, q, rec("ep", "d"))
	if d.ID <= c.ID {
		t.Fatalf("id %s after reopen sorts before %s", d.ID, c.ID)
	}
}
