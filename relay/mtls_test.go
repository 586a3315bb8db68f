package relay

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"io"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hookrelay/hookrelay/internal/testutil"
	"github.com/hookrelay/hookrelay/protocol"
	"github.com/hookrelay/hookrelay/relay/verify"
)

// mtlsPost posts to path on the TLS relay s (pinned to fp), presenting cert when it is not nil.
func mtlsPost(t *testing.T, s *Server, fp, path string, cert *tls.Certificate) (int, string) {
	t.Helper()
	tc, err := protocol.PinnedTLSConfig(fp, "")
	if err != nil {
		t.Fatal(err)
	}
	if cert != nil {
		tc.Certificates = []tls.Certificate{*cert}
	}
	c := &http.Client{Transport: &http.Transport{TLSClientConfig: tc}, Timeout: 10 * time.Second}
	defer c.CloseIdleConnections()
	resp, err := c.Post("https://"+s.Addr()+path, "application/json", strings.NewReader(`{"n":1}`))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	var e map[string]string
	json.Unmarshal(raw, &e)
	return resp.StatusCode, e["error"]
}

func TestMTLSEndpoint(t *testing.T) {
	dir := t.TempDir()
	fp := writeCert(t, dir)
	ca := testutil.NewCA(t, "senders CA")
	caFile := ca.WritePEM(t, dir, "senders-ca.pem")
	s := startServer(t, func(c *Config) {
		c.TLS = &TLSConfig{Cert: filepath.Join(dir, "relay.crt"), Key: filepath.Join(dir, "relay.key")}
		c.Endpoints = append(c.Endpoints,
			Endpoint{Name: "secure", Tokens: []string{hashOf(tokenA)}, Verify: &verify.Config{MTLS: &verify.MTLSConfig{CAFile: caFile}}},
			Endpoint{Name: "picky", Tokens: []string{hashOf(tokenA)},
				Verify: &verify.Config{MTLS: &verify.MTLSConfig{CAFile: caFile, Subjects: []string{"billing.sender.example"}}}})
	})
	right := ca.Issue(t, "sender-1", testutil.ClientOptions{})
	billing := ca.Issue(t, "sender-2", testutil.ClientOptions{DNSNames: []string{"billing.sender.example"}})
	foreign := testutil.NewCA(t, "another CA").Issue(t, "sender-1", testutil.ClientOptions{})

	cases := []struct {
		name, path string
		cert       *tls.Certificate
		code       int
		reason     string
	}{
		{"no certificate", "/h/secure", nil, http.StatusUnauthorized, "mtls: missing client certificate"},
		{"another CA", "/h/secure", &foreign, http.StatusUnauthorized, "mtls: invalid client certificate: not issued by the endpoint's CA"},
		{"the right CA", "/h/secure", &right, http.StatusAccepted, ""},
		{"subject not allowed", "/h/picky", &right, http.StatusForbidden, "mtls: subject not allowed"},
		{"subject allowed", "/h/picky", &billing, http.StatusAccepted, ""},
		// Other endpoints go on without certificates, or with any.
		{"other endpoint, none", "/h/ep", nil, http.StatusAccepted, ""},
		{"other endpoint, foreign", "/h/ep", &foreign, http.StatusAccepted, ""},
	}
	for _, c := range cases {
		code, reason := mtlsPost(t, s, fp, c.path, c.cert)
		if code != c.code || !strings.Contains(reason, c.reason) {
			t.Errorf("%s: %d %q, want %d %q", c.name, code, reason, c.code, c.reason)
		}
	}
	if n, m := stored(t, s, "secure"), stored(t, s, "picky"); n != 1 || m != 1 {
		t.Errorf("stored secure %d picky %d, want 1 and 1 (only the accepted ones)", n, m)
	}
	for _, c := range []struct{ endpoint, reason string }{{"secure", "missing"}, {"secure", "invalid"}, {"picky", "subject"}} {
		if n := counterValue(t, s.metrics.verifyFailed.WithLabelValues(c.endpoint, verify.SchemeMTLS, c.reason)); n != 1 {
			t.Errorf("verify failures {%s, mtls, %s} = %v, want 1", c.endpoint, c.reason, n)
		}
	}

	// An agent's tunnel over wss, with no client certificate, still connects and receives.
	tc, _ := protocol.PinnedTLSConfig(fp, "")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	tun, err := protocol.DialWebSocket(ctx, "wss://"+s.Addr()+"/v1/tunnel", protocol.WSDialConfig{TLS: tc})
	if err != nil {
		t.Fatal(err)
	}
	defer tun.Close()
	tun.WriteFrame(&protocol.Hello{Version: protocol.Version, AgentID: "mtls", Token: tokenA, Endpoints: []string{"secure"}})
	if f, err := tun.ReadFrame(); err != nil {
		t.Fatal(err)
	} else if _, ok := f.(*protocol.Welcome); !ok {
		t.Fatalf("got %#v, want welcome", f)
	}
	if f, err := tun.ReadFrame(); err != nil {
		t.Fatal(err)
	} else if w, ok := f.(*protocol.Webhook); !ok || w.Method != "POST" {
		t.Fatalf("got %#v, want the webhook the right certificate sent", f)
	}
}

// A reload that adds an mtls endpoint makes new connections ask for client certificates.
func TestMTLSAddedByReload(t *testing.T) {
	dir := t.TempDir()
	fp := writeCert(t, dir)
	ca := testutil.NewCA(t, "senders CA")
	caFile := ca.WritePEM(t, dir, "ca.pem")
	s := startServer(t, func(c *Config) {
		c.TLS = &TLSConfig{Cert: filepath.Join(dir, "relay.crt"), Key: filepath.Join(dir, "relay.key")}
	})
	c := *s.Config()
	c.Endpoints = append(append([]Endpoint(nil), c.Endpoints...),
		Endpoint{Name: "secure", Tokens: []string{hashOf(tokenA)}, Verify: &verify.Config{MTLS: &verify.MTLSConfig{CAFile: caFile}}})
	if err := s.Reload(&c); err != nil {
		t.Fatal(err)
	}
	right := ca.Issue(t, "sender", testutil.ClientOptions{})
	if code, reason := mtlsPost(t, s, fp, "/h/secure", &right); code != http.StatusAccepted {
		t.Fatalf("after reload, the right certificate: %d %q, want 202", code, reason)
	}
	if code, reason := mtlsPost(t, s, fp, "/h/secure", nil); code != http.StatusUnauthorized {
		t.Fatalf("after reload, no certificate: %d %q, want 401", code, reason)
	}
}
