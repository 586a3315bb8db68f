package protocol

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/quic-go/quic-go"

	"github.com/hookrelay/hookrelay/internal/testutil"
)

type quicEnv struct {
	ln          *QUICListener
	fingerprint string
	cfg         QUICConfig
}

// newQUICEnv listens on 127.0.0.1:0 with a self-signed certificate made here.
func newQUICEnv(t testing.TB, cfg QUICConfig) *quicEnv {
	t.Helper()
	cert := testutil.SelfSigned(t).TLS
	ln, err := ListenQUIC("127.0.0.1:0", &tls.Config{Certificates: []tls.Certificate{cert}}, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	return &quicEnv{ln: ln, fingerprint: Fingerprint(cert.Certificate[0]), cfg: cfg}
}

// pair dials addr (the listener's unless given) with the pinned certificate and accepts:
// (agent side, relay side). Both are closed, concurrently, at cleanup.
func (e *quicEnv) pair(t testing.TB, addr string) (Tunnel, Tunnel) {
	t.Helper()
	if addr == "" {
		addr = e.ln.Addr().String()
	}
	tlsConf, err := PinnedTLSConfig(e.fingerprint, "")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	client, err := DialQUIC(ctx, addr, tlsConf, e.cfg)
	if err != nil {
		t.Fatal(err)
	}
	server, err := e.ln.Accept(ctx)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		var wg sync.WaitGroup
		wg.Go(func() { client.Close() })
		wg.Go(func() { server.Close() })
		wg.Wait()
	})
	return client, server
}

func TestQUICFramesBothWays(t *testing.T) {
	client, server := newQUICEnv(t, QUICConfig{}).pair(t, "")
	if client.Transport() != "quic" || server.Transport() != "quic" {
		t.Fatalf("transport %q/%q", client.Transport(), server.Transport())
	}
	if !strings.HasPrefix(client.RemoteAddr(), "127.0.0.1:") ||
		!strings.HasPrefix(server.RemoteAddr(), "127.0.0.1:") {
		t.Fatalf("remote addrs %q, %q", client.RemoteAddr(), server.RemoteAddr())
	}
	exchangeAll(t, client, server, false)
}

func TestQUICLargeWebhooks(t *testing.T) {
	client, server := newQUICEnv(t, QUICConfig{}).pair(t, "")
	// The listener speaks first on the control stream (the relay's Welcome): until then the
	// dialer holds data-stream frames back.
	if err := server.WriteFrame(&Ping{Nonce: 1}); err != nil {
		t.Fatal(err)
	}
	if _, err := readWithin(t, client, 10*time.Second); err != nil {
		t.Fatal(err)
	}
	largeWebhooks(t, server, client)
}

// TestQUICInterleavedStreams sends many multi-chunk webhooks from several goroutines, with
// control frames between them: every webhook's chunks must arrive in order (the Assembler
// fails otherwise) and each control frame must arrive, though streams are merged.
func TestQUICInterleavedStreams(t *testing.T) {
	const streams, senders, perSender = 4, 4, 25
	client, server := newQUICEnv(t, QUICConfig{Streams: streams}).pair(t, "")
	used := map[uint32]bool{}
	for s := range senders {
		for i := range perSender {
			used[hashID(fmt.Sprintf("w%d-%d", s, i))%streams] = true
		}
	}
	if len(used) != streams {
		t.Fatalf("test ids use %d of %d streams", len(used), streams)
	}
	var wg sync.WaitGroup
	defer wg.Wait()
	for s := range senders {
		wg.Go(func() {
			for i := range perSender {
				id := fmt.Sprintf("w%d-%d", s, i)
				body := []byte(strings.Repeat(id+";", 500)) // several 1 KiB chunks
				if err := SendWebhook(server, &Webhook{ID: id, Body: body}, 1024); err != nil {
					t.Errorf("send %s: %v", id, err)
					return
				}
				if err := server.WriteFrame(&Ping{Nonce: uint64(s*perSender + i)}); err != nil {
					t.Errorf("ping: %v", err)
					return
				}
			}
		})
	}
	var a Assembler
	webhooks, pings := map[string]bool{}, map[uint64]bool{}
	for len(webhooks) < senders*perSender || len(pings) < senders*perSender {
		f, err := readWithin(t, client, 10*time.Second)
		if err != nil {
			t.Fatalf("after %d webhooks, %d pings: %v", len(webhooks), len(pings), err)
		}
		if p, ok := f.(*Ping); ok {
			pings[p.Nonce] = true
			continue
		}
		w, done, err := a.Add(f)
		if err != nil {
			t.Fatal(err)
		}
		if done {
			if want := strings.Repeat(w.ID+";", 500); string(w.Body) != want {
				t.Fatalf("webhook %s body differs", w.ID)
			}
			webhooks[w.ID] = true
		}
	}
}

