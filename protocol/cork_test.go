package protocol

import (
	"bytes"
	"fmt"
	"io"
	"net"
	"sync"
	"testing"
	"time"
)

// countConn counts the writes that reach the connection under a corkConn.
type countConn struct {
	net.Conn
	mu     sync.Mutex
	writes int
}

func (c *countConn) Write(p []byte) (int, error) {
	c.mu.Lock()
	c.writes++
	c.mu.Unlock()
	return c.Conn.Write(p)
}

func (c *countConn) count() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.writes
}

// tcpPair returns both ends of a loopback TCP connection.
func tcpPair(t *testing.T) (net.Conn, net.Conn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	accepted := make(chan net.Conn, 1)
	go func() {
		c, _ := ln.Accept()
		accepted <- c
	}()
	a, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	b := within(t, 5*time.Second, "accept", func() net.Conn { return <-accepted })
	t.Cleanup(func() { a.Close(); b.Close() })
	return a, b
}

// Corked writes reach the connection in one write, in order; uncorked ones and big ones go
// through at once.
func TestCorkConnHoldsWritesUntilUncork(t *testing.T) {
	a, b := tcpPair(t)
	under := &countConn{Conn: a}
	c := newCorkConn(under, 5*time.Second)

	c.Write([]byte("plain"))
	if under.count() != 1 {
		t.Fatalf("uncorked write: %d writes below, want 1", under.count())
	}
	c.cork()
	for i := range 3 {
		c.Write(fmt.Appendf(nil, "[%d]", i))
	}
	if under.count() != 1 {
		t.Fatalf("corked writes reached the connection: %d writes", under.count())
	}
	if err := c.uncork(); err != nil {
		t.Fatal(err)
	}
	if under.count() != 2 {
		t.Fatalf("uncork: %d writes below, want 2", under.count())
	}
	c.cork()
	c.Write([]byte("<"))
	big := bytes.Repeat([]byte("B"), corkMax)
	c.Write(big) // sends what is held, then itself
	if under.count() != 4 {
		t.Fatalf("big corked write: %d writes below, want 4", under.count())
	}
	if err := c.uncork(); err != nil || under.count() != 4 {
		t.Fatalf("uncork with nothing held: %v, %d writes", err, under.count())
	}

	want := "plain[0][1][2]<" + string(big)
	got := make([]byte, len(want))
	b.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.ReadFull(b, got); err != nil || string(got) != want {
		t.Fatalf("peer read %d bytes (%v), want the writes in order", len(got), err)
	}

	// A failed send of held bytes is reported by uncork and sticks.
	c.cork()
	c.Write([]byte("lost"))
	a.Close()
	if err := c.uncork(); err == nil {
		t.Fatal("uncork onto a closed connection: no error")
	}
	if _, err := c.Write([]byte("x")); err == nil {
		t.Fatal("write after a failed send: no error")
	}
}

// Over a real WebSocket tunnel, frames written corked arrive whole and in order.
func TestWebSocketCorkedFrames(t *testing.T) {
	client, server := wsPair(t, WSConfig{})
	for _, tun := range []Tunnel{client, server} {
		c, ok := tun.(Corker)
		if !ok {
			t.Fatalf("%T is not a Corker", tun)
		}
		peer := server
		if tun == server {
			peer = client
		}
		c.Cork()
		const n = 50
		for i := range n {
			if err := tun.WriteFrame(&Ack{IDs: []string{fmt.Sprint("id-", i)}}); err != nil {
				t.Fatal(err)
			}
		}
		if err := c.Uncork(); err != nil {
			t.Fatal(err)
		}
		for i := range n {
			f, err := readWithin(t, peer, 5*time.Second)
			if err != nil {
				t.Fatal(err)
			}
			if a, ok := f.(*Ack); !ok || len(a.IDs) != 1 || a.IDs[0] != fmt.Sprint("id-", i) {
				t.Fatalf("frame %d: %#v", i, f)
			}
		}
	}
}
