package jsqueue_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hookrelay/hookrelay/internal/natstest"
	"github.com/hookrelay/hookrelay/internal/testutil"
	"github.com/hookrelay/hookrelay/persist"
	"github.com/hookrelay/hookrelay/relay/jsqueue"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Retention on a cluster of two relays: finished webhooks past keep_done are deleted by one
// of them only (one delete marker per state key, not one per relay), both relays' mirrors drop
// them, and the markers are purged once they are older than markerAge, without a read of the
// whole bucket.
func TestSweepOnceThenPurgeMarkers(t *testing.T) {
	// The sweeper's key lasts three sweeps (900 ms): long enough that a sweep slowed by the
	// race detector is not taken over midway, which would delete twice.
	defer jsqueue.SetMarkerAge(500 * time.Millisecond)()
	c := natstest.Start(t, 1)
	open := func(node string) *jsqueue.Queue {
		q, err := jsqueue.Open(t.Context(), jsqueue.Options{URLs: c.URLs(), Replicas: 1, Name: "SWEEP",
			NodeID: node, KeepDone: time.Millisecond, GCInterval: 300 * time.Millisecond})
		if err != nil {
			t.Fatalf("open: %v", err)
		}
		t.Cleanup(func() { q.Close() })
		return q
	}
	a, b := open("a"), open("b")

	nc, err := nats.Connect(c.URLs()[0])
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	var markers atomic.Int64 // delete markers written to the state keys
	sub, err := nc.Subscribe("$KV.SWEEP_STATE.g.>", func(m *nats.Msg) {
		if m.Header.Get("KV-Operation") == "DEL" {
			markers.Add(1)
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Unsubscribe()

	const n = 20
	ids := appendN(t, a, n)
	recs := leaseAll(t, a, n, time.Minute)
	var changes []persist.Change
	for _, r := range recs {
		changes = append(changes, persist.Change{ID: r.ID, State: persist.StateDelivered})
	}
	for _, err := range a.Apply(t.Context(), "default", changes) {
		if err != nil {
			t.Fatal(err)
		}
	}
	gone := func(q *jsqueue.Queue) bool {
		for _, id := range ids {
			if _, err := q.Get(t.Context(), id); !errors.Is(err, persist.ErrNotFound) {
				return false
			}
		}
		return true
	}
	testutil.WaitFor(t, 10*time.Second, "swept on both relays", func() bool { return gone(a) && gone(b) })
	time.Sleep(time.Second) // sweeps of both relays after it
	nc.Flush()
	if got := markers.Load(); got != n {
		t.Fatalf("%d delete markers for %d state keys: more than one relay swept", got, n)
	}

	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	testutil.WaitFor(t, 10*time.Second, "delete markers purged", func() bool {
		ctx, cancel := context.WithTimeout(t.Context(), 2*time.Second)
		defer cancel()
		st, err := js.Stream(ctx, "KV_SWEEP_STATE")
		if err != nil {
			return false
		}
		info, err := st.Info(ctx, jetstream.WithSubjectFilter("$KV.SWEEP_STATE.g.>"))
		return err == nil && len(info.State.Subjects) == 0
	})
}

// A relay that closes hands back the leases it holds, all of them, so that another relay
// leases those webhooks at once instead of after their lease time.
func TestCloseHandsBackLeases(t *testing.T) {
	c := natstest.Start(t, 1)
	a, b := openOne(t, c.URLs(), "HANDBACK"), openOne(t, c.URLs(), "HANDBACK")
	const n = 100
	appendN(t, a, n)
	leaseAll(t, a, n, time.Hour)
	start := time.Now()
	if err := a.Close(); err != nil {
		t.Fatal(err)
	}
	t.Logf("close handed back %d leases in %v", n, time.Since(start))
	leaseAll(t, b, n, time.Hour) // within its 10 s, not the hour a holds them for
}

// appendN appends n small webhooks to endpoint ep of q and returns their ids.
func appendN(t *testing.T, q *jsqueue.Queue, n int) []string {
	t.Helper()
	var ids []string
	for range n {
		r := &persist.Record{Queue: "ep", Method: "POST", Body: []byte("x")}
		if err := q.Append(t.Context(), r); err != nil {
			t.Fatal(err)
		}
		ids = append(ids, r.ID)
	}
	return ids
}

// leaseAll leases n webhooks of endpoint ep from q for ttl, waiting up to 10 s for the mirror
// to have them all.
func leaseAll(t *testing.T, q *jsqueue.Queue, n int, ttl time.Duration) []*persist.Record {
	t.Helper()
	var recs []*persist.Record
	testutil.WaitFor(t, 10*time.Second, fmt.Sprintf("%d leased", n), func() bool {
		got, err := q.Lease(t.Context(), "default", "ep", n-len(recs), ttl)
		if err != nil {
			t.Fatal(err)
		}
		recs = append(recs, got...)
		return len(recs) == n
	})
	return recs
}

// The sweeper hands its key back when it closes: another relay sweeps from its next sweep on,
// not only once the key ran out (three sweeps).
func TestSweeperHandsOverAtClose(t *testing.T) {
	c := natstest.Start(t, 1)
	const every = 2 * time.Second
	open := func(node string) *jsqueue.Queue {
		q, err := jsqueue.Open(t.Context(), jsqueue.Options{URLs: c.URLs(), Replicas: 1, Name: "HANDOVER",
			NodeID: node, GCInterval: every})
		if err != nil {
			t.Fatalf("open: %v", err)
		}
		t.Cleanup(func() { q.Close() })
		return q
	}
	qs := map[string]*jsqueue.Queue{"a": open("a"), "b": open("b")}
	nc, err := nats.Connect(c.URLs()[0])
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	kv, err := js.KeyValue(t.Context(), "HANDOVER_STATE")
	if err != nil {
		t.Fatal(err)
	}
	holder := func() string {
		e, err := kv.Get(t.Context(), "x.sweep")
		if err != nil {
			return ""
		}
		var l struct {
			Node  string `json:"node"`
			Until int64  `json:"until"`
		}
		if json.Unmarshal(e.Value(), &l) != nil || l.Until < time.Now().UnixNano() {
			return ""
		}
		return l.Node
	}
	var first string
	testutil.WaitFor(t, 3*every, "a sweeper", func() bool { first = holder(); return first != "" })
	qs[first].Close()
	closed := time.Now()
	other := map[string]string{"a": "b", "b": "a"}[first]
	testutil.WaitFor(t, 3*every, "the other relay sweeping", func() bool { return holder() == other })
	if d := time.Since(closed); d > 2*every { // one sweep of the other, with room for a slow machine; was 3 sweeps
		t.Fatalf("the other relay took over after %v: the closed one kept the key", d)
	}
}

// keep_done_max and keep_dead_max bound the finished webhooks a cluster keeps, as they do on
// the Badger store: the sweep deletes the ones finished first beyond them, delivered and dead
// counted apart, however young. Without the bounds every relay's mirror held every webhook
// of the last keep_done (24 h) in memory.
func TestSweepKeepsAtMostMax(t *testing.T) {
	c := natstest.Start(t, 1)
	q, err := jsqueue.Open(t.Context(), jsqueue.Options{URLs: c.URLs(), Replicas: 1, Name: "KEEPMAX",
		NodeID: "a", KeepDone: time.Hour, KeepDead: time.Hour, KeepDoneMax: 5, KeepDeadMax: 3,
		GCInterval: 300 * time.Millisecond})
	if err != nil {
		t.Fatalf("open: %v", err)
	}
	t.Cleanup(func() { q.Close() })
	const n = 12
	ids := appendN(t, q, n)
	leaseAll(t, q, n, time.Minute)
	for i, id := range ids { // one at a time: each finishes after the one before
		st := persist.StateDelivered
		if i >= 8 {
			st = persist.StateDead
		}
		for _, err := range q.Apply(t.Context(), "default", []persist.Change{{ID: id, State: st, Reason: "test"}}) {
			if err != nil {
				t.Fatal(err)
			}
		}
		time.Sleep(2 * time.Millisecond)
	}
	kept := func(id string) bool {
		_, err := q.Get(t.Context(), id)
		if err != nil && !errors.Is(err, persist.ErrNotFound) {
			t.Fatal(err)
		}
		return err == nil
	}
	// Delivered: 0..7, the newest 5 stay; dead: 8..11, the newest 3 stay.
	want := func(i int) bool { return (i >= 3 && i < 8) || i >= 9 }
	testutil.WaitFor(t, 10*time.Second, "the oldest finished beyond the bounds swept", func() bool {
		for i, id := range ids {
			if !want(i) && kept(id) {
				return false
			}
		}
		return true
	})
	time.Sleep(time.Second) // more sweeps: they keep what is within the bounds
	for i, id := range ids {
		if kept(id) != want(i) {
			t.Errorf("webhook %d (%s): kept %v, want %v", i, id, kept(id), want(i))
		}
	}
}
