package relay

import (
	"context"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hookrelay/hookrelay/internal/testutil"
	"github.com/hookrelay/hookrelay/protocol"
)

// writeCert writes a new self-signed certificate for 127.0.0.1 and its key to dir/relay.crt
// and dir/relay.key, and returns its fingerprint.
func writeCert(t *testing.T, dir string) string {
	_, _, der := testutil.WriteCert(t, dir)
	return protocol.Fingerprint(der)
}

// pinnedGet fetches url trusting only the certificate with fingerprint fp.
func pinnedGet(t *testing.T, url, fp string) (*http.Response, error) {
	t.Helper()
	tc, err := protocol.PinnedTLSConfig(fp, "")
	if err != nil {
		t.Fatal(err)
	}
	c := &http.Client{Transport: &http.Transport{TLSClientConfig: tc}, Timeout: 10 * time.Second}
	defer c.CloseIdleConnections()
	return c.Get(url)
}

func infoFingerprint(t *testing.T, s *Server, fp string) string {
	t.Helper()
	resp, err := pinnedGet(t, "https://"+s.Addr()+"/v1/info", fp)
	return decodeInfo(t, resp, err)["fingerprint"]
}

func TestTLSHTTPSAndWSS(t *testing.T) {
	dir := t.TempDir()
	fp := writeCert(t, dir)
	s := startServer(t, func(c *Config) {
		c.TLS = &TLSConfig{Cert: filepath.Join(dir, "relay.crt"), Key: filepath.Join(dir, "relay.key")}
	})
	if got := infoFingerprint(t, s, fp); got != fp {
		t.Fatalf("/v1/info fingerprint %q, want the configured certificate's %q", got, fp)
	}
	// Ingress over https.
	resp, err := pinnedGet(t, "https://"+s.Addr()+"/h/ep/x", fp)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusAccepted {
		t.Fatalf("https ingress: %d", resp.StatusCode)
	}
	// An agent over wss, pinning the fingerprint, receives it.
	tc, _ := protocol.PinnedTLSConfig(fp, "")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	tun, err := protocol.DialWebSocket(ctx, "wss://"+s.Addr()+"/v1/tunnel", protocol.WSDialConfig{TLS: tc})
	if err != nil {
		t.Fatal(err)
	}
	defer tun.Close()
	tun.WriteFrame(&protocol.Hello{Version: protocol.Version, AgentID: "tls", Token: tokenA})
	if f, err := tun.ReadFrame(); err != nil {
		t.Fatal(err)
	} else if _, ok := f.(*protocol.Welcome); !ok {
		t.Fatalf("got %#v, want welcome", f)
	}
	if f, err := tun.ReadFrame(); err != nil {
		t.Fatal(err)
	} else if w, ok := f.(*protocol.Webhook); !ok || w.Path != "/x" || w.Method != "GET" {
		t.Fatalf("got %#v, want the webhook", f)
	}
	// Plain http on the TLS port gets nothing stored.
	if resp, err := http.Post("http://"+s.Addr()+"/h/ep", "text/plain", strings.NewReader("x")); err == nil {
		resp.Body.Close()
		if resp.StatusCode == http.StatusAccepted {
			t.Error("plain http accepted on a TLS listener")
		}
	}
	// A wrong pin is refused by the client.
	if _, err := pinnedGet(t, "https://"+s.Addr()+"/v1/info", "sha256:"+strings.Repeat("0", 64)); err == nil {
		t.Error("a wrong pinned fingerprint was accepted")
	}
}

func TestTLSReloadCertificate(t *testing.T) {
	dir := t.TempDir()
	fp1 := writeCert(t, dir)
	s := startServer(t, func(c *Config) {
		c.TLS = &TLSConfig{Cert: filepath.Join(dir, "relay.crt"), Key: filepath.Join(dir, "relay.key")}
	})
	// A broken certificate file is refused and the running one stays.
	os.WriteFile(filepath.Join(dir, "relay.crt"), []byte("not pem"), 0o600)
	c := *s.Config()
	if err := s.Reload(&c); err == nil {
		t.Fatal("reload with a broken certificate accepted")
	}
	if got := infoFingerprint(t, s, fp1); got != fp1 {
		t.Fatalf("fingerprint %q after a refused reload, want %q", got, fp1)
	}
	// A renewed certificate is served after a reload, and reported.
	fp2 := writeCert(t, dir)
	c = *s.Config()
	if err := s.Reload(&c); err != nil {
		t.Fatal(err)
	}
	if got := infoFingerprint(t, s, fp2); got != fp2 {
		t.Fatalf("fingerprint %q after reload, want the new %q", got, fp2)
	}
	if _, err := pinnedGet(t, "https://"+s.Addr()+"/v1/info", fp1); err == nil {
		t.Error("the old certificate is still served after a reload")
	}
}
