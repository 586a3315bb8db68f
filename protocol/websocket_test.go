package protocol

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"reflect"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gorilla/websocket"
)

// wsPair runs AcceptWebSocket behind an httptest server on 127.0.0.1 and dials it; it returns
// (agent side, relay side).
func wsPair(t testing.TB, cfg WSConfig) (Tunnel, Tunnel) {
	t.Helper()
	accepted := make(chan Tunnel, 1)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		tun, err := AcceptWebSocket(w, r, cfg)
		if err != nil {
			t.Errorf("accept: %v", err)
			return
		}
		accepted <- tun
	}))
	t.Cleanup(srv.Close)
	client, err := DialWebSocket(context.Background(), "ws"+strings.TrimPrefix(srv.URL, "http")+"/v1/tunnel",
		WSDialConfig{WSConfig: cfg})
	if err != nil {
		t.Fatal(err)
	}
	server := within(t, 5*time.Second, "accept", func() Tunnel { return <-accepted })
	t.Cleanup(func() { client.Close(); server.Close() })
	return client, server
}

func wsURL(srv *httptest.Server) string {
	return "ws" + strings.TrimPrefix(srv.URL, "http")
}

func TestWebSocketFramesBothWays(t *testing.T) {
	client, server := wsPair(t, WSConfig{})
	if client.Transport() != "websocket" || server.Transport() != "websocket" {
		t.Fatalf("transport %q/%q", client.Transport(), server.Transport())
	}
	if !strings.HasPrefix(client.RemoteAddr(), "127.0.0.1:") ||
		!strings.HasPrefix(server.RemoteAddr(), "127.0.0.1:") {
		t.Fatalf("remote addrs %q, %q", client.RemoteAddr(), server.RemoteAddr())
	}
	exchangeAll(t, client, server, true)
}

// TestWebSocketLargeWebhooks sends three 5 MiB webhooks concurrently with SendWebhook: the
// frames interleave on the one connection and the Assembler rebuilds each.
func TestWebSocketLargeWebhooks(t *testing.T) {
	client, server := wsPair(t, WSConfig{})
	largeWebhooks(t, server, client)
}

func TestWebSocketFrameTooLargeRefusedLocally(t *testing.T) {
	client, server := wsPair(t, WSConfig{MaxFrame: 1024})
	err := client.WriteFrame(&Webhook{ID: "w", BodyLen: 2000, Body: binaryBody(2000)})
	if !errors.Is(err, ErrFrameTooLarge) {
		t.Fatalf("oversized write: %v, want ErrFrameTooLarge", err)
	}
	// The tunnel is still usable.
	if err := client.WriteFrame(&Ping{Nonce: 3}); err != nil {
		t.Fatal(err)
	}
	if f, err := readWithin(t, server, 5*time.Second); err != nil || !reflect.DeepEqual(f, &Ping{Nonce: 3}) {
		t.Fatalf("after refusal: %v, %v", f, err)
	}
}

func TestWebSocketWrongSubprotocolRefused(t *testing.T) {
	acceptErr := make(chan error, 1)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, err := AcceptWebSocket(w, r, WSConfig{})
		acceptErr <- err
	}))
	defer srv.Close()

	d := websocket.Dialer{Subprotocols: []string{"hookrelay.v0"}}
	_, resp, err := d.Dial(wsURL(srv), nil)
	if err == nil || resp == nil || resp.StatusCode != http.StatusBadRequest {
		t.Fatalf("dial with another subprotocol: %v, %v; want a 400", resp, err)
	}
	body, _ := io.ReadAll(resp.Body)
	if !strings.Contains(string(body), Subprotocol) {
		t.Fatalf("400 body %q does not name %s", body, Subprotocol)
	}
	if err := <-acceptErr; !errors.Is(err, ErrSubprotocol) {
		t.Fatalf("accept: %v, want ErrSubprotocol", err)
	}

	// A server that ignores the subprotocol is refused by the dialer.
	plain := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if c, err := (&websocket.Upgrader{}).Upgrade(w, r, nil); err == nil {
			c.Close()
		}
	}))
	defer plain.Close()
	if _, err := DialWebSocket(context.Background(), wsURL(plain), WSDialConfig{}); !errors.Is(err, ErrSubprotocol) {
		t.Fatalf("dial a server without the subprotocol: %v, want ErrSubprotocol", err)
	}
}