// TestQUICCloseDeliversLastFrames: an Error frame written just before Close reaches the peer,
// which then sees the end of the tunnel.
func TestQUICCloseDeliversLastFrames(t *testing.T) {
	client, server := newQUICEnv(t, QUICConfig{}).pair(t, "")
	if err := server.WriteFrame(&Webhook{ID: "last", BodyLen: 3, Body: []byte("abc")}); err != nil {
		t.Fatal(err)
	}
	if err := server.WriteFrame(&Error{Code: CodeUnauthorized, Reason: "bad token"}); err != nil {
		t.Fatal(err)
	}
	closed := make(chan error, 1)
	go func() { closed <- server.Close() }()
	got := map[FrameType]bool{}
	for range 2 {
		f, err := readWithin(t, client, 10*time.Second)
		if err != nil {
			t.Fatalf("frames written before Close: %v", err)
		}
		got[f.Type()] = true
	}
	if !got[FrameWebhook] || !got[FrameError] {
		t.Fatalf("got %v, want the webhook and the error", got)
	}
	if _, err := readWithin(t, client, 10*time.Second); !errors.Is(err, io.EOF) {
		t.Fatalf("after the peer closed: %v, want io.EOF", err)
	}
	client.Close()
	within(t, 5*time.Second, "server close", func() error { return <-closed })
	if err := server.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	if _, err := server.ReadFrame(); !errors.Is(err, ErrClosed) {
		t.Fatalf("read after Close: %v, want ErrClosed", err)
	}
	if err := server.WriteFrame(&Ping{}); !errors.Is(err, ErrClosed) {
		t.Fatalf("write after Close: %v, want ErrClosed", err)
	}
}

func TestQUICCloseUnblocksRead(t *testing.T) {
	client, server := newQUICEnv(t, QUICConfig{}).pair(t, "")
	errc := make(chan error, 1)
	go func() {
		_, err := client.ReadFrame()
		errc <- err
	}()
	go server.Close() // else client.Close waits its grace for the server to finish
	client.Close()
	if err := within(t, 5*time.Second, "read", func() error { return <-errc }); !errors.Is(err, ErrClosed) {
		t.Fatalf("read blocked during Close: %v, want ErrClosed", err)
	}
}

// TestQUICPeerKilled cuts the path between the two sides (a UDP forwarder stops): both must
// see ReadFrame fail within a few seconds, by the idle timeout.
func TestQUICPeerKilled(t *testing.T) {
	cfg := QUICConfig{KeepAlive: 250 * time.Millisecond, IdleTimeout: 2 * time.Second}
	env := newQUICEnv(t, cfg)
	fwd := newUDPForwarder(t, env.ln.Addr().String())
	client, server := env.pair(t, fwd.addr())
	if err := client.WriteFrame(&Hello{AgentID: "a"}); err != nil {
		t.Fatal(err)
	}
	if _, err := readWithin(t, server, 5*time.Second); err != nil {
		t.Fatal(err)
	}
	fwd.kill()
	start := time.Now()
	for name, tun := range map[string]Tunnel{"agent": client, "relay": server} {
		_, err := readWithin(t, tun, 10*time.Second)
		var ne net.Error
		if !errors.As(err, &ne) || !ne.Timeout() {
			t.Fatalf("%s: %v, want a timeout", name, err)
		}
	}
	t.Logf("both sides saw the dead peer after %s", time.Since(start))
}

