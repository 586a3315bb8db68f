package jsqueue_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/hookrelay/hookrelay/internal/natstest"
	"github.com/hookrelay/hookrelay/relay/jsqueue"
)

// A relay started before its NATS server waits for it (operators start both together); with
// none answering before the deadline, Open says so.
func TestOpenWaitsForNATS(t *testing.T) {
	c := natstest.Start(t, 1)
	c.Kill(0)
	opened := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		q, err := jsqueue.Open(ctx, jsqueue.Options{URLs: c.URLs(), Replicas: 1, Name: "LATE", GCInterval: time.Hour})
		if err == nil {
			q.Close()
		}
		opened <- err
	}()
	time.Sleep(500 * time.Millisecond) // the server comes up after the relay: that is the case
	c.Restart(0)
	if err := <-opened; err != nil {
		t.Fatalf("open while the server came up: %v", err)
	}

	c.Kill(0)
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	_, err := jsqueue.Open(ctx, jsqueue.Options{URLs: c.URLs(), Replicas: 1, Name: "NONE", GCInterval: time.Hour})
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("open with no server: %v, want the deadline", err)
	}
}