func TestWebSocketDialErrorNamesStatus(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "no tunnel here", http.StatusNotFound)
	}))
	defer srv.Close()
	_, err := DialWebSocket(context.Background(), wsURL(srv), WSDialConfig{})
	if err == nil || !strings.Contains(err.Error(), "404") || !strings.Contains(err.Error(), "no tunnel here") {
		t.Fatalf("dial a 404: %v", err)
	}
}

// TestWebSocketDeadPeer: the relay side upgrades and then never reads, so it answers no ping;
// the agent's ReadFrame must fail by the read deadline.
func TestWebSocketDeadPeer(t *testing.T) {
	hold := make(chan struct{})
	defer close(hold)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		up := websocket.Upgrader{Subprotocols: []string{Subprotocol}}
		c, err := up.Upgrade(w, r, nil)
		if err != nil {
			return
		}
		<-hold
		c.Close()
	}))
	defer srv.Close()
	cfg := WSConfig{PingInterval: 50 * time.Millisecond, ReadTimeout: 300 * time.Millisecond}
	client, err := DialWebSocket(context.Background(), wsURL(srv), WSDialConfig{WSConfig: cfg})
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	start := time.Now()
	_, err = readWithin(t, client, 10*time.Second)
	var ne net.Error
	if !errors.As(err, &ne) || !ne.Timeout() {
		t.Fatalf("read from a silent peer: %v, want a timeout", err)
	}
	if took := time.Since(start); took < cfg.ReadTimeout {
		t.Fatalf("gave up after %s, before the read timeout", took)
	}
}

// TestWebSocketKeepaliveHoldsIdleTunnel: with no frames for many read timeouts, pings and
// pongs alone keep both sides up.
func TestWebSocketKeepaliveHoldsIdleTunnel(t *testing.T) {
	t.Parallel()
	cfg := WSConfig{PingInterval: 100 * time.Millisecond, ReadTimeout: 1500 * time.Millisecond}
	client, server := wsPair(t, cfg)
	results := make(chan frameResult, 2)
	for _, tun := range []Tunnel{client, server} {
		go func() {
			f, err := tun.ReadFrame()
			results <- frameResult{f, err}
		}()
	}
	select {
	case r := <-results:
		t.Fatalf("idle tunnel broke: %v", r.err)
	case <-time.After(2 * cfg.ReadTimeout):
	}
	if err := server.WriteFrame(&Ping{Nonce: 1}); err != nil {
		t.Fatal(err)
	}
	if err := client.WriteFrame(&Pong{Nonce: 1}); err != nil {
		t.Fatal(err)
	}
	for range 2 {
		r := within(t, 5*time.Second, "read", func() frameResult { return <-results })
		if r.err != nil {
			t.Fatalf("after idling: %v", r.err)
		}
	}
}

// TestWebSocketPongsKeepTunnelUp: a peer that only answers pings (and never pings itself)
// keeps the tunnel up: pongs extend the read deadline.
func TestWebSocketPongsKeepTunnelUp(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		up := websocket.Upgrader{Subprotocols: []string{Subprotocol}}
		c, err := up.Upgrade(w, r, nil)
		if err != nil {
			return
		}
		defer c.Close()
		for { // the default ping handler answers pongs while reading
			if _, _, err := c.ReadMessage(); err != nil {
				return
			}
		}
	}))
	defer srv.Close()
	t.Parallel()
	cfg := WSConfig{PingInterval: 100 * time.Millisecond, ReadTimeout: 1500 * time.Millisecond}
	client, err := DialWebSocket(context.Background(), wsURL(srv), WSDialConfig{WSConfig: cfg})
	if err != nil {
		t.Fatal(err)
	}
	errc := make(chan error, 1)
	go func() {
		_, err := client.ReadFrame()
		errc <- err
	}()
	select {
	case err := <-errc:
		t.Fatalf("tunnel to a live peer broke: %v", err)
	case <-time.After(2 * cfg.ReadTimeout):
	}
	client.Close()
	if err := within(t, 5*time.Second, "read", func() error { return <-errc }); !errors.Is(err, ErrClosed) {
		t.Fatalf("after Close: %v", err)
	}
}

