package relay

// Attempts on the relay from hostile agents and web pages, and what each now gets.

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"os"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"golang.org/x/crypto/bcrypt"

	"github.com/hookrelay/hookrelay/protocol"
	"github.com/hookrelay/hookrelay/relay/verify"
)

// Attempt: a web page the operator visits POSTs to the relay's admin API (cross-site, even
// with a valid Bearer token or the UI's cookie in the browser) to replay dead letters. Now:
// 403 before any authentication, counted in hookrelay_admin_refused_total.
func TestAttackCrossSiteAdminReplay(t *testing.T) {
	s := startServer(t, withAdminToken)
	req, _ := http.NewRequest("POST", s.url("/admin/api/dead/replay"), nil)
	req.Header.Set("Authorization", "Bearer "+adminToken)
	req.Header.Set("Origin", "https://evil.example")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusForbidden || !strings.Contains(string(b), "cross-site") {
		t.Fatalf("cross-site POST dead/replay: %d %s, want 403 naming the cross-site request", resp.StatusCode, b)
	}
	_, metrics := get(t, "GET", s.url("/metrics"), adminToken)
	if !strings.Contains(metrics, "hookrelay_admin_refused_total 1") {
		t.Errorf("/metrics lacks hookrelay_admin_refused_total 1")
	}
}

// Attempt: an agent holding any valid token for an endpoint connects with another agent's
// agent_id and so kicks that agent off (the newest session of an agent id wins), again and
// again. Wanted: a session with the same agent_id but another token is refused, and the
// connected agent keeps its session.
func TestAttackOtherTokenKicksAgent(t *testing.T) {
	s := startServer(t, func(c *Config) { c.Endpoints[0].Tokens = []string{hashOf(tokenA), hashOf(tokenB)} })
	victim := dial(t, s, tokenA, "edge-1", "ep")
	attacker := connect(t, s, protocol.Hello{AgentID: "edge-1", Token: tokenB, Endpoints: []string{"ep"}})
	if f := attacker.frame(); f == nil {
		t.Fatal("attacker: tunnel ended without an answer")
	} else if _, ok := f.(*protocol.Welcome); ok {
		t.Fatal("a session with another agent's id and another token was welcomed")
	}
	id := accept(t, s, "/h/ep", []byte("x"))
	if w := victim.webhook(); w.ID != id {
		t.Fatalf("victim got %s, want %s: its session was replaced", w.ID, id)
	}
	if a := s.Agents(); len(a) != 1 || a[0].SessionID != victim.welcome.SessionID {
		t.Errorf("agents %+v, want only the victim's session", a)
	}
}

// holdBody dials the relay from the local address from (e.g. "127.0.0.2"), sends head and
// the first bytes of a body, and leaves the connection open: a sender that declares a body
// and trickles it. The connection is closed at cleanup.
func holdBody(t *testing.T, s *Server, from, head, first string) net.Conn {
	t.Helper()
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(from)}, Timeout: 5 * time.Second}
	c, err := d.Dial("tcp", s.Addr())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	if _, err := io.WriteString(c, head+first); err != nil {
		t.Fatal(err)
	}
	return c
}

