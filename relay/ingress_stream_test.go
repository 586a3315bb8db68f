package relay

import (
	"bytes"
	"context"
	"io"
	"math/rand/v2"
	"net/http"
	"testing"
	"time"

	"github.com/hookrelay/hookrelay/persist"
)

// A body over streamOver is stored while it is read: byte-exact, left out of leases and
// streamed back by Body, its charge to the ingress buffer given back. One over max_body gets
// 413 and nothing is stored.
func TestIngressStreamsLargeBody(t *testing.T) {
	s := startServer(t, func(c *Config) {
		c.Endpoints[0].MaxBody = 8 << 20
	})
	body := make([]byte, 5<<20+99)
	rand.NewChaCha8([32]byte{5}).Read(body)
	id := accept(t, s, "/h/ep/big", body)
	ctx := context.Background()
	leased, err := s.queue.Lease(ctx, DefaultGroup, "ep", 10, 60e9)
	if err != nil || len(leased) != 1 {
		t.Fatalf("lease: %v %v", leased, err)
	}
	if leased[0].Body != nil || leased[0].BodyLen != int64(len(body)) || leased[0].Path != "/big" {
		t.Fatalf("leased: %d body bytes, BodyLen %d, path %q", len(leased[0].Body), leased[0].BodyLen, leased[0].Path)
	}
	rc, err := s.queue.Body(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(rc)
	rc.Close()
	if err != nil || !bytes.Equal(got, body) {
		t.Fatalf("body read back: %d bytes (%v), not the body posted", len(got), err)
	}
	if n := s.ingressMem.Load(); n != 0 {
		t.Fatalf("ingress buffer holds %d bytes after the request", n)
	}

	big := make([]byte, 9<<20)
	if code, _, _ := post(t, s, "POST", "/h/ep", big, nil); code != http.StatusRequestEntityTooLarge {
		t.Fatalf("over max_body: %d, want 413", code)
	}
	recs, err := s.queue.List(ctx, persist.Filter{Queue: "ep"})
	if err != nil || len(recs) != 1 {
		t.Fatalf("stored %d records (%v), want the first only", len(recs), err)
	}
}

// A streamed body holds one store buffer of the ingress buffer however much of it arrived,
// where a buffered one holds what arrived: with 6 of its 8 MiB sent, the relay's charge
// reaches streamBuffer and stays there.
func TestIngressStreamHoldsOneBuffer(t *testing.T) {
	s := startServer(t, func(c *Config) { c.Endpoints[0].MaxBody = 8 << 20 })
	head := "POST /h/ep HTTP/1.1\r\nHost: x\r\nContent-Length: 8388608\r\n\r\n"
	holdBody(t, s, "127.0.0.2", head, string(make([]byte, 6<<20)))
	deadline := time.Now().Add(10 * time.Second)
	for s.ingressMem.Load() < streamBuffer {
		if time.Now().After(deadline) {
			t.Fatalf("ingress buffer holds %d bytes after 10s, want %d", s.ingressMem.Load(), streamBuffer)
		}
		time.Sleep(5 * time.Millisecond)
	}
	// Buffered, the rest of the 6 MiB (already on the loopback socket) would be charged
	// within milliseconds.
	for end := time.Now().Add(300 * time.Millisecond); time.Now().Before(end); time.Sleep(5 * time.Millisecond) {
		if n := s.ingressMem.Load(); n > streamBuffer {
			t.Fatalf("ingress buffer holds %d bytes for one streamed body, want at most %d", n, streamBuffer)
		}
	}
}
