package agent

import (
	"crypto/sha256"
	"crypto/tls"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hookrelay/hookrelay/internal/testutil"
	"github.com/hookrelay/hookrelay/persist"
	"github.com/hookrelay/hookrelay/protocol"
	"github.com/hookrelay/hookrelay/relay"
)

const autoToken = "hr_auto_test_token"

// startRelay runs a real relay on 127.0.0.1 (QUIC too when withQUIC) until the test ends.
func startRelay(t *testing.T, withQUIC bool) *relay.Server {
	return startRelayWith(t, withQUIC, nil)
}

func startRelayWith(t *testing.T, withQUIC bool, mutate func(*relay.Config)) *relay.Server {
	t.Helper()
	s, _ := startStoppableRelay(t, withQUIC, mutate)
	return s
}

// startStoppableRelay is startRelayWith, also returning a stop that ends the relay (its
// listeners closed) before the test does.
func startStoppableRelay(t *testing.T, withQUIC bool, mutate func(*relay.Config)) (*relay.Server, func()) {
	t.Helper()
	sum := sha256.Sum256([]byte(autoToken))
	cfg := &relay.Config{
		Addr:      "127.0.0.1:0",
		DataDir:   t.TempDir(),
		Endpoints: []relay.Endpoint{{Name: "ep", Tokens: []string{"sha256:" + hex.EncodeToString(sum[:])}}},
	}
	if withQUIC {
		cfg.QUICAddr = "127.0.0.1:0"
	}
	if mutate != nil {
		mutate(cfg)
	}
	s, err := relay.New(cfg, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	run := testutil.Start(t, s.Run, s.Ready())
	stop := sync.OnceFunc(func() {
		run()
		s.Close()
	})
	t.Cleanup(stop)
	return s, stop
}

// relayInfoOf reads the relay's /v1/info.
func relayInfoOf(t *testing.T, s *relay.Server) relayInfo {
	t.Helper()
	resp, err := http.Get("http://" + s.Addr() + "/v1/info")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var info relayInfo
	if err := json.NewDecoder(resp.Body).Decode(&info); err != nil {
		t.Fatal(err)
	}
	return info
}

// postWebhook sends a webhook to the relay and returns its id.
func postWebhook(t *testing.T, s *relay.Server, body string) string {
	t.Helper()
	resp, err := http.Post("http://"+s.Addr()+"/h/ep/x", "text/plain", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var out struct{ ID string }
	json.NewDecoder(resp.Body).Decode(&out)
	if resp.StatusCode != http.StatusAccepted || out.ID == "" {
		t.Fatalf("ingress answered %d %q", resp.StatusCode, out.ID)
	}
	return out.ID
}

// autoAgent runs an agent toward relayURL, delivering endpoint ep to tg; its log is kept.
func autoAgent(t *testing.T, relayURL, fingerprint string, tg *target, mutate func(*Config)) (*Agent, *testutil.SyncBuffer) {
	t.Helper()
	logs := &testutil.SyncBuffer{}
	cfg := &Config{
		Relay:            relayURL,
		Token:            autoToken,
		AgentID:          "auto-1",
		DataDir:          t.TempDir(),
		RelayFingerprint: fingerprint,
		AdminAddr:        "off",
		ShutdownGrace:    200 * time.Millisecond,
		Routes:           []Route{{Endpoint: "ep", Target: tg.URL}},
	}
	if mutate != nil {
		mutate(cfg)
	}
	a, err := New(cfg, slog.New(slog.NewTextHandler(logs, nil)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		a.Close()
		if t.Failed() {
			t.Logf("agent log:\n%s", logs)
		}
	})
	runAgent(t, a)
	return a, logs
}

// waitDelivered waits until the target has seen every id, and checks none twice.
func waitDelivered(t *testing.T, tg *target, ids ...string) {
	t.Helper()
	testutil.CheckFor(t, 20*time.Second, 20*time.Millisecond, func() error {
		for _, id := range ids {
			if len(tg.requests(id)) == 0 {
				return fmt.Errorf("%s not delivered", id)
			}
		}
		return nil
	})
	for _, id := range ids {
		if n := len(tg.requests(id)); n != 1 {
			t.Errorf("%s delivered %d times", id, n)
		}
	}
}

func waitTransport(t *testing.T, a *Agent, want string) {
	t.Helper()
	testutil.CheckFor(t, 20*time.Second, 10*time.Millisecond, func() error {
		if !a.Connected() || a.Transport() != want {
			return fmt.Errorf("connected %v over %q, want %s", a.Connected(), a.Transport(), want)
		}
		return nil
	})
}

func TestAutoWithPinnedFingerprintUsesQUIC(t *testing.T) {
	s := startRelay(t, true)
	tg := newTarget(t, nil)
	a, logs := autoAgent(t, "http://"+s.Addr(), relayInfoOf(t, s).Fingerprint, tg, nil)
	waitTransport(t, a, "quic")
	if !logs.Has(`transport=quic reason="quic certificate matches relay_fingerprint"`) {
		t.Errorf("no log line saying QUIC is used and why:\n%s", logs)
	}
	waitDelivered(t, tg, postWebhook(t, s, "over quic"))
	if got := s.Agents(); len(got) != 1 || got[0].Transport != "quic" {
		t.Errorf("relay sees %+v, want one agent over quic", got)
	}
}

// TestAutoHTTPSWithPin: an https relay with its own (not CA-valid) certificate, pinned: the
// /v1/info request, and then QUIC, trust exactly the pinned certificate.
func TestAutoHTTPSWithPin(t *testing.T) {
	dir := t.TempDir()
	certFile, keyFile, der := testutil.WriteCert(t, dir)
	fp := protocol.Fingerprint(der)
	s := startRelayWith(t, true, func(c *relay.Config) { c.TLS = &relay.TLSConfig{Cert: certFile, Key: keyFile} })
	tg := newTarget(t, nil)
	a, logs := autoAgent(t, "https://"+s.Addr(), fp, tg, nil)
	waitTransport(t, a, "quic")
	if !logs.Has(`transport=quic reason="quic certificate matches relay_fingerprint"`) {
		t.Errorf("no log line saying QUIC is used and why:\n%s", logs)
	}
	resp, err := (&http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}}).
		Post("https://"+s.Addr()+"/h/ep/x", "text/plain", strings.NewReader("over https"))
	if err != nil {
		t.Fatal(err)
	}
	var out struct{ ID string }
	json.NewDecoder(resp.Body).Decode(&out)
	resp.Body.Close()
	waitDelivered(t, tg, out.ID)
}

