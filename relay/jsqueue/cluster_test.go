package jsqueue_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"fmt"
	"io"
	"sync"
	"testing"
	"time"

	"github.com/hookrelay/hookrelay/internal/natstest"
	"github.com/hookrelay/hookrelay/persist"
	"github.com/hookrelay/hookrelay/relay/jsqueue"
)

func openCluster(t *testing.T, urls []string, name string) *jsqueue.Queue {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	q, err := jsqueue.Open(ctx, jsqueue.Options{URLs: urls, Replicas: 3, Name: name, GCInterval: time.Hour})
	if err != nil {
		t.Fatalf("open: %v", err)
	}
	t.Cleanup(func() { q.Close() })
	return q
}

// appendRetry appends r, retrying (with the id the first try assigned, so JetStream keeps
// one copy) while the cluster elects a new leader; it fails t after 30s.
func appendRetry(t *testing.T, q *jsqueue.Queue, r *persist.Record) {
	deadline := time.Now().Add(30 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		err := q.Append(ctx, r)
		cancel()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Errorf("append %s: %v", r.ID, err)
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// Every Append that returned survives a kill -9 of a NATS server mid-stream (and its
// restart), byte-exact and stored once, as a relay opening the queue afresh sees it.
func TestClusterKillNode(t *testing.T) {
	c := natstest.Start(t, 3)
	q := openCluster(t, c.URLs(), "KILL")
	const n = 300
	bodies := map[string][]byte{}
	var mu sync.Mutex
	killed := make(chan struct{})
	var wg sync.WaitGroup
	for w := range 3 {
		wg.Go(func() {
			for i := range n / 3 {
				body := []byte(fmt.Sprintf("webhook %d/%d", w, i))
				if i%40 == 7 {
					body = make([]byte, 2<<20+17) // stored in parts
					rand.Read(body)
				}
				r := &persist.Record{Queue: fmt.Sprintf("ep%d", w%2), Method: "POST", Body: bytes.Clone(body)}
				appendRetry(t, q, r)
				mu.Lock()
				bodies[r.ID] = body
				if len(bodies) == n/3 {
					close(killed)
				}
				mu.Unlock()
			}
		})
	}
	<-killed
	c.Kill(1)
	wg.Wait()
	c.Restart(1)
	if t.Failed() {
		return
	}
	if len(bodies) != n {
		t.Fatalf("%d webhooks appended, want %d", len(bodies), n)
	}

	fresh := openCluster(t, []string{c.Nodes[1].URL()}, "KILL")
	recs, err := fresh.List(t.Context(), persist.Filter{Limit: 10 * n})
	if err != nil {
		t.Fatal(err)
	}
	if len(recs) != n {
		t.Fatalf("a fresh queue lists %d webhooks, want %d (each stored once)", len(recs), n)
	}
	for id, want := range bodies {
		rc, err := fresh.Body(t.Context(), id)
		if err != nil {
			t.Fatalf("body %s: %v", id, err)
		}
		got, err := io.ReadAll(rc)
		rc.Close()
		if err != nil || !bytes.Equal(got, want) {
			t.Fatalf("body %s: %d bytes (%v), want %d", id, len(got), err, len(want))
		}
	}
}

// Two relays on one cluster: an append on one wakes the other, and leasing from both at once
// hands each webhook to exactly one of them.
func TestClusterTwoRelays(t *testing.T) {
	c := natstest.Start(t, 3)
	a := openCluster(t, []string{c.Nodes[0].URL()}, "TWO")
	b := openCluster(t, []string{c.Nodes[2].URL()}, "TWO")

	wake, _ := b.Ready("default", "ep")
	first := &persist.Record{Queue: "ep", Method: "POST", Body: []byte("x")}
	if err := a.Append(t.Context(), first); err != nil {
		t.Fatal(err)
	}
	select {
	case <-wake:
	case <-time.After(5 * time.Second):
		t.Fatal("an append on one relay did not wake the other")
	}
	const n = 60
	for i := range n - 1 {
		if err := a.Append(t.Context(), &persist.Record{Queue: "ep", Method: "POST", Body: []byte(fmt.Sprint(i))}); err != nil {
			t.Fatal(err)
		}
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		if l, _ := b.List(t.Context(), persist.Filter{Queue: "ep", Limit: n}); len(l) == n {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the other relay does not list every webhook")
		}
		time.Sleep(10 * time.Millisecond)
	}
	var mu sync.Mutex
	got := map[string]int{}
	var wg sync.WaitGroup
	for _, q := range []*jsqueue.Queue{a, b, a, b} {
		wg.Go(func() {
			for {
				recs, err := q.Lease(context.Background(), "default", "ep", 3, time.Minute)
				if err != nil {
					t.Errorf("lease: %v", err)
					return
				}
				if len(recs) == 0 {
					return
				}
				mu.Lock()
				for _, r := range recs {
					got[r.ID]++
				}
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if len(got) != n {
		t.Fatalf("leased %d webhooks, want %d", len(got), n)
	}
	for id, k := range got {
		if k != 1 {
			t.Fatalf("%s leased %d times", id, k)
		}
	}
	// An outcome recorded on one relay shows on the other.
	errs := b.Apply(t.Context(), "default", []persist.Change{{ID: first.ID, State: persist.StateDelivered}})
	if errs[0] != nil {
		t.Fatal(errs[0])
	}
	deadline = time.Now().Add(5 * time.Second)
	for {
		r, err := a.Get(t.Context(), first.ID)
		if err == nil && r.State == persist.StateDelivered {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the other relay shows %v, %v; want delivered", r, err)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
