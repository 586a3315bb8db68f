package main

import (
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hookrelay/hookrelay/protocol"
)

// idleResult is the idle-agent shape: relay RSS per connected session and the time to connect
// them all.
type idleResult struct {
	n          int
	perAgentKB float64
	connect    time.Duration
	cpuPct     float64 // relay CPU while they idle, % of one core
}

// idleFor is how long the relay's CPU is measured once every session is up and idleSettle
// has passed (the handshakes' aftermath: garbage, timers set at connect).
const (
	idleSettle = 2 * time.Second
	idleFor    = 3 * time.Second
)

// idleAgents connects n sessions over the world's transport to the relay from this process
// (a tunnel, a Hello with the token for endpoint idle, then a Conn that answers the relay's
// pings), measures the relay's RSS with all of them up, and closes them. 16 handshakes at a
// time stay under the relay's default max_pending_tunnels_per_client.
func idleAgents(w *world, n int) (idleResult, error) {
	dial := dialer(w)
	before := w.relay.status("VmRSS")
	ctx, cancel := context.WithCancel(context.Background())
	var conns sync.WaitGroup // the sessions' Run loops
	defer func() { cancel(); conns.Wait() }()
	log := slog.New(slog.NewTextHandler(io.Discard, nil))

	start := time.Now()
	var next atomic.Int64
	var dialers sync.WaitGroup
	errs := make(chan error, 16)
	for range 16 {
		dialers.Go(func() {
			for {
				i := int(next.Add(1)) - 1
				if i >= n {
					return
				}
				t, err := dialIdle(ctx, dial, w.token, fmt.Sprintf("idle-%d", i))
				if err != nil {
					errs <- err
					return
				}
				c := protocol.NewConn(t, protocol.ConnConfig{Logger: log})
				conns.Go(func() { c.Run(ctx, func(protocol.Frame) error { return nil }) })
			}
		})
	}
	dialers.Wait()
	close(errs)
	if err := <-errs; err != nil {
		return idleResult{}, err
	}
	took := time.Since(start)
	after := w.relay.status("VmRSS")
	time.Sleep(idleSettle)
	cpu := w.relay.cpu()
	time.Sleep(idleFor)
	pct := 100 * float64(w.relay.cpu()-cpu) / float64(idleFor)
	return idleResult{n: n, perAgentKB: float64(after-before) / float64(n), connect: took, cpuPct: pct}, nil
}

// dialer opens one tunnel to the world's relay, over its transport.
func dialer(w *world) func(context.Context) (protocol.Tunnel, error) {
	tlsConf := &tls.Config{InsecureSkipVerify: true} // loopback, our own self-signed cert
	if w.transport == "quic" {
		addr := fmt.Sprintf("127.0.0.1:%d", w.quicPort)
		return func(ctx context.Context) (protocol.Tunnel, error) {
			return protocol.DialQUIC(ctx, addr, tlsConf, protocol.QUICConfig{})
		}
	}
	scheme := "ws"
	if w.transport == "wss" {
		scheme = "wss"
	}
	tunnelURL := fmt.Sprintf("%s://127.0.0.1:%d/v1/tunnel", scheme, w.port)
	cfg := protocol.WSDialConfig{
		TLS:   tlsConf,
		Proxy: func(*http.Request) (*url.URL, error) { return nil, nil },
	}
	return func(ctx context.Context) (protocol.Tunnel, error) {
		return protocol.DialWebSocket(ctx, tunnelURL, cfg)
	}
}

// dialIdle opens one tunnel and completes its handshake.
func dialIdle(ctx context.Context, dial func(context.Context) (protocol.Tunnel, error), token, id string) (protocol.Tunnel, error) {
	t, err := dial(ctx)
	if err != nil {
		return nil, fmt.Errorf("idle agent %s: %w", id, err)
	}
	hello := &protocol.Hello{Version: protocol.Version, AgentID: id, Token: token, Endpoints: []string{"idle"}}
	if err := t.WriteFrame(hello); err != nil {
		t.Close()
		return nil, fmt.Errorf("idle agent %s: send hello: %w", id, err)
	}
	for {
		f, err := t.ReadFrame()
		if err != nil {
			t.Close()
			return nil, fmt.Errorf("idle agent %s: wait for welcome: %w", id, err)
		}
		switch f := f.(type) {
		case *protocol.Welcome:
			return t, nil
		case *protocol.Ping:
			t.WriteFrame(&protocol.Pong{Nonce: f.Nonce})
		case *protocol.Error:
			t.Close()
			return nil, fmt.Errorf("idle agent %s: relay refused: %s", id, strings.TrimSpace(f.Reason))
		default:
			t.Close()
			return nil, fmt.Errorf("idle agent %s: frame %d before welcome", id, f.Type())
		}
	}
}
