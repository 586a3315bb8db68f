package jsqueue_test

import (
	"bytes"
	"encoding/base64"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/hookrelay/hookrelay/internal/natstest"
	"github.com/hookrelay/hookrelay/persist"
	"github.com/hookrelay/hookrelay/relay/jsqueue"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// openOne opens the queue name on a one-node cluster.
func openOne(t *testing.T, urls []string, name string) *jsqueue.Queue {
	t.Helper()
	q, err := jsqueue.Open(t.Context(), jsqueue.Options{URLs: urls, Replicas: 1, Name: name, GCInterval: time.Hour})
	if err != nil {
		t.Fatalf("open: %v", err)
	}
	t.Cleanup(func() { q.Close() })
	return q
}

// A webhook message's subject is its endpoint's (<name>.wh.<endpoint>), not one per webhook.
// Webhooks stored by an older relay, whose subjects end in their id, are still seen by a
// relay running (its watch) and by one opened after (its catch-up): got, leased, finished and
// deleted like the new ones.
func TestWebhookSubjects(t *testing.T) {
	c := natstest.Start(t, 1)
	a := openOne(t, c.URLs(), "SUBJ")
	nc, err := nats.Connect(c.URLs()[0])
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, _ := jetstream.New(nc)
	ep := base64.RawURLEncoding.EncodeToString([]byte("ep"))

	// An older relay's webhook: its id is the subject's last token.
	oldID := "01OLDSTYLE0000000000000000"
	oldBody := []byte("stored by an older relay")
	msg := &nats.Msg{Subject: "SUBJ.wh." + ep + "." + oldID, Header: nats.Header{}, Data: oldBody}
	msg.Header.Set("Hookrelay-Meta", fmt.Sprintf(`{"id":%q,"q":"ep","at":%d,"n":%d,"size":%d}`,
		oldID, time.Now().UnixNano(), len(oldBody), len(oldBody)))
	if _, err := js.PublishMsg(t.Context(), msg, jetstream.WithMsgID(oldID)); err != nil {
		t.Fatal(err)
	}
	newRec := &persist.Record{Queue: "ep", Body: []byte("stored now")}
	if err := a.Append(t.Context(), newRec); err != nil {
		t.Fatal(err)
	}
	last, err := js.Stream(t.Context(), "SUBJ_WEBHOOKS")
	if err != nil {
		t.Fatal(err)
	}
	m, err := last.GetLastMsgForSubject(t.Context(), "SUBJ.wh.>")
	if err != nil {
		t.Fatal(err)
	}
	if want := "SUBJ.wh." + ep; m.Subject != want {
		t.Fatalf("a webhook appended now has subject %q, want %q", m.Subject, want)
	}

	// The running relay's watch brings the old one in.
	deadline := time.Now().Add(10 * time.Second)
	for {
		r, err := a.Get(t.Context(), oldID)
		if err == nil {
			if !bytes.Equal(r.Body, oldBody) || r.State != persist.StateReady {
				t.Fatalf("old-style webhook as the running relay sees it: %q %v", r.Body, r.State)
			}
			break
		}
		if !errors.Is(err, persist.ErrNotFound) || time.Now().After(deadline) {
			t.Fatalf("get old-style webhook on the running relay: %v", err)
		}
		time.Sleep(10 * time.Millisecond)
	}
	// A relay opened now catches up with both, in stream order, and leases them.
	b := openOne(t, c.URLs(), "SUBJ")
	recs, err := b.Lease(t.Context(), "default", "ep", 10, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	if len(recs) != 2 || recs[0].ID != oldID || recs[1].ID != newRec.ID ||
		!bytes.Equal(recs[0].Body, oldBody) || !bytes.Equal(recs[1].Body, newRec.Body) {
		t.Fatalf("leased %d webhooks on a relay opened after, want the old one then the new one", len(recs))
	}
	for _, r := range recs {
		errs := b.Apply(t.Context(), "default", []persist.Change{{ID: r.ID, State: persist.StateDelivered,
			Delivery: &persist.Delivery{Status: 200}}})
		if errs[0] != nil {
			t.Fatal(errs[0])
		}
		if err := b.Delete(t.Context(), "", r.ID); err != nil {
			t.Fatalf("delete %s: %v", r.ID, err)
		}
	}
	st, err := last.Info(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if st.State.Msgs != 0 {
		t.Fatalf("%d messages left in the stream after both were deleted", st.State.Msgs)
	}
}