// waitInFlight polls until the relay has n ingress requests of the address from in flight.
func waitInFlight(t *testing.T, s *Server, from string, n int) {
	t.Helper()
	a := netip.MustParseAddr(from)
	deadline := time.Now().Add(10 * time.Second)
	for s.clients.inFlight(a) < n {
		if time.Now().After(deadline) {
			t.Fatalf("%d requests of %s in flight after 10s, want %d", s.clients.inFlight(a), from, n)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// answerWithin reads the relay's answer on c, failing the test when none comes within d.
func answerWithin(t *testing.T, c net.Conn, d time.Duration) (*http.Response, string) {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(d))
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatalf("no answer within %v: %v", d, err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	return resp, string(b)
}

// Attempt: 45 connections each declare a 24 MB body (Content-Length) and send 2 bytes; the
// relay used to reserve (and allocate) the declared size up front, so its 1 GiB ingress
// buffer was full and every legitimate POST got "503 relay is busy" until body_timeout. Now:
// bodies reserve only the bytes received (in small steps), the legitimate POST gets 202, and
// the buffer holds a few hundred KiB.
func TestAttackDeclaredBodiesStarveIngress(t *testing.T) {
	s := startServer(t, nil)
	head := "POST /h/ep HTTP/1.1\r\nHost: x\r\nContent-Length: 24000000\r\n\r\n"
	for range 45 {
		holdBody(t, s, "127.0.0.2", head, "ab")
	}
	waitInFlight(t, s, "127.0.0.2", 45)
	code, hdr, out := post(t, s, "POST", "/h/ep", []byte("legit"), nil)
	if code != http.StatusAccepted {
		t.Fatalf("legitimate POST during the attack: %d %v (Retry-After %q), want 202", code, out, hdr.Get("Retry-After"))
	}
	if got := s.ingressMem.Load(); got > 45*bodyStep {
		t.Errorf("ingress buffer holds %d bytes for 90 bytes received", got)
	}
}

// Attempt: a sender that is not in an endpoint's ip_allow declares a 1 MB body and never
// sends it, holding a connection and a body reservation until body_timeout. Now: the
// address rule is checked from the headers alone, and the sender gets 403 at once.
func TestAttackDisallowedAddressHoldsBody(t *testing.T) {
	s := startServer(t, func(c *Config) {
		c.Endpoints[0].Verify = &verify.Config{IPAllow: &verify.IPAllow{CIDRs: []string{"192.0.2.0/24"}}}
	})
	c := holdBody(t, s, "127.0.0.1", "POST /h/ep HTTP/1.1\r\nHost: x\r\nContent-Length: 1000000\r\n\r\n", "")
	resp, body := answerWithin(t, c, 5*time.Second)
	if resp.StatusCode != http.StatusForbidden {
		t.Fatalf("disallowed address: %d %s, want 403 before the body", resp.StatusCode, body)
	}
}

// Attempt: a sender without the password declares a body and never sends it, against an
// endpoint with basic auth. Now: Basic auth is checked from the headers alone: 401 at once.
func TestAttackWrongPasswordHoldsBody(t *testing.T) {
	s := startServer(t, func(c *Config) {
		c.Endpoints[0].Verify = &verify.Config{Basic: &verify.BasicConfig{User: "u", PasswordHash: hashOf("pw")}}
	})
	c := holdBody(t, s, "127.0.0.1", "POST /h/ep HTTP/1.1\r\nHost: x\r\nAuthorization: Basic dTp4\r\nContent-Length: 1000000\r\n\r\n", "")
	resp, body := answerWithin(t, c, 5*time.Second)
	if resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("wrong password: %d %s, want 401 before the body", resp.StatusCode, body)
	}
}

// Attempt: many concurrent requests with wrong passwords against a bcrypt basic endpoint
// without a rate, each costing the relay a bcrypt comparison, so every core is busy hashing.
// Now: at most a few comparisons run at once and a few more wait; the rest get 429 +
// Retry-After ("password checks busy"), counted as rejected{limit="bcrypt"}. The right
// password is still accepted.
func TestAttackBcryptFlood(t *testing.T) {
	hash, err := bcrypt.GenerateFromPassword([]byte("pw"), 10)
	if err != nil {
		t.Fatal(err)
	}
	s := startServer(t, func(c *Config) {
		c.Endpoints[0].Verify = &verify.Config{Basic: &verify.BasicConfig{User: "u", PasswordHash: string(hash)}}
	})
	const n = 64
	codes := make(chan int, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			req, _ := http.NewRequest("POST", s.url("/h/ep"), strings.NewReader("x"))
			req.SetBasicAuth("u", fmt.Sprintf("guess-%d", i))
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Error(err)
				return
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusTooManyRequests && resp.Header.Get("Retry-After") == "" {
				t.Error("429 without Retry-After")
			}
			codes <- resp.StatusCode
		})
	}
	wg.Wait()
	close(codes)
	count := map[int]int{}
	for c := range codes {
		count[c]++
	}
	if count[http.StatusTooManyRequests] == 0 || count[http.StatusUnauthorized]+count[http.StatusTooManyRequests] != n {
		t.Fatalf("answers %v to %d concurrent wrong passwords, want 401s and some 429s", count, n)
	}
	if got := counterValue(t, s.metrics.rejected.WithLabelValues("ep", limitBcrypt)); got != float64(count[http.StatusTooManyRequests]) {
		t.Errorf("rejected {ep, bcrypt} = %v, want %d", got, count[http.StatusTooManyRequests])
	}
	code, _, _ := post(t, s, "POST", "/h/ep", []byte("x"), http.Header{"Authorization": {"Basic dTpwdw=="}})
	if code != http.StatusAccepted {
		t.Errorf("right password after the flood: %d, want 202", code)
	}
}

