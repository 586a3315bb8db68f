package relay

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hookrelay/hookrelay/internal/testutil"
	"github.com/hookrelay/hookrelay/persist"
	"github.com/hookrelay/hookrelay/protocol"
)

// quicServer runs a relay with QUIC on 127.0.0.1:0; dataDir "" means a new temp dir.
func quicServer(t *testing.T, dataDir string, mutate func(*Config)) *Server {
	return startServer(t, func(c *Config) {
		c.QUICAddr = "127.0.0.1:0"
		if dataDir != "" {
			c.DataDir = dataDir
		}
		if mutate != nil {
			mutate(c)
		}
	})
}

// decodeInfo decodes the answer of GET /v1/info, failing the test on err.
func decodeInfo(t *testing.T, resp *http.Response, err error) map[string]string {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var out map[string]string
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
		t.Fatal(err)
	}
	return out
}

// info fetches GET /v1/info.
func info(t *testing.T, s *Server) map[string]string {
	t.Helper()
	url, client := s.url("/v1/info"), http.DefaultClient
	if s.cfg.TLS != nil {
		url = "https://" + s.Addr() + "/v1/info"
		client = &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}}
	}
	resp, err := client.Get(url)
	return decodeInfo(t, resp, err)
}

// quicAddrOf resolves the relay's advertised quic_addr against its HTTP host.
func quicAddrOf(t *testing.T, s *Server) string {
	t.Helper()
	qa := info(t, s)["quic_addr"]
	host, port, err := net.SplitHostPort(qa)
	if err != nil {
		t.Fatalf("quic_addr %q: %v", qa, err)
	}
	if host == "" {
		host, _, _ = net.SplitHostPort(s.Addr())
	}
	return net.JoinHostPort(host, port)
}

// dialQUIC connects a raw agent over QUIC with a pinned fingerprint and sends hello.
func dialQUIC(t *testing.T, s *Server, fingerprint string, hello protocol.Hello) (*rawAgent, error) {
	t.Helper()
	tc, err := protocol.PinnedTLSConfig(fingerprint, "")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	tun, err := protocol.DialQUIC(ctx, quicAddrOf(t, s), tc, protocol.QUICConfig{})
	if err != nil {
		return nil, err
	}
	return startRawAgent(t, tun, hello), nil
}

