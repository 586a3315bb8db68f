package jsqueue_test

import (
	"testing"
	"time"

	"github.com/hookrelay/hookrelay/internal/natstest"
	"github.com/hookrelay/hookrelay/relay/jsqueue"
)

// A message id forgotten for the id it names (its answer went back to the sender) is unknown
// afterwards; forgetting it for another id leaves it.
func TestForgetMessageID(t *testing.T) {
	c := natstest.Start(t, 1)
	ctx := t.Context()
	q, err := jsqueue.Open(ctx, jsqueue.Options{URLs: c.URLs(), Replicas: 1, Name: "FORGET", GCInterval: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { q.Close() })
	if first, err := q.RememberMessageID(ctx, "ep", "msg_1", "01FIRST", time.Minute); err != nil || first != "01FIRST" {
		t.Fatalf("remember: %q %v", first, err)
	}
	if err := q.ForgetMessageID(ctx, "ep", "msg_1", "01OTHER"); err != nil {
		t.Fatal(err)
	}
	if id, err := q.MessageID(ctx, "ep", "msg_1"); err != nil || id != "01FIRST" {
		t.Fatalf("after forgetting another id: %q %v, want 01FIRST", id, err)
	}
	if err := q.ForgetMessageID(ctx, "ep", "msg_1", "01FIRST"); err != nil {
		t.Fatal(err)
	}
	if id, err := q.MessageID(ctx, "ep", "msg_1"); err != nil || id != "" {
		t.Fatalf("after forgetting it: %q %v, want none", id, err)
	}
	if first, err := q.RememberMessageID(ctx, "ep", "msg_1", "01SECOND", time.Minute); err != nil || first != "01SECOND" {
		t.Fatalf("a resend after forgetting: %q %v, want itself first", first, err)
	}
	if err := q.ForgetMessageID(ctx, "ep", "never", "x"); err != nil {
		t.Fatalf("forget an unknown id: %v", err)
	}
}