// Attempt: one sender opens more ingress requests than a relay should serve one address,
// each declaring a body and trickling it, to take every handler and the ingress buffer.
// Now: past per_client_requests (64) that address gets 429 + Retry-After, counted as
// rejected{limit="client_requests"}; other addresses are served as usual.
func TestAttackManyRequestsFromOneAddress(t *testing.T) {
	s := startServer(t, nil)
	head := "POST /h/ep HTTP/1.1\r\nHost: x\r\nContent-Length: 24000000\r\n\r\n"
	for range DefaultPerClientRequests {
		holdBody(t, s, "127.0.0.2", head, "ab")
	}
	waitInFlight(t, s, "127.0.0.2", DefaultPerClientRequests)
	resp, body := answerWithin(t, holdBody(t, s, "127.0.0.2", head, "ab"), 5*time.Second)
	if resp.StatusCode != http.StatusTooManyRequests || resp.Header.Get("Retry-After") == "" || !strings.Contains(body, "per_client_requests") {
		t.Fatalf("request %d from one address: %d %q (Retry-After %q), want 429 naming per_client_requests",
			DefaultPerClientRequests+1, resp.StatusCode, body, resp.Header.Get("Retry-After"))
	}
	if got := counterValue(t, s.metrics.rejected.WithLabelValues("ep", limitClientRequests)); got != 1 {
		t.Errorf("rejected {ep, client_requests} = %v, want 1", got)
	}
	accept(t, s, "/h/ep", []byte("legit")) // from 127.0.0.1
}

// Attempt: one sender sends large bodies on several requests at once, slowly, to fill the
// relay's ingress buffer so that everyone else gets 503. Now: its bodies hold at most
// per_client_buffer; past it 429 + Retry-After, counted as rejected{limit="client_buffer"}.
func TestAttackBodiesFromOneAddressFillBuffer(t *testing.T) {
	s := startServer(t, func(c *Config) {
		c.PerClientBuffer = 1_000_000
		c.Endpoints[0].MaxBody = 1_000_000
	})
	head := "POST /h/ep HTTP/1.1\r\nHost: x\r\nContent-Length: 1000000\r\n\r\n"
	holdBody(t, s, "127.0.0.2", head, strings.Repeat("a", 600_000))
	deadline := time.Now().Add(10 * time.Second)
	for s.ingressMem.Load() < 1_000_000 { // the first body's buffer has grown to its length
		if time.Now().After(deadline) {
			t.Fatalf("first body holds %d bytes after 10s", s.ingressMem.Load())
		}
		time.Sleep(5 * time.Millisecond)
	}
	resp, body := answerWithin(t, holdBody(t, s, "127.0.0.2", head, "ab"), 5*time.Second)
	if resp.StatusCode != http.StatusTooManyRequests || resp.Header.Get("Retry-After") == "" || !strings.Contains(body, "per_client_buffer") {
		t.Fatalf("second body from one address: %d %q, want 429 naming per_client_buffer", resp.StatusCode, body)
	}
	if got := counterValue(t, s.metrics.rejected.WithLabelValues("ep", limitClientBuffer)); got != 1 {
		t.Errorf("rejected {ep, client_buffer} = %v, want 1", got)
	}
	accept(t, s, "/h/ep", []byte("legit")) // from 127.0.0.1
}