func TestSelfSignedCertCreatedOnceAndReused(t *testing.T) {
	dir := t.TempDir()
	cfg := &Config{DataDir: dir, QUICAddr: "relay.example.net:8443", Addr: "192.0.2.7:8080"}
	fp, err := Fingerprint(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := protocol.ParseFingerprint(fp); err != nil || fp != strings.ToLower(fp) {
		t.Fatalf("fingerprint %q: %v", fp, err)
	}
	st, err := os.Stat(filepath.Join(dir, selfSignedKey))
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode().Perm() != 0o600 {
		t.Errorf("key file mode %v, want 0600", st.Mode().Perm())
	}
	c, err := Certificate(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if got := protocol.Fingerprint(c.Certificate[0]); got != fp {
		t.Fatalf("Certificate's fingerprint %s, Fingerprint said %s", got, fp)
	}
	leaf, err := x509.ParseCertificate(c.Certificate[0])
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"localhost", "127.0.0.1", "::1", "relay.example.net", "192.0.2.7"} {
		if err := leaf.VerifyHostname(name); err != nil {
			t.Errorf("self-signed cert not valid for %s: %v", name, err)
		}
	}
	if time.Until(leaf.NotAfter) < 10*365*24*time.Hour {
		t.Errorf("self-signed cert expires %v: too soon for a pinned certificate", leaf.NotAfter)
	}

	// serve twice on the same data dir: the same certificate each time
	for range 2 {
		s, stop := runServer(t, &Config{Addr: "127.0.0.1:0", QUICAddr: "127.0.0.1:0", DataDir: dir,
			Endpoints: []Endpoint{{Name: "ep", Tokens: []string{hashOf(tokenA)}}}}, testLogger(t))
		if got := info(t, s)["fingerprint"]; got != fp {
			t.Errorf("/v1/info fingerprint %s after a restart, want the first one %s", got, fp)
		}
		if err := stop(); err != nil {
			t.Fatal(err)
		}
		s.Close()
	}
}

// TestSelfSignedCertRace: serve and `hookrelay fingerprint` creating the certificate at
// once agree on one.
func TestSelfSignedCertRace(t *testing.T) {
	dir := t.TempDir()
	fps := make([]string, 8)
	var wg sync.WaitGroup
	for i := range fps {
		wg.Go(func() {
			fp, err := Fingerprint(&Config{DataDir: dir})
			if err != nil {
				t.Error(err)
			}
			fps[i] = fp
		})
	}
	wg.Wait()
	for _, fp := range fps[1:] {
		if fp != fps[0] {
			t.Fatalf("racing creators got different certificates: %v", fps)
		}
	}
}

func TestConfiguredCertOnQUIC(t *testing.T) {
	dir := t.TempDir()
	certFile, keyFile, _ := testutil.WriteCert(t, dir)
	s := quicServer(t, "", func(c *Config) {
		c.TLS = &TLSConfig{Cert: certFile, Key: keyFile}
	})
	want, err := Fingerprint(s.Config())
	if err != nil {
		t.Fatal(err)
	}
	b, _ := os.ReadFile(certFile)
	blk, _ := pem.Decode(b)
	if want != protocol.Fingerprint(blk.Bytes) {
		t.Fatalf("Fingerprint %s is not the configured certificate's", want)
	}
	if got := info(t, s)["fingerprint"]; got != want {
		t.Errorf("/v1/info fingerprint %s, want the configured certificate's %s", got, want)
	}
	if _, err := os.Stat(filepath.Join(s.Config().DataDir, selfSignedCert)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("a self-signed cert was made although tls is configured (stat: %v)", err)
	}
	a, err := dialQUIC(t, s, want, protocol.Hello{AgentID: "a1", Token: tokenA})
	if err != nil {
		t.Fatalf("QUIC with the configured certificate pinned: %v", err)
	}
	if _, ok := a.frame().(*protocol.Welcome); !ok {
		t.Fatal("no welcome")
	}
}

func TestInfoWithoutQUIC(t *testing.T) {
	s := startServer(t, nil)
	if got := info(t, s); got["quic_addr"] != "" || got["fingerprint"] != "" {
		t.Errorf("/v1/info %v, want no quic_addr and no fingerprint without quic_addr", got)
	}
}

// TestQUICTunnelDelivers: a raw agent over QUIC with the pinned fingerprint gets webhooks
// accepted before and after it connects, acks them, and shows as a QUIC agent; at shutdown it
// gets GoAway.
func TestQUICTunnelDelivers(t *testing.T) {
	s := quicServer(t, "", nil)
	inf := info(t, s)
	_, port, _ := net.SplitHostPort(inf["quic_addr"])
	if inf["quic_addr"] != ":"+port || port == "0" {
		t.Errorf("/v1/info quic_addr %q, want \":PORT\" (QUIC on addr's host)", inf["quic_addr"])
	}
	before := accept(t, s, "/h/ep/a?x=1", []byte("before"))
	a, err := dialQUIC(t, s, inf["fingerprint"], protocol.Hello{AgentID: "q1", Token: tokenA})
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := a.frame().(*protocol.Welcome); !ok {
		t.Fatal("no welcome over QUIC")
	}
	w := a.webhook()
	if w.ID != before || string(w.Body) != "before" || w.Path != "/a" || w.Query != "x=1" {
		t.Fatalf("got %s %q %s?%s, want %s \"before\" /a?x=1", w.ID, w.Body, w.Path, w.Query, before)
	}
	after := accept(t, s, "/h/ep", []byte("after"))
	if w := a.webhook(); w.ID != after || string(w.Body) != "after" {
		t.Fatalf("got %s %q, want %s \"after\"", w.ID, w.Body, after)
	}
	a.send(&protocol.Ack{IDs: []string{before, after}})
	testutil.WaitFor(t, 10*time.Second, "acks over QUIC", func() bool {
		return state(t, s, before) == persist.StateAcked && state(t, s, after) == persist.StateAcked
	})
	agents := s.Agents()
	if len(agents) != 1 || agents[0].Transport != "quic" || agents[0].AgentID != "q1" {
		t.Errorf("agents %+v, want q1 over quic", agents)
	}
	go s.Close()
	var goAway bool
	for _, f := range a.ended() {
		_, ok := f.(*protocol.GoAway)
		goAway = goAway || ok
	}
	if !goAway {
		t.Error("no GoAway over QUIC at shutdown")
	}
}

func TestQUICWrongFingerprintRefused(t *testing.T) {
	s := quicServer(t, "", nil)
	accept(t, s, "/h/ep", []byte("secret"))
	wrong := "sha256:" + strings.Repeat("ab", 32)
	a, err := dialQUIC(t, s, wrong, protocol.Hello{AgentID: "q1", Token: tokenA})
	if !errors.Is(err, protocol.ErrFingerprintMismatch) {
		if a != nil {
			a.close()
		}
		t.Fatalf("dial with a wrong fingerprint: %v, want ErrFingerprintMismatch", err)
	}
	if n := len(s.Agents()); n != 0 {
		t.Errorf("%d agents connected", n)
	}
}

func TestAdvertisedQUICAddr(t *testing.T) {
	for _, tc := range []struct {
		bound, http, want string
	}{
		{"0.0.0.0:8443", ":8080", ":8443"},
		{"[::]:8443", "0.0.0.0:8080", ":8443"},
		{"127.0.0.1:8443", "127.0.0.1:8080", ":8443"},
		{"10.0.0.5:8443", "10.0.0.5:80", ":8443"},
		{"10.0.0.6:8443", "10.0.0.5:80", "10.0.0.6:8443"},
		{"[2001:db8::1]:8443", ":80", "[2001:db8::1]:8443"},
	} {
		ua, err := net.ResolveUDPAddr("udp", tc.bound)
		if err != nil {
			t.Fatal(err)
		}
		if got := advertisedQUICAddr(ua, tc.http); got != tc.want {
			t.Errorf("bound %s, addr %s: %q, want %q", tc.bound, tc.http, got, tc.want)
		}
	}
}
