package queuetest

import (
	"bytes"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"slices"
	"testing"
	"testing/iotest"
	"time"

	"github.com/hookrelay/hookrelay/persist"
	"github.com/hookrelay/hookrelay/relay"
)

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

// AppendFrom stores a body read from a reader byte-exact (small and multi-MiB); a reader that
// fails stores nothing.
func testAppendFrom(t *testing.T, q relay.Queue) {
	big := make([]byte, 3<<20+77)
	rand.Read(big)
	for _, b := range [][]byte{[]byte("small \x00 body"), big} {
		r := &persist.Record{Queue: "ep", Method: "POST"}
		if err := q.AppendFrom(t.Context(), r, bytes.NewReader(b)); err != nil {
			t.Fatalf("append from a reader: %v", err)
		}
		if r.ID == "" || r.BodyLen != int64(len(b)) {
			t.Fatalf("appended %q, body len %d, want %d", r.ID, r.BodyLen, len(b))
		}
		rc, err := q.Body(t.Context(), r.ID)
		if err != nil {
			t.Fatal(err)
		}
		got, err := io.ReadAll(rc)
		rc.Close()
		if err != nil || !bytes.Equal(got, b) {
			t.Fatalf("body read back: %d bytes (%v), want %d", len(got), err, len(b))
		}
	}
	broken := io.MultiReader(bytes.NewReader(big[:1<<20]), iotest.ErrReader(errors.New("sender went away")))
	if err := q.AppendFrom(t.Context(), &persist.Record{Queue: "ep", Method: "POST"}, broken); err == nil {
		t.Fatal("append from a failing reader succeeded")
	}
	recs, err := q.List(t.Context(), persist.Filter{Queue: "ep"})
	if err != nil || len(recs) != 2 {
		t.Fatalf("after a failed append: %d records (%v), want 2", len(recs), err)
	}
}
