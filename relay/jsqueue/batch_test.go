package jsqueue_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/hookrelay/hookrelay/internal/natstest"
	"github.com/hookrelay/hookrelay/persist"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// A lease round and a batch of outcomes are each one atomic batch of state writes: every
// write lands, and the revisions the relay takes for them are the bucket's (a wrong one would
// make its next write of the key fail). A key changed behind the relay's back in the middle
// of a batch sends the batch down the one-by-one path, which still records every change.
func TestClusterBatchedStateWrites(t *testing.T) {
	c := natstest.Start(t, 3)
	q := openCluster(t, c.URLs(), "BATCH")
	if !q.Batches() {
		t.Fatal("state writes are not batched on NATS 2.12+")
	}
	nc, err := nats.Connect(c.URLs()[1])
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, _ := jetstream.New(nc)
	kv, err := js.KeyValue(t.Context(), "BATCH_STATE")
	if err != nil {
		t.Fatal(err)
	}
	key := func(id string) string { return "g.ZGVmYXVsdA." + id } // "default" in base64url
	// A bucket read may be served by a replica a moment behind: ask again until it agrees.
	checkRevs := func(ids []string) {
		t.Helper()
		deadline := time.Now().Add(5 * time.Second)
		for _, id := range ids {
			for {
				var rev uint64
				e, err := kv.Get(t.Context(), key(id))
				if err == nil {
					rev = e.Revision()
				}
				got := q.StateRevision("default", id)
				if err == nil && got == rev {
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("%s: the relay holds revision %d, the bucket %d (%v)", id, got, rev, err)
				}
				time.Sleep(10 * time.Millisecond)
			}
		}
	}

	const n = 40
	for i := range n {
		if err := q.Append(t.Context(), &persist.Record{Queue: "ep", Method: "POST", Body: []byte(fmt.Sprint(i))}); err != nil {
			t.Fatal(err)
		}
	}
	recs, err := q.Lease(t.Context(), "default", "ep", n, time.Minute)
	if err != nil || len(recs) != n {
		t.Fatalf("leased %d of %d: %v", len(recs), n, err)
	}
	ids := make([]string, n)
	for i, r := range recs {
		ids[i] = r.ID
	}
	checkRevs(ids)

	// Another writer moves one key on; the relay's batch of outcomes for all of them (that
	// one's expected revision now stale, unless the watch was quicker) still records each.
	e, err := kv.Get(t.Context(), key(ids[7]))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := kv.Update(t.Context(), key(ids[7]), e.Value(), e.Revision()); err != nil {
		t.Fatal(err)
	}
	changes := make([]persist.Change, n)
	for i, id := range ids {
		changes[i] = persist.Change{ID: id, State: persist.StateDelivered, Delivery: &persist.Delivery{Status: 200}}
	}
	for i, err := range q.Apply(t.Context(), "default", changes) {
		if err != nil {
			t.Fatalf("outcome of %s: %v", ids[i], err)
		}
	}
	checkRevs(ids)
	for _, id := range ids {
		r, err := q.Get(t.Context(), id)
		if err != nil || r.State != persist.StateDelivered {
			t.Fatalf("%s: %v, %v; want delivered", id, r, err)
		}
	}
}