func TestQUICPinning(t *testing.T) {
	env := newQUICEnv(t, QUICConfig{})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	addr := env.ln.Addr().String()

	right, _ := PinnedTLSConfig(env.fingerprint, "")
	tun, err := DialQUIC(ctx, addr, right, QUICConfig{})
	if err != nil {
		t.Fatalf("right fingerprint refused: %v", err)
	}
	peer, err := env.ln.Accept(ctx)
	if err != nil {
		t.Fatal(err)
	}
	go peer.Close()
	tun.Close()

	wrong, _ := PinnedTLSConfig(Fingerprint([]byte("another cert")), "")
	if _, err := DialQUIC(ctx, addr, wrong, QUICConfig{}); !errors.Is(err, ErrFingerprintMismatch) {
		t.Fatalf("wrong fingerprint: %v, want ErrFingerprintMismatch", err)
	}
	if _, err := DialQUIC(ctx, addr, nil, QUICConfig{}); err == nil {
		t.Fatal("self-signed relay accepted without a pin")
	}
}

// TestQUICListenerSurvivesBadClients: a client with another ALPN, and one that opens a stream
// with a bad preamble, do not stop the next agent from being accepted.
func TestQUICListenerSurvivesBadClients(t *testing.T) {
	env := newQUICEnv(t, QUICConfig{HandshakeTimeout: 2 * time.Second})
	addr := env.ln.Addr().String()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	h3 := &tls.Config{InsecureSkipVerify: true, NextProtos: []string{"h3"}}
	if c, err := quic.DialAddr(ctx, addr, h3, nil); err == nil {
		c.CloseWithError(0, "")
		t.Fatal("a client without ALPN " + Subprotocol + " was let in")
	}
	ours := &tls.Config{InsecureSkipVerify: true, NextProtos: []string{Subprotocol}}
	bad, err := quic.DialAddr(ctx, addr, ours, nil)
	if err != nil {
		t.Fatal(err)
	}
	s, err := bad.OpenStreamSync(ctx)
	if err != nil {
		t.Fatal(err)
	}
	s.Write([]byte("GET / HTTP/1.1\r\n"))
	select {
	case <-bad.Context().Done(): // the listener closed it
	case <-ctx.Done():
		t.Fatal("a client with a bad preamble was not disconnected")
	}

	client, server := env.pair(t, "")
	if err := client.WriteFrame(&Ping{Nonce: 9}); err != nil {
		t.Fatal(err)
	}
	if f, err := readWithin(t, server, 5*time.Second); err != nil || !reflect.DeepEqual(f, &Ping{Nonce: 9}) {
		t.Fatalf("good client after bad ones: %v, %v", f, err)
	}
}