// TestQUICBacklogAtConnect: webhooks waiting at the relay go out on QUIC data streams right
// after the Welcome on the control stream, and may arrive before it; the first session must
// still come up and take them all.
func TestQUICBacklogAtConnect(t *testing.T) {
	s := startRelay(t, true)
	info := relayInfoOf(t, s)
	_, port, _ := net.SplitHostPort(info.QUICAddr)
	var ids []string
	for i := range 200 {
		ids = append(ids, postWebhook(t, s, fmt.Sprint("backlog ", i)))
	}
	tg := newTarget(t, nil)
	a, logs := autoAgent(t, "quic://127.0.0.1:"+port, info.Fingerprint, tg, nil)
	waitTransport(t, a, "quic")
	waitDelivered(t, tg, ids...)
	if logs.Has("reconnecting") {
		t.Errorf("the first QUIC session did not hold:\n%s", logs)
	}
}

// TestAutoWithoutPinUsesWebSocket: the fingerprint /v1/info reports over plain http is not
// trusted, and the self-signed certificate is not CA-valid. On a loaded machine the first
// QUIC try may time out before the certificate is checked (the agent then says so and
// falls back for quic_retry): the retries while on WebSocket must then give the reason.
func TestAutoWithoutPinUsesWebSocket(t *testing.T) {
	s := startRelay(t, true)
	tg := newTarget(t, nil)
	a, logs := autoAgent(t, "http://"+s.Addr(), "", tg, func(c *Config) { c.QUICRetry = 300 * time.Millisecond })
	waitTransport(t, a, "websocket")
	const why = `reason="quic certificate cannot be verified: no relay_fingerprint and not CA-valid"`
	testutil.CheckFor(t, 20*time.Second, 20*time.Millisecond, func() error {
		if !logs.Has(why) {
			return fmt.Errorf("no log line saying why WebSocket is used:\n%s", logs)
		}
		return nil
	})
	if logs.Has("transport=quic") || logs.Has("quic works now") {
		t.Errorf("an unverifiable QUIC certificate was used:\n%s", logs)
	}
	waitDelivered(t, tg, postWebhook(t, s, "over websocket"))
}

func TestAutoRelayWithoutQUICUsesWebSocket(t *testing.T) {
	s := startRelay(t, false)
	tg := newTarget(t, nil)
	a, logs := autoAgent(t, "http://"+s.Addr(), "sha256:"+strings.Repeat("0", 64), tg, nil)
	waitTransport(t, a, "websocket")
	if !logs.Has(`transport=websocket reason="relay has no quic_addr"`) {
		t.Errorf("no log line saying why WebSocket is used:\n%s", logs)
	}
	waitDelivered(t, tg, postWebhook(t, s, "no quic"))
}

