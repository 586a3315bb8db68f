// Package queuetest is the conformance suite of relay.Queue, written once against the
// interface: every implementation (Badger now, JetStream later) must pass it. An
// implementation's test calls Run with a function that opens it.
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

// Config is how the suite wants a queue opened.
type Config struct {
	// Quota returns an endpoint's stored-bytes limit (0 = none); nil = no quotas.
	Quota func(endpoint string) int64
}

// Open opens the queue kept at dir: an empty one for a new dir, the same one again (what was
// stored before Close) for a dir opened before. It fails t when it cannot open.
type Open func(t *testing.T, dir string, cfg Config) relay.Queue

const (
	group = relay.DefaultGroup
	ttl   = time.Minute
)

// Run runs the suite against the queues open opens.
func Run(t *testing.T, open Open) {
	fresh := func(t *testing.T, cfg Config) relay.Queue {
		q := open(t, t.TempDir(), cfg)
		t.Cleanup(func() { q.Close() })
		return q
	}
	t.Run("AppendIDs", func(t *testing.T) { testAppendIDs(t, fresh(t, Config{})) })
	t.Run("LeaseExclusive", func(t *testing.T) { testLeaseExclusive(t, fresh(t, Config{})) })
	t.Run("Transitions", func(t *testing.T) { testTransitions(t, fresh(t, Config{})) })
	t.Run("Quota", func(t *testing.T) {
		testQuota(t, fresh(t, Config{Quota: func(ep string) int64 {
			if ep == "small" {
				return 4000
			}
			return 0
		}}))
	})
	t.Run("List", func(t *testing.T) { testList(t, fresh(t, Config{})) })
	t.Run("Bodies", func(t *testing.T) { testBodies(t, fresh(t, Config{})) })
	t.Run("Replay", func(t *testing.T) { testReplay(t, fresh(t, Config{})) })
	t.Run("DeleteExpire", func(t *testing.T) { testDeleteExpire(t, fresh(t, Config{})) })
	t.Run("DedupSeed", func(t *testing.T) { testDedupSeed(t, fresh(t, Config{})) })
	t.Run("Ready", func(t *testing.T) { testReady(t, fresh(t, Config{})) })
	t.Run("UnknownGroup", func(t *testing.T) { testUnknownGroup(t, fresh(t, Config{})) })
	t.Run("Durable", func(t *testing.T) { testDurable(t, open) })
}

// rec is a webhook for endpoint with body.
func rec(endpoint, body string) *persist.Record {
	return &persist.Record{Queue: endpoint, Method: "POST", Path: "/p", Query: "a=1&a=2",
		Headers: []persist.Header{{Name: "X-A", Value: "1"}, {Name: "X-A", Value: "2"}}, Body: []byte(body)}
}

func appendT(t *testing.T, q relay.Queue, r *persist.Record) *persist.Record {
	t.Helper()
	if err := q.Append(t.Context(), r); err != nil {
		t.Fatalf("append: %v", err)
	}
	return r
}

func ids(recs []*persist.Record) []string {
	out := make([]string, len(recs))
	for i, r := range recs {
		out[i] = r.ID
	}
	return out
}

func lease(t *testing.T, q relay.Queue, ep string, max int) []*persist.Record {
	t.Helper()
	recs, err := q.Lease(t.Context(), group, ep, max, ttl)
	if err != nil {
		t.Fatalf("lease: %v", err)
	}
	return recs
}

func get(t *testing.T, q relay.Queue, id string) *persist.Record {
	t.Helper()
	r, err := q.Get(t.Context(), id)
	if err != nil {
		t.Fatalf("get %s: %v", id, err)
	}
	return r
}

// apply makes one change and returns its error.
func apply(q relay.Queue, c persist.Change) error {
	return q.Apply(context.Background(), group, []persist.Change{c})[0]
}