func TestQUICListenerClose(t *testing.T) {
	env := newQUICEnv(t, QUICConfig{})
	errc := make(chan error, 1)
	go func() {
		_, err := env.ln.Accept(context.Background())
		errc <- err
	}()
	env.ln.Close()
	if err := within(t, 5*time.Second, "accept", func() error { return <-errc }); !errors.Is(err, ErrClosed) {
		t.Fatalf("Accept on a closed listener: %v, want ErrClosed", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := env.ln.Accept(ctx); err == nil {
		t.Fatal("Accept with a cancelled context succeeded")
	}
}

func TestQUICFrameTooLargeRefusedLocally(t *testing.T) {
	client, server := newQUICEnv(t, QUICConfig{MaxFrame: 1024}).pair(t, "")
	for _, f := range []Frame{&Webhook{ID: "w", BodyLen: 2000, Body: binaryBody(2000)},
		&Ack{IDs: []string{strings.Repeat("x", 2000)}}} {
		if err := client.WriteFrame(f); !errors.Is(err, ErrFrameTooLarge) {
			t.Fatalf("oversized %T: %v, want ErrFrameTooLarge", f, err)
		}
	}
	if err := client.WriteFrame(&Ping{Nonce: 3}); err != nil {
		t.Fatal(err)
	}
	if f, err := readWithin(t, server, 5*time.Second); err != nil || !reflect.DeepEqual(f, &Ping{Nonce: 3}) {
		t.Fatalf("after refusal: %v, %v", f, err)
	}
}

// udpForwarder relays datagrams between one client and a server; kill makes it a black hole,
// as if the peer's host died.
type udpForwarder struct {
	conn   *net.UDPConn
	server *net.UDPAddr
	wg     sync.WaitGroup
	once   sync.Once
}

func newUDPForwarder(t *testing.T, server string) *udpForwarder {
	t.Helper()
	conn, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	up, err := net.ResolveUDPAddr("udp", server)
	if err != nil {
		t.Fatal(err)
	}
	toServer, err := net.DialUDP("udp", nil, up)
	if err != nil {
		t.Fatal(err)
	}
	f := &udpForwarder{conn: conn, server: up}
	var client net.Addr
	var mu sync.Mutex
	f.wg.Go(func() { // client → server
		buf := make([]byte, 64<<10)
		for {
			n, from, err := conn.ReadFrom(buf)
			if err != nil {
				toServer.Close()
				return
			}
			mu.Lock()
			client = from
			mu.Unlock()
			toServer.Write(buf[:n])
		}
	})
	f.wg.Go(func() { // server → client
		buf := make([]byte, 64<<10)
		for {
			n, err := toServer.Read(buf)
			if err != nil {
				return
			}
			mu.Lock()
			to := client
			mu.Unlock()
			if to != nil {
				conn.WriteTo(buf[:n], to)
			}
		}
	})
	t.Cleanup(f.kill)
	return f
}

func (f *udpForwarder) addr() string { return f.conn.LocalAddr().String() }

func (f *udpForwarder) kill() {
	f.once.Do(func() {
		f.conn.Close()
		f.wg.Wait()
	})
}

// TestQUICTunnelOutlivesListener: closing the listener (relay shutdown starts) leaves
// established tunnels working, so the relay can still send GoAway on them.
func TestQUICTunnelOutlivesListener(t *testing.T) {
	env := newQUICEnv(t, QUICConfig{})
	client, server := env.pair(t, "")
	env.ln.Close()
	if err := server.WriteFrame(&GoAway{Reason: "restart", ReconnectAfter: time.Second}); err != nil {
		t.Fatal(err)
	}
	f, err := readWithin(t, client, 5*time.Second)
	if err != nil || !reflect.DeepEqual(f, &GoAway{Reason: "restart", ReconnectAfter: time.Second}) {
		t.Fatalf("after the listener closed: %v, %v", f, err)
	}
}

// TestQUICDialerSeesControlFirst: the listener's webhooks on data streams may overtake its
// first control frame; the dialer still reads the control frame (the Welcome) first, then
// every webhook.
func TestQUICDialerSeesControlFirst(t *testing.T) {
	e := newQUICEnv(t, QUICConfig{})
	client, server := e.pair(t, "")
	const n = 50
	for i := range n {
		if err := server.WriteFrame(&Webhook{ID: fmt.Sprintf("w%03d", i), Endpoint: "e", Body: []byte("x"), BodyLen: 1}); err != nil {
			t.Fatal(err)
		}
	}
	time.Sleep(100 * time.Millisecond) // give the webhooks a head start over the Welcome
	if err := server.WriteFrame(&Welcome{SessionID: "s1"}); err != nil {
		t.Fatal(err)
	}
	f, err := readWithin(t, client, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if w, ok := f.(*Welcome); !ok || w.SessionID != "s1" {
		t.Fatalf("first frame %T %+v, want the Welcome", f, f)
	}
	for range n {
		f, err := readWithin(t, client, 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		if _, ok := f.(*Webhook); !ok {
			t.Fatalf("got %T, want a webhook", f)
		}
	}
}

// Over QUIC, whose own keepalive finds a silent peer within seconds, the Conn pings every 15s
// (dead after 45s) rather than every 5s: each Ping is a packet and an acknowledgement on both
// sides, most of what a relay spent on idle QUIC agents. A WebSocket Conn keeps 5s and 15s, and
// a value set in the config is kept on both.
func TestQUICConnPingsLess(t *testing.T) {
	e := newQUICEnv(t, QUICConfig{})
	qa, _ := e.pair(t, "")
	wa, _ := wsPair(t, WSConfig{})
	for _, tc := range []struct {
		tun         Tunnel
		cfg         ConnConfig
		every, dead time.Duration
	}{
		{qa, ConnConfig{}, 15 * time.Second, 45 * time.Second},
		{wa, ConnConfig{}, 5 * time.Second, 15 * time.Second},
		{qa, ConnConfig{PingEvery: time.Second, DeadAfter: 3 * time.Second}, time.Second, 3 * time.Second},
	} {
		c := NewConn(tc.tun, tc.cfg)
		if c.cfg.PingEvery != tc.every || c.cfg.DeadAfter != tc.dead {
			t.Errorf("%s with %+v: pings every %v, dead after %v; want %v, %v", tc.tun.Transport(),
				tc.cfg, c.cfg.PingEvery, c.cfg.DeadAfter, tc.every, tc.dead)
		}
	}
}