// Attempt: a sender writes X-Forwarded-For (or Forwarded) naming an allowed address, or a
// fresh address per request to escape the per-address caps. Now: those headers count only
// from the relay's trusted_proxies; through a trusted proxy the named client is the one
// ip_allow and the caps see.
func TestAttackForgedForwardedFor(t *testing.T) {
	allow := &verify.Config{IPAllow: &verify.IPAllow{CIDRs: []string{"192.0.2.0/24"}}}
	direct := startServer(t, func(c *Config) { c.Endpoints[0].Verify = allow })
	for _, h := range []http.Header{{"X-Forwarded-For": {"192.0.2.1"}}, {"Forwarded": {"for=192.0.2.1"}}} {
		if code, _, out := post(t, direct, "POST", "/h/ep", []byte("x"), h); code != http.StatusForbidden {
			t.Errorf("untrusted peer with %v: %d %v, want 403", h, code, out)
		}
	}

	proxied := startServer(t, func(c *Config) {
		c.TrustedProxies = []string{"127.0.0.1"}
		c.PerClientRequests = 2
		c.Endpoints[0].Verify = allow
	})
	for _, h := range []http.Header{{"X-Forwarded-For": {"203.0.113.9, 192.0.2.1"}}, {"Forwarded": {`for="192.0.2.1:4711"`}}} {
		if code, _, out := post(t, proxied, "POST", "/h/ep", []byte("x"), h); code != http.StatusAccepted {
			t.Errorf("trusted proxy with %v: %d %v, want 202", h, code, out)
		}
	}
	if code, _, _ := post(t, proxied, "POST", "/h/ep", []byte("x"), http.Header{"X-Forwarded-For": {"192.0.2.1, 203.0.113.9"}}); code != http.StatusForbidden {
		t.Errorf("trusted proxy naming 203.0.113.9 last: %d, want 403", code)
	}
	head := "POST /h/ep HTTP/1.1\r\nHost: x\r\nX-Forwarded-For: 192.0.2.7\r\nContent-Length: 100\r\n\r\n"
	holdBody(t, proxied, "127.0.0.1", head, "ab")
	holdBody(t, proxied, "127.0.0.1", head, "ab")
	waitInFlight(t, proxied, "192.0.2.7", 2)
	if resp, body := answerWithin(t, holdBody(t, proxied, "127.0.0.1", head, "ab"), 5*time.Second); resp.StatusCode != http.StatusTooManyRequests {
		t.Errorf("third request of 192.0.2.7 through the proxy: %d %q, want 429 (per_client_requests 2)", resp.StatusCode, body)
	}
	if code, _, _ := post(t, proxied, "POST", "/h/ep", []byte("x"), http.Header{"X-Forwarded-For": {"192.0.2.8"}}); code != http.StatusAccepted {
		t.Errorf("another client through the same proxy: %d, want 202", code)
	}
}

