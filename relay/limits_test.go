package relay

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/hookrelay/hookrelay/internal/testutil"
	"github.com/hookrelay/hookrelay/protocol"
)

// streamBody writes headers, then zeros from one small buffer until total bytes are sent or
// the server stops reading; chunked frames them. It returns the server's answer and the bytes
// the client managed to send. The body is never held whole by the test.
func streamBody(t *testing.T, s *Server, head string, total int64, chunked bool) (*http.Response, int64) {
	t.Helper()
	c, err := net.Dial("tcp", s.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := io.WriteString(c, head); err != nil {
		t.Fatal(err)
	}
	sent := make(chan int64, 1)
	go func() {
		buf := make([]byte, 64<<10)
		var n int64
		for n < total {
			p := buf[:min(int64(len(buf)), total-n)]
			var err error
			if chunked {
				_, err = fmt.Fprintf(c, "%x\r\n%s\r\n", len(p), p)
			} else {
				_, err = c.Write(p)
			}
			if err != nil {
				break
			}
			n += int64(len(p))
		}
		sent <- n
	}()
	c.SetReadDeadline(time.Now().Add(30 * time.Second))
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	c.Close() // stops the writer if it is still going
	return resp, <-sent
}

func TestIngressBodyOverDefaultMaxBody(t *testing.T) {
	s := startServer(t, nil) // default max_body: 25 MiB
	const size = 26 << 20
	resp, sent := streamBody(t, s, fmt.Sprintf("POST /h/ep HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n", size), size, false)
	if resp.StatusCode != http.StatusRequestEntityTooLarge {
		t.Errorf("26 MiB with Content-Length: %d, want 413", resp.StatusCode)
	}
	t.Logf("Content-Length: answered after the client sent %d of %d bytes", sent, size)
	resp, _ = streamBody(t, s, "POST /h/ep HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n", size, true)
	if resp.StatusCode != http.StatusRequestEntityTooLarge {
		t.Errorf("26 MiB chunked: %d, want 413", resp.StatusCode)
	}
	if n := stored(t, s, "ep"); n != 0 {
		t.Errorf("%d records stored from bodies over max_body", n)
	}
	if got := counterValue(t, s.metrics.rejected.WithLabelValues("ep", limitBody)); got != 2 {
		t.Errorf("rejected {ep, body} = %v, want 2", got)
	}
	// The relay still takes a body of normal size.
	accept(t, s, "/h/ep", []byte("ok"))
}

// trickle opens a connection, writes head, then one byte of rest every 20ms; it returns
// what the server answered (nil when it closed without an answer) and how long that took.
func trickle(t *testing.T, s *Server, head, rest string) (*http.Response, time.Duration) {
	t.Helper()
	c, err := net.Dial("tcp", s.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	start := time.Now()
	io.WriteString(c, head)
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		tick := time.NewTicker(20 * time.Millisecond)
		defer tick.Stop()
		for i := 0; i < len(rest); i++ {
			select {
			case <-stop:
				return
			case <-tick.C:
			}
			if _, err := c.Write([]byte{rest[i]}); err != nil {
				return
			}
		}
	}()
	defer func() { close(stop); <-done }()
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	took := time.Since(start)
	var ne net.Error
	if err != nil && errors.As(err, &ne) && ne.Timeout() {
		t.Fatalf("the server kept a trickling client for 10s")
	}
	if err != nil {
		return nil, took
	}
	resp.Body.Close()
	return resp, took
}

func TestSlowLorisHeadersCut(t *testing.T) {
	s := startServer(t, func(c *Config) { c.ReadHeaderTimeout = 300 * time.Millisecond })
	// Headers that would take 20ms × 400 = 8s.
	rest := "Host: x\r\n" + strings.Repeat("X-Slow: 1\r\n", 35) + "Content-Length: 1\r\n\r\nx"
	resp, took := trickle(t, s, "POST /h/ep HTTP/1.1\r\n", rest)
	if resp != nil && resp.StatusCode == http.StatusAccepted {
		t.Fatal("a slow-loris request was accepted")
	}
	if took < 250*time.Millisecond || took > 5*time.Second {
		t.Errorf("cut after %v, want about read_header_timeout (300ms)", took)
	}
	if n := stored(t, s, "ep"); n != 0 {
		t.Errorf("%d records stored", n)
	}
}

func TestSlowBodyCut(t *testing.T) {
	s := startServer(t, func(c *Config) { c.BodyTimeout = 300 * time.Millisecond })
	body := strings.Repeat("b", 400) // 8s at one byte per 20ms
	resp, took := trickle(t, s, fmt.Sprintf("POST /h/ep HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n", len(body)), body)
	if resp == nil || resp.StatusCode != http.StatusRequestTimeout {
		t.Fatalf("trickled body: %v, want 408", resp)
	}
	if took < 250*time.Millisecond || took > 5*time.Second {
		t.Errorf("cut after %v, want about body_timeout (300ms)", took)
	}
	if n := stored(t, s, "ep"); n != 0 {
		t.Errorf("%d records stored", n)
	}
	if got := counterValue(t, s.metrics.rejected.WithLabelValues("ep", limitTimeout)); got != 1 {
		t.Errorf("rejected {ep, timeout} = %v, want 1", got)
	}
	if got := s.ingressMem.Load(); got != 0 {
		t.Errorf("ingress buffer still holds %d bytes", got)
	}
}

// TestTunnelHandshakeTimeoutCounted: an agent that sends no Hello is closed after
// handshake_timeout, and the failure is counted.
func TestTunnelHandshakeTimeoutCounted(t *testing.T) {
	s := startServer(t, func(c *Config) { c.HandshakeTimeout = 200 * time.Millisecond })
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	tun, err := protocol.DialWebSocket(ctx, "ws://"+s.Addr()+"/v1/tunnel", protocol.WSDialConfig{})
	if err != nil {
		t.Fatal(err)
	}
	defer tun.Close()
	start := time.Now()
	if f, err := tun.ReadFrame(); err == nil {
		t.Fatalf("silent agent got %#v, want the tunnel closed", f)
	}
	if took := time.Since(start); took > 5*time.Second {
		t.Errorf("closed after %v, want about handshake_timeout (200ms)", took)
	}
	testutil.WaitFor(t, 10*time.Second, "handshake failure counted", func() bool {
		return counterValue(t, s.metrics.handshakeFail.WithLabelValues("timeout")) == 1
	})
}

func TestAgentsPerToken(t *testing.T) {
	s := startServer(t, func(c *Config) { c.MaxAgentsPerToken = 2 })
	a1 := dial(t, s, tokenA, "edge-1")
	dial(t, s, tokenA, "edge-2")
	a3 := connect(t, s, protocol.Hello{AgentID: "edge-3", Token: tokenA})
	got := a3.ended()
	if len(got) != 1 {
		t.Fatalf("third agent got %v, want one Error", got)
	}
	if e, ok := got[0].(*protocol.Error); !ok || e.Code != protocol.CodeLimit {
		t.Fatalf("third agent got %#v, want Error{limit}", got[0])
	}
	if counterValue(t, s.metrics.handshakeFail.WithLabelValues("agents_per_token")) != 1 {
		t.Error("agents_per_token refusal not counted")
	}
	// The same agent id reconnecting replaces its session: not a third agent.
	dial(t, s, tokenA, "edge-2")
	// Once one leaves, another may come.
	a1.close()
	testutil.WaitFor(t, 10*time.Second, "edge-1 gone", func() bool { return len(s.Agents()) == 1 })
	dial(t, s, tokenA, "edge-3")
}

func TestTunnelFrameTooLarge(t *testing.T) {
	s := startServer(t, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	// A client that allows itself 4 MiB frames sends one of 2 MiB after its welcome.
	tun, err := protocol.DialWebSocket(ctx, "ws://"+s.Addr()+"/v1/tunnel",
		protocol.WSDialConfig{WSConfig: protocol.WSConfig{MaxFrame: 4 << 20}})
	if err != nil {
		t.Fatal(err)
	}
	defer tun.Close()
	if err := tun.WriteFrame(&protocol.Hello{Version: protocol.Version, AgentID: "big", Token: tokenA}); err != nil {
		t.Fatal(err)
	}
	if f, err := tun.ReadFrame(); err != nil {
		t.Fatal(err)
	} else if _, ok := f.(*protocol.Welcome); !ok {
		t.Fatalf("got %#v, want welcome", f)
	}
	id := accept(t, s, "/h/ep", []byte("waits"))
	ids := make([]string, 0, 1<<16)
	for i := 0; len(ids) < cap(ids); i++ {
		ids = append(ids, fmt.Sprintf("%032d", i))
	}
	tun.WriteFrame(&protocol.Ack{IDs: ids})
	var last protocol.Frame
	for {
		f, err := tun.ReadFrame()
		if err != nil {
			break
		}
		last = f
	}
	if e, ok := last.(*protocol.Error); !ok || e.Code != protocol.CodeLimit {
		t.Fatalf("last frame %#v, want Error{limit}", last)
	}
	testutil.WaitFor(t, 10*time.Second, "session end counted", func() bool {
		return counterValue(t, s.metrics.sessionsEnded.WithLabelValues("frame_too_large")) == 1
	})
	// The webhook it was sent is released for the next agent, not lost.
	a := dial(t, s, tokenA, "next")
	if w := a.webhook(); w.ID != id {
		t.Fatalf("next agent got %s, want %s", w.ID, id)
	}
	if counterValue(t, s.metrics.released.WithLabelValues("ep", DefaultGroup)) != 1 || counterValue(t, s.metrics.dispatched.WithLabelValues("ep", DefaultGroup)) != 2 {
		t.Error("release and redelivery not counted")
	}
}
