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
	var ids []string
	for range n {
		r := &persist.Record{Queue: "ep", Method: "POST", Body: []byte("x")}
		if err := a.Append(t.Context(), r); err != nil {
			t.Fatal(err)
		}
		ids = append(ids, r.ID)
	}
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
	for range n {
		if err := a.Append(t.Context(), &persist.Record{Queue: "ep", Method: "POST", Body: []byte("x")}); err != nil {
			t.Fatal(err)
		}
	}
	leaseAll(t, a, n, time.Hour)
	start := time.Now()
	if err := a.Close(); err != nil {
		t.Fatal(err)
	}
	t.Logf("close handed back %d leases in %v", n, time.Since(start))
	leaseAll(t, b, n, time.Hour) // within its 10 s, not the hour a holds them for
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