func TestWebSocketClose(t *testing.T) {
	client, server := wsPair(t, WSConfig{})
	blocked := make(chan error, 1)
	go func() {
		_, err := server.ReadFrame()
		blocked <- err
	}()
	peerErr := make(chan error, 1)
	go func() {
		_, err := client.ReadFrame()
		peerErr <- err
	}()
	if err := server.Close(); err != nil {
		t.Fatal(err)
	}
	if err := server.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	if err := within(t, 5*time.Second, "blocked read", func() error { return <-blocked }); !errors.Is(err, ErrClosed) {
		t.Fatalf("read blocked during Close: %v, want ErrClosed", err)
	}
	if _, err := server.ReadFrame(); !errors.Is(err, ErrClosed) {
		t.Fatalf("read after Close: %v, want ErrClosed", err)
	}
	if err := server.WriteFrame(&Ping{}); !errors.Is(err, ErrClosed) {
		t.Fatalf("write after Close: %v, want ErrClosed", err)
	}
	if err := within(t, 5*time.Second, "peer read", func() error { return <-peerErr }); !errors.Is(err, io.EOF) {
		t.Fatalf("peer of a closed tunnel: %v, want io.EOF", err)
	}
}

// TestWebSocketThroughProxy dials through an HTTP CONNECT proxy, as HTTPS_PROXY makes the
// agent do.
func TestWebSocketThroughProxy(t *testing.T) {
	client, server := func() (Tunnel, Tunnel) {
		accepted := make(chan Tunnel, 1)
		relay := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if tun, err := AcceptWebSocket(w, r, WSConfig{}); err == nil {
				accepted <- tun
			}
		}))
		t.Cleanup(relay.Close)
		var connects atomic.Int32
		proxy := httptest.NewServer(connectProxy(t, &connects))
		t.Cleanup(proxy.Close)
		proxyURL, _ := url.Parse(proxy.URL)
		c, err := DialWebSocket(context.Background(), wsURL(relay),
			WSDialConfig{Proxy: http.ProxyURL(proxyURL)})
		if err != nil {
			t.Fatal(err)
		}
		if connects.Load() != 1 {
			t.Fatalf("proxy saw %d CONNECTs, want 1", connects.Load())
		}
		s := within(t, 5*time.Second, "accept", func() Tunnel { return <-accepted })
		t.Cleanup(func() { c.Close(); s.Close() })
		return c, s
	}()
	if err := client.WriteFrame(&Hello{AgentID: "behind-proxy"}); err != nil {
		t.Fatal(err)
	}
	f, err := readWithin(t, server, 5*time.Second)
	if err != nil || f.(*Hello).AgentID != "behind-proxy" {
		t.Fatalf("through proxy: %v, %v", f, err)
	}
}

// connectProxy is a minimal HTTP CONNECT proxy.
func connectProxy(t *testing.T, connects *atomic.Int32) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodConnect {
			http.Error(w, "CONNECT only", http.StatusMethodNotAllowed)
			return
		}
		connects.Add(1)
		up, err := net.Dial("tcp", r.Host)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadGateway)
			return
		}
		down, _, err := http.NewResponseController(w).Hijack()
		if err != nil {
			up.Close()
			return
		}
		io.WriteString(down, "HTTP/1.1 200 Connection established\r\n\r\n")
		go func() { io.Copy(up, down); up.Close() }()
		io.Copy(down, up)
		down.Close()
	})
}
