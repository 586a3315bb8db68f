package relay

import (
	"context"
	"testing"
	"time"
)

// A dispatcher that leases a webhook before its ingress request registered the id still
// learns that the request waits for it: expect waits for the requests announced before it.
func TestSyncExpectWaitsForAnnouncedRequests(t *testing.T) {
	w := newSyncWaits()
	ctx := context.Background()
	if w.expect(ctx, "a", "ep") {
		t.Fatal("expect with no request: true")
	}
	register := w.prepare("ep")
	got := make(chan bool, 1)
	go func() { got <- w.expect(ctx, "a", "ep") }()
	select {
	case v := <-got:
		t.Fatalf("expect answered %v before the announced request registered", v)
	case <-time.After(50 * time.Millisecond): // expect must still be waiting: absence of an answer
	}
	sw := register("a")
	if !<-got {
		t.Fatal("expect of a registered id: false")
	}
	if !w.answer("a", syncAnswer{}) || w.answer("a", syncAnswer{}) {
		t.Fatal("answer: want true once, then false")
	}
	if a := <-sw.answer; a.resp != nil {
		t.Fatalf("answer %+v", a)
	}

	// Requests announced after expect began cannot have stored its webhook: they do not
	// hold it up (a busy endpoint never stalls a dispatcher for syncSettle).
	first := w.prepare("ep")
	_, pending := w.pendingFor("c", "ep")
	go func() { got <- w.await(ctx, "c", pending) }()
	later := w.prepare("ep")
	defer later("")
	start := time.Now()
	first("c")
	if !<-got || time.Since(start) > time.Second {
		t.Fatalf("expect after its request registered took %v", time.Since(start))
	}
}