// Attempt (the measurement): 200 connections from 127.0.0.2 each declare a 24 MB
// body and trickle it, reconnecting whenever the relay drops them, while 1,000 legitimate
// 1 KiB webhooks arrive from 127.0.0.1. Now: all 1,000 get 202 and are stored, and the
// process's resident memory (VmRSS, sampled every 20 ms) grows by less than 64 MiB; under
// the race detector, which multiplies resident memory, the Go heap in use is measured instead.
// Run alone: go test -count=1 -run TestAttackTrickleFloodMeasured -v ./relay/
func TestAttackTrickleFloodMeasured(t *testing.T) {
	if testing.Short() {
		t.Skip("load measurement: skipped with -short")
	}
	s := startServer(t, nil)
	measure, what := vmRSS, "VmRSS"
	if raceEnabled {
		measure, what = heapInUse, "heap in use"
	}
	runtime.GC()
	base := measure(t)

	stop := make(chan struct{})
	var attackers, sampler sync.WaitGroup
	var maxRSS atomic.Int64
	maxRSS.Store(base)
	sampler.Go(func() {
		tick := time.NewTicker(20 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-stop:
				return
			case <-tick.C:
				if v := measure(t); v > maxRSS.Load() {
					maxRSS.Store(v)
				}
			}
		}
	})
	head := "POST /h/ep HTTP/1.1\r\nHost: x\r\nContent-Length: 24000000\r\n\r\nab"
	var dials atomic.Int64
	for range 200 {
		attackers.Go(func() { trickle24MB(s.Addr(), head, stop, &dials) })
	}
	waitInFlight(t, s, "127.0.0.2", DefaultPerClientRequests)

	start := time.Now()
	jobs := make(chan int)
	var legit sync.WaitGroup
	var accepted atomic.Int64
	body := bytes.Repeat([]byte("w"), 1024)
	for range 8 {
		legit.Go(func() {
			for range jobs {
				resp, err := http.Post(s.url("/h/ep"), "application/json", bytes.NewReader(body))
				if err != nil {
					t.Error(err)
					continue
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode == http.StatusAccepted {
					accepted.Add(1)
				} else {
					t.Errorf("legitimate webhook during the flood: %d", resp.StatusCode)
				}
			}
		})
	}
	for i := range 1000 {
		jobs <- i
	}
	close(jobs)
	legit.Wait()
	took := time.Since(start)
	held := s.clients.inFlight(netip.MustParseAddr("127.0.0.2"))
	close(stop)
	attackers.Wait()
	sampler.Wait()

	grew := maxRSS.Load() - base
	t.Logf("1000 legitimate webhooks in %v; attacker dials %d, held at the end %d; %s %d MiB at start, peak +%.1f MiB",
		took.Round(time.Millisecond), dials.Load(), held, what, base>>20, float64(grew)/(1<<20))
	if accepted.Load() != 1000 {
		t.Fatalf("%d of 1000 legitimate webhooks accepted", accepted.Load())
	}
	if n := stored(t, s, "ep"); n != 1000 {
		t.Errorf("%d webhooks stored, want 1000", n)
	}
	if grew >= 64<<20 {
		t.Errorf("%s grew by %d MiB during the flood, want < 64 MiB", what, grew>>20)
	}
}

// trickle24MB keeps one attacker connection from 127.0.0.2 open: the request head, then a
// byte every 100 ms; when the relay drops it, it dials again. It returns when stop closes.
func trickle24MB(addr, head string, stop <-chan struct{}, dials *atomic.Int64) {
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP("127.0.0.2")}, Timeout: 5 * time.Second}
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for {
		c, err := d.Dial("tcp", addr)
		if err == nil {
			dials.Add(1)
			_, err = io.WriteString(c, head)
		}
		for err == nil {
			select {
			case <-stop:
				c.Close()
				return
			case <-tick.C:
				_, err = c.Write([]byte("x"))
			}
		}
		if c != nil {
			c.Close()
		}
		select {
		case <-stop:
			return
		case <-tick.C:
		}
	}
}

// heapInUse is the Go heap's bytes in use (in-use spans).
func heapInUse(*testing.T) int64 {
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return int64(m.HeapInuse)
}

// vmRSS is this process's resident set size in bytes, from /proc/self/status.
func vmRSS(t *testing.T) int64 {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		t.Skipf("no /proc/self/status: %v", err)
	}
	for line := range strings.Lines(string(b)) {
		if kb, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			n, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(kb), "kB")), 10, 64)
			if err != nil {
				t.Fatalf("VmRSS line %q: %v", line, err)
			}
			return n << 10
		}
	}
	t.Fatal("no VmRSS in /proc/self/status")
	return 0
}