// eventually polls cond every 10ms until it holds or d passes.
func eventually(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("not within %v: %s", d, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

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
	if got := lease(t, q, "ep", 10); !slices.Equal(ids(got), want[3:]) {
		t.Fatalf("second lease %v, want %v", ids(got), want[3:])
	}
	if got := lease(t, q, "ep", 10); len(got) != 0 {
		t.Fatalf("leased again while held: %v", ids(got))
	}
	// Concurrent leases never share a record.
	if err := q.Release(t.Context(), group, want...); err != nil {
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
	// Release of a record that is not leased changes nothing.
	if err := q.Release(t.Context(), group, a.ID, c.ID); err != nil {
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

// List filters by endpoint, state and time, newest first, with a limit, without bodies.
func testList(t *testing.T, q relay.Queue) {
	var a []string
	for i := range 4 {
		a = append(a, appendT(t, q, rec("a", fmt.Sprint(i))).ID)
	}
	old := &persist.Record{Queue: "b", Method: "GET", ReceivedAt: time.Now().Add(-time.Hour)}
	appendT(t, q, old)
	lease(t, q, "a", 1) // a[0]
	if err := apply(q, persist.Change{ID: a[0], State: persist.StateDead, Reason: "x"}); err != nil {
		t.Fatal(err)
	}
	lease(t, q, "a", 1) // a[1] stays leased
	list := func(f persist.Filter) []string {
		t.Helper()
		recs, err := q.List(t.Context(), f)
		if err != nil {
			t.Fatalf("list %+v: %v", f, err)
		}
		for _, r := range recs {
			if r.Body != nil {
				t.Fatalf("list returned a body for %s", r.ID)
			}
		}
		return ids(recs)
	}
	cases := []struct {
		f    persist.Filter
		want []string
	}{
		{persist.Filter{Queue: "a"}, []string{a[3], a[2], a[1], a[0]}},
		{persist.Filter{}, []string{old.ID, a[3], a[2], a[1], a[0]}},
		{persist.Filter{Queue: "a", Limit: 2}, []string{a[3], a[2]}},
		{persist.Filter{State: persist.StateDead}, []string{a[0]}},
		{persist.Filter{State: persist.StateLeased}, []string{a[1]}},
		{persist.Filter{State: persist.StateReady}, []string{old.ID, a[3], a[2]}},
		{persist.Filter{Since: time.Now().Add(-time.Minute)}, []string{a[3], a[2], a[1], a[0]}},
		{persist.Filter{Queue: "none"}, []string{}},
	}
	for _, c := range cases {
		if got := list(c.f); !slices.Equal(got, c.want) {
			t.Errorf("list %+v: %v, want %v", c.f, got, c.want)
		}
	}
}

// Bodies come back byte-exact, through Get and Lease and through the body reader: binary,
// empty and multi-MiB ones.
func testBodies(t *testing.T, q relay.Queue) {
	binary := make([]byte, 256)
	for i := range binary {
		binary[i] = byte(i)
	}
	big := make([]byte, 5<<20+123)
	rand.Read(big)
	bodies := [][]byte{binary, {}, big, []byte("\r\n\x00 trailing ")}
	var recs []*persist.Record
	for _, b := range bodies {
		r := &persist.Record{Queue: "ep", Method: "PUT", Body: bytes.Clone(b),
			Headers: []persist.Header{{Name: "Content-Type", Value: "application/octet-stream"}}}
		appendT(t, q, r)
		recs = append(recs, r)
	}
	read := func(id string) []byte {
		t.Helper()
		rc, err := q.Body(t.Context(), id)
		if err != nil {
			t.Fatalf("body %s: %v", id, err)
		}
		defer rc.Close()
		b, err := io.ReadAll(rc)
		if err != nil {
			t.Fatalf("read body %s: %v", id, err)
		}
		return b
	}
	for i, r := range recs {
		if got := read(r.ID); !bytes.Equal(got, bodies[i]) {
			t.Fatalf("body %d through the reader: %d bytes, want %d", i, len(got), len(bodies[i]))
		}
		g := get(t, q, r.ID)
		if g.BodyLen != int64(len(bodies[i])) || (g.Body != nil && !bytes.Equal(g.Body, bodies[i])) {
			t.Fatalf("body %d through get: len %d, %d bytes, want %d", i, g.BodyLen, len(g.Body), len(bodies[i]))
		}
		if g.Method != "PUT" || len(g.Headers) != 1 || g.Headers[0].Value != "application/octet-stream" {
			t.Fatalf("record %d: %+v", i, g)
		}
	}
	for i, r := range lease(t, q, "ep", 10) {
		if r.BodyLen != int64(len(bodies[i])) || (r.Body != nil && !bytes.Equal(r.Body, bodies[i])) {
			t.Fatalf("leased body %d: len %d, %d bytes, want %d", i, r.BodyLen, len(r.Body), len(bodies[i]))
		}
	}
	if _, err := q.Body(t.Context(), "01NOSUCHRECORD"); !errors.Is(err, persist.ErrNotFound) {
		t.Fatalf("body of a missing id: %v", err)
	}
}

// Replay makes an acked or finished record ready again, marked; ReplayDead replays the
// dead ones of an endpoint.
func testReplay(t *testing.T, q relay.Queue) {
	var recs []*persist.Record
	for _, ep := range []string{"a", "a", "a", "b"} {
		recs = append(recs, appendT(t, q, rec(ep, "x")))
	}
	lease(t, q, "a", 3)
	lease(t, q, "b", 1)
	errs := q.Apply(t.Context(), group, []persist.Change{
		{ID: recs[0].ID, State: persist.StateDelivered},
		{ID: recs[1].ID, State: persist.StateDead, Reason: "x"},
		{ID: recs[2].ID, State: persist.StateDead, Reason: "x"},
		{ID: recs[3].ID, State: persist.StateDead, Reason: "x"},
	})
	for i, err := range errs {
		if err != nil {
			t.Fatalf("change %d: %v", i, err)
		}
	}
	if err := q.Replay(t.Context(), group, recs[0].ID); err != nil {
		t.Fatalf("replay: %v", err)
	}
	if err := q.Replay(t.Context(), "", recs[0].ID); !errors.Is(err, persist.ErrState) {
		t.Fatalf("replay of a ready record: %v, want ErrState", err)
	}
	if r := get(t, q, recs[0].ID); r.State != persist.StateReady || !r.Replay {
		t.Fatalf("replayed: %+v", r)
	}
	n, err := q.ReplayDead(t.Context(), "", "a")
	if err != nil || n != 2 {
		t.Fatalf("replay dead: %d %v, want 2", n, err)
	}
	got := lease(t, q, "a", 10)
	if !slices.Equal(ids(got), ids(recs[:3])) {
		t.Fatalf("leased after replay %v, want %v", ids(got), ids(recs[:3]))
	}
	for _, r := range got {
		if !r.Replay || r.DeadReason != "" {
			t.Fatalf("replayed record %+v", r)
		}
	}
	if r := get(t, q, recs[3].ID); r.State != persist.StateDead {
		t.Fatalf("another endpoint's dead record was replayed: %v", r.State)
	}
	if n, err := q.ReplayDead(t.Context(), group, ""); err != nil || n != 1 {
		t.Fatalf("replay every dead: %d %v, want 1", n, err)
	}
}

// Delete removes a record in any state; Expire makes records that waited too long dead,
// leaving leased ones to their holder.
func testDeleteExpire(t *testing.T, q relay.Queue) {
	a := appendT(t, q, rec("ep", "a"))
	lease(t, q, "ep", 1)
	if err := q.Delete(t.Context(), "", a.ID); err != nil {
		t.Fatalf("delete: %v", err)
	}
	if _, err := q.Get(t.Context(), a.ID); !errors.Is(err, persist.ErrNotFound) {
		t.Fatalf("get after delete: %v", err)
	}
	if err := q.Delete(t.Context(), "", a.ID); !errors.Is(err, persist.ErrNotFound) {
		t.Fatalf("delete again: %v, want ErrNotFound", err)
	}

	past := time.Now().Add(-2 * time.Hour)
	held := appendT(t, q, &persist.Record{Queue: "ep", Method: "POST", ReceivedAt: past})
	old := appendT(t, q, &persist.Record{Queue: "ep", Method: "POST", ReceivedAt: past})
	fresh := appendT(t, q, rec("ep", "new"))
	other := appendT(t, q, &persist.Record{Queue: "other", Method: "POST", ReceivedAt: past})
	if got := lease(t, q, "ep", 1); len(got) != 1 || got[0].ID != held.ID {
		t.Fatalf("lease %v, want %s", ids(got), held.ID)
	}
	n, err := q.Expire(t.Context(), "ep", time.Hour)
	if err != nil || n != 1 {
		t.Fatalf("expire: %d %v, want 1", n, err)
	}
	if r := get(t, q, old.ID); r.State != persist.StateDead || r.DeadReason == "" {
		t.Fatalf("expired record: %+v", r)
	}
	if get(t, q, held.ID).State != persist.StateLeased || get(t, q, fresh.ID).State != persist.StateReady ||
		get(t, q, other.ID).State != persist.StateReady {
		t.Fatal("expire touched a leased, a recent or another endpoint's record")
	}
}

// The relay rebuilds its Standard Webhooks replay window from the records received inside
// it: List with Since returns them with their headers as sent.
func testDedupSeed(t *testing.T, q relay.Queue) {
	outside := appendT(t, q, &persist.Record{Queue: "ep", Method: "POST", ReceivedAt: time.Now().Add(-time.Hour),
		Headers: []persist.Header{{Name: "Webhook-Id", Value: "msg_old"}}})
	var inside []string
	for i := range 3 {
		inside = append(inside, appendT(t, q, &persist.Record{Queue: "ep", Method: "POST",
			Headers: []persist.Header{{Name: "webhook-id", Value: fmt.Sprintf("msg_%d", i)}, {Name: "X", Value: "y"}}}).ID)
	}
	lease(t, q, "ep", 10) // whatever their state
	recs, err := q.List(t.Context(), persist.Filter{Queue: "ep", Since: time.Now().Add(-10 * time.Minute), Limit: 1 << 30})
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]string{}
	for _, r := range recs {
		if r.ID == outside.ID {
			t.Fatal("a record outside the window was listed")
		}
		if len(r.Headers) != 2 || r.Headers[0].Name != "webhook-id" {
			t.Fatalf("headers of %s: %v", r.ID, r.Headers)
		}
		got[r.ID] = r.Headers[0].Value
	}
	for i, id := range inside {
		if got[id] != fmt.Sprintf("msg_%d", i) {
			t.Fatalf("seed: %v", got)
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
	eventually(t, 5*time.Second, "the nacked record is leased once due", func() bool {
		got := lease(t, q, "ep", 1)
		return len(got) == 1 && got[0].ID == r.ID
	})
	// A release wakes too.
	wake, _ = q.Ready(group, "ep")
	if err := q.Release(t.Context(), group, r.ID); err != nil {
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
	if err := q.Release(ctx, "audit", r.ID); !errors.Is(err, persist.ErrInvalid) {
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