// TestQUICOnlyRefusesUnverifiedCertificate: quic:// with a wrong pin, or with none against a
// self-signed relay, never connects, says what to configure, and delivers nothing.
func TestQUICOnlyRefusesUnverifiedCertificate(t *testing.T) {
	s := startRelay(t, true)
	info := relayInfoOf(t, s)
	_, port, _ := net.SplitHostPort(info.QUICAddr)
	id := postWebhook(t, s, "must not arrive")
	for _, tc := range []struct{ name, fp, want string }{
		{"wrong pin", "sha256:" + strings.Repeat("ab", 32), "does not match relay_fingerprint"},
		{"no pin", "", "not CA-valid: set relay_fingerprint: sha256:… (hookrelay fingerprint on the relay prints it)"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tg := newTarget(t, nil)
			a, logs := autoAgent(t, "quic://127.0.0.1:"+port, tc.fp, tg, nil)
			testutil.CheckFor(t, 20*time.Second, 10*time.Millisecond, func() error {
				if !logs.Has(tc.want) {
					return fmt.Errorf("log does not say %q yet", tc.want)
				}
				return nil
			})
			if !logs.Has("level=ERROR msg=\"cannot connect\"") {
				t.Errorf("the refusal is not logged as an error:\n%s", logs)
			}
			if a.Connected() || len(s.Agents()) != 0 || len(tg.all()) != 0 {
				t.Errorf("connected %v, relay agents %d, deliveries %d: want none", a.Connected(), len(s.Agents()), len(tg.all()))
			}
		})
	}
	if rec, err := s.Store().Get(t.Context(), id); err != nil || rec.State != persist.StateReady {
		t.Errorf("webhook %s left the relay's queue: %+v %v", id, rec, err)
	}
}

// TestAutoFallsBackAndReturnsToQUIC: with the QUIC port silent the agent falls back to
// WebSocket after the short QUIC deadline and delivers; once UDP passes again it moves to QUIC
// on its next retry, losing and duplicating nothing; a relay that goes silent on QUIC is
// noticed within seconds.
func TestAutoFallsBackAndReturnsToQUIC(t *testing.T) {
	s := startRelay(t, true)
	info := relayInfoOf(t, s)
	_, port, _ := net.SplitHostPort(info.QUICAddr)
	gate := newUDPGate(t, "127.0.0.1:"+port)
	s.SetTunnelInfo(gate.addr(), info.Fingerprint) // agents reach QUIC only through the gate
	tg := newTarget(t, nil)
	a, logs := autoAgent(t, "http://"+s.Addr(), info.Fingerprint, tg, func(c *Config) {
		c.QUICRetry = 200 * time.Millisecond
	})
	waitTransport(t, a, "websocket")
	if !logs.Has("transport=websocket reason=\"quic handshake with " + gate.addr() + " failed: timeout") {
		t.Errorf("no log line saying QUIC timed out:\n%s", logs)
	}
	ids := []string{postWebhook(t, s, "ws 1"), postWebhook(t, s, "ws 2")}
	waitDelivered(t, tg, ids...)

	gate.open.Store(true)
	waitTransport(t, a, "quic")
	if !logs.Has("quic works now: leaving websocket") {
		t.Errorf("no log line for the move to QUIC:\n%s", logs)
	}
	ids = append(ids, postWebhook(t, s, "quic 1"))
	waitDelivered(t, tg, ids...)

	gate.open.Store(false)
	cut := time.Now()
	testutil.CheckFor(t, 3*quicIdleTimeout, 10*time.Millisecond, func() error {
		if a.Transport() == "quic" {
			return fmt.Errorf("still on quic %v after the relay went silent", time.Since(cut))
		}
		return nil
	})
	t.Logf("silent QUIC relay noticed after %v", time.Since(cut).Round(100*time.Millisecond))
	waitTransport(t, a, "websocket")
	ids = append(ids, postWebhook(t, s, "ws 3"))
	waitDelivered(t, tg, ids...)
}

// udpGate forwards UDP datagrams between clients and a backend while open, and drops every
// one while closed, like a firewall that silently blocks UDP.
type udpGate struct {
	conn    net.PacketConn
	backend *net.UDPAddr
	open    atomic.Bool
	mu      sync.Mutex
	ups     map[string]*net.UDPConn // by client address
	wg      sync.WaitGroup
}

func newUDPGate(t *testing.T, backend string) *udpGate {
	t.Helper()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	baddr, err := net.ResolveUDPAddr("udp", backend)
	if err != nil {
		t.Fatal(err)
	}
	g := &udpGate{conn: pc, backend: baddr, ups: map[string]*net.UDPConn{}}
	g.wg.Go(g.run)
	t.Cleanup(func() {
		pc.Close()
		g.mu.Lock()
		for _, u := range g.ups {
			u.Close()
		}
		g.mu.Unlock()
		g.wg.Wait()
	})
	return g
}

func (g *udpGate) addr() string { return g.conn.LocalAddr().String() }

func (g *udpGate) run() {
	buf := make([]byte, 64<<10)
	for {
		n, client, err := g.conn.ReadFrom(buf)
		if err != nil {
			return
		}
		if !g.open.Load() {
			continue
		}
		g.mu.Lock()
		up := g.ups[client.String()]
		if up == nil {
			up, err = net.DialUDP("udp", nil, g.backend)
			if err != nil {
				g.mu.Unlock()
				continue
			}
			g.ups[client.String()] = up
			g.wg.Go(func() { g.back(up, client) })
		}
		g.mu.Unlock()
		up.Write(buf[:n])
	}
}

// back forwards the backend's answers to client while the gate is open.
func (g *udpGate) back(up *net.UDPConn, client net.Addr) {
	buf := make([]byte, 64<<10)
	for {
		n, err := up.Read(buf)
		if err != nil {
			return
		}
		if g.open.Load() {
			g.conn.WriteTo(buf[:n], client)
		}
	}
}