// holdTunnel upgrades to a tunnel from the local address from and sends only the start of a
// frame: a WebSocket message header, then the 4-byte length prefix declaring a 1 MiB frame.
// It returns the HTTP answer instead when the upgrade is refused. Closed at cleanup.
func holdTunnel(t *testing.T, s *Server, from string) (*websocket.Conn, *http.Response, error) {
	d := websocket.Dialer{
		NetDialContext: (&net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(from)}}).DialContext,
		Subprotocols:   []string{protocol.Subprotocol},
		ReadBufferSize: 1024, WriteBufferSize: 1024, // the attacker's side shares the measured process
	}
	c, resp, err := d.Dial("ws://"+s.Addr()+"/v1/tunnel", nil)
	if err != nil {
		return nil, resp, err
	}
	t.Cleanup(func() { c.Close() })
	// FIN, binary; masked (zero key), 64-bit length: 4 bytes of prefix + 1 MiB never sent.
	msg := []byte{0x82, 0x80 | 127}
	msg = binary.BigEndian.AppendUint64(msg, 4+protocol.DefaultMaxFrame)
	msg = append(msg, 0, 0, 0, 0)
	msg = binary.BigEndian.AppendUint32(msg, protocol.DefaultMaxFrame)
	_, err = c.NetConn().Write(msg)
	return c, resp, err
}

// waitPending polls until n tunnels wait for their hello.
func waitPending(t *testing.T, s *Server, n int) {
	t.Helper()
	for deadline := time.Now().Add(20 * time.Second); s.hub.preauth.pending() < n; {
		if time.Now().After(deadline) {
			t.Fatalf("%d tunnels pending, want %d", s.hub.preauth.pending(), n)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// Attempt: one address opens tunnels that never say Hello, each declaring a 1 MiB frame, to
// hold the relay's memory (hub.pending had no bound). Now: past max_pending_tunnels_per_client
// (32) that address gets 429 + Retry-After naming the key, counted as
// handshake_failures{reason="pending_client"}, and an agent from another address connects.
func TestAttackPendingTunnelsFromOneAddress(t *testing.T) {
	s := startServer(t, nil)
	for i := range DefaultMaxPendingTunnelsPerClient {
		if _, _, err := holdTunnel(t, s, "127.0.0.2"); err != nil {
			t.Fatalf("pending tunnel %d: %v", i+1, err)
		}
	}
	waitPending(t, s, DefaultMaxPendingTunnelsPerClient)
	_, resp, err := holdTunnel(t, s, "127.0.0.2")
	if resp == nil {
		t.Fatalf("tunnel %d from one address: %v, want an HTTP refusal", DefaultMaxPendingTunnelsPerClient+1, err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusTooManyRequests || resp.Header.Get("Retry-After") == "" ||
		!strings.Contains(string(body), "max_pending_tunnels_per_client") {
		t.Fatalf("tunnel %d from one address: %d %q (Retry-After %q), want 429 naming max_pending_tunnels_per_client",
			DefaultMaxPendingTunnelsPerClient+1, resp.StatusCode, body, resp.Header.Get("Retry-After"))
	}
	if v := counterValue(t, s.metrics.handshakeFail.WithLabelValues("pending_client")); v != 1 {
		t.Errorf("handshake_failures{pending_client} = %v, want 1", v)
	}
	dial(t, s, tokenA, "edge-1", "ep")
}

// Attempt: a Hello listing 2,000 endpoints (each decoded name costs 16 bytes, however short).
// Now: the relay answers Error{protocol} naming the limit of 1024 and closes the tunnel.
func TestAttackHelloTooManyEndpoints(t *testing.T) {
	s := startServer(t, nil)
	eps := make([]string, 2000)
	for i := range eps {
		eps[i] = "ep"
	}
	a := connect(t, s, protocol.Hello{AgentID: "edge-1", Token: tokenA, Endpoints: eps})
	e, ok := a.frame().(*protocol.Error)
	if !ok || e.Code != protocol.CodeProtocol || !strings.Contains(e.Reason, "limit 1024") {
		t.Fatalf("hello of 2000 endpoints: %+v, want Error{protocol} naming limit 1024", e)
	}
}

// Attempt (the measurement): 2,000 WebSocket tunnels from 100 addresses (20 each, under
// the per-address cap) each send the 4-byte length prefix of a 1 MiB frame and nothing more; it
// used to cost about 1 MiB of memory each. Now: at most max_pending_tunnels (512) wait at once
// (the rest get 503, or evict the oldest stale ones), each holding a 4 KiB frame buffer, so
// VmRSS grows by less than 64 MiB (the Go heap in use under -race); an agent then connects
// within a second. Run alone: go test -count=1 -run TestAttackPreauthFloodMeasured -v ./relay/
func TestAttackPreauthFloodMeasured(t *testing.T) {
	if testing.Short() {
		t.Skip("load measurement: skipped with -short")
	}
	// Not the test log: its thousands of lines would be kept in memory and measured.
	s := startServerLog(t, func(c *Config) { c.HandshakeTimeout = time.Minute }, slog.New(slog.DiscardHandler))
	measure, what := vmRSS, "VmRSS"
	if raceEnabled {
		measure, what = heapInUse, "heap in use"
	}
	runtime.GC()
	base := measure(t)
	peak := base
	start := time.Now()
	var refused int
	var mu sync.Mutex
	var wg sync.WaitGroup
	for a := range 100 {
		from := fmt.Sprintf("127.0.0.%d", a+2)
		wg.Go(func() {
			for range 20 {
				_, resp, err := holdTunnel(t, s, from)
				mu.Lock()
				if resp != nil && resp.StatusCode == http.StatusServiceUnavailable {
					refused++
				} else if err != nil {
					t.Errorf("pending tunnel from %s: %v", from, err)
				}
				if v := measure(t); v > peak {
					peak = v
				}
				over := peak-base >= 64<<20
				mu.Unlock()
				if over { // stop early: the bound is already broken
					return
				}
			}
		})
	}
	wg.Wait()
	dialled := time.Since(start)
	pending := s.hub.preauth.pending()
	runtime.GC()
	if v := measure(t); v > peak {
		peak = v
	}
	// A real agent says Hello at once; it may take the place of a tunnel pending for over
	// preauthStale. The last of the flood's tunnels took their places up to the flood's end,
	// so the wait runs from there (under load the 2,000 dials take seconds).
	for floodEnd := start.Add(dialled); time.Since(floodEnd) < preauthStale+200*time.Millisecond; {
		time.Sleep(10 * time.Millisecond)
	}
	t0 := time.Now()
	dial(t, s, tokenA, "edge-1", "ep")
	took := time.Since(t0)
	grew := peak - base
	t.Logf("2000 pre-auth tunnels dialled in %v: %d pending, %d refused with 503, %.0f evicted; %s %d MiB at start, peak +%.1f MiB; agent welcomed in %v",
		dialled.Round(time.Millisecond), pending, refused,
		counterValue(t, s.metrics.handshakeFail.WithLabelValues("pending_evicted")), what, base>>20,
		float64(grew)/(1<<20), took.Round(time.Millisecond))
	if grew >= 64<<20 {
		t.Errorf("%s grew by %d MiB, want < 64 MiB", what, grew>>20)
	}
	if pending > DefaultMaxPendingTunnels {
		t.Errorf("%d tunnels pending, want at most max_pending_tunnels (%d)", pending, DefaultMaxPendingTunnels)
	}
	if took > time.Second {
		t.Errorf("agent welcomed after %v during the flood, want within a second", took)
	}
}
