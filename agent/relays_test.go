package agent

import (
	"crypto/tls"
	"errors"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/hookrelay/hookrelay/internal/testutil"
	"github.com/hookrelay/hookrelay/protocol"
	"github.com/hookrelay/hookrelay/relay"
)

func TestConfigRelayList(t *testing.T) {
	fp1 := "sha256:" + strings.Repeat("a", 64)
	fp2 := "sha256:" + strings.Repeat("B", 64)
	cfg, err := ParseConfig([]byte(`relay: [wss://a.example:443, "quic://b.example:4433"]
relay_fingerprint: [` + fp1 + `, ` + fp2 + `]
token: t
data_dir: /tmp/x
routes: [{endpoint: ep, target: "http://127.0.0.1:1/"}]
`))
	if err != nil {
		t.Fatal(err)
	}
	if len(cfg.Relays) != 2 || cfg.Relay != "wss://a.example:443" || cfg.Relays[1] != "quic://b.example:4433" {
		t.Errorf("relays %q (first %q)", cfg.Relays, cfg.Relay)
	}
	if len(cfg.RelayFingerprints) != 2 || cfg.RelayFingerprints[1] != fp2 {
		t.Errorf("fingerprints %q", cfg.RelayFingerprints)
	}
	one, err := ParseConfig([]byte("relay: ws://127.0.0.1:1\ntoken: t\ndata_dir: /tmp/x\nrelay_fingerprint: " + fp1 + "\n" +
		"routes: [{endpoint: ep, target: \"http://127.0.0.1:1/\"}]\n"))
	if err != nil {
		t.Fatal(err)
	}
	if len(one.Relays) != 1 || one.Relay != "ws://127.0.0.1:1" || one.RelayFingerprint != fp1 {
		t.Errorf("one relay: %q %q %q", one.Relays, one.Relay, one.RelayFingerprint)
	}
	for _, c := range []struct{ yaml, want string }{
		{"relay: [wss://a.example, ftp://b.example]", `config relay[1]: scheme "ftp" not allowed`},
		{"relay: [wss://a.example, quic://b.example]", `config relay[1]: "quic://b.example" has no port`},
		{"relay: []", "config relay: missing"},
		{"relay: {a: b}", "a string or a list of strings"},
		{"relay: ws://a.example\nrelay_fingerprint: [" + fp1 + ", sha256:12]", "config relay_fingerprint[1]:"},
	} {
		_, err := ParseConfig([]byte(c.yaml + "\ntoken: t\ndata_dir: /tmp/x\nroutes: [{endpoint: ep, target: \"http://127.0.0.1:1/\"}]\n"))
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: err %v, want %q", c.yaml, err, c.want)
		}
	}
}

// TestPinnedAnyOfTwo: with two fingerprints pinned, a relay with either certificate is
// trusted and a third is not.
func TestPinnedAnyOfTwo(t *testing.T) {
	_, _, der1 := testutil.WriteCert(t, t.TempDir())
	_, _, der2 := testutil.WriteCert(t, t.TempDir())
	certFile, keyFile, der3 := testutil.WriteCert(t, t.TempDir())
	s := startRelayWith(t, false, func(c *relay.Config) { c.TLS = &relay.TLSConfig{Cert: certFile, Key: keyFile} })
	tg := newTarget(t, nil)
	a, _ := autoAgent(t, "wss://"+s.Addr(), "", tg, func(c *Config) {
		c.RelayFingerprints = StringList{protocol.Fingerprint(der1), protocol.Fingerprint(der3)}
	})
	waitTransport(t, a, "websocket")
	if got := s.Agents(); len(got) != 1 {
		t.Errorf("relay sees %d agents, want the one pinning its certificate second", len(got))
	}

	cfg := &Config{RelayFingerprints: StringList{protocol.Fingerprint(der1), protocol.Fingerprint(der2)}}
	tc, err := cfg.pinnedTLS("")
	if err != nil {
		t.Fatal(err)
	}
	conn, err := net.Dial("tcp", s.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if err := tlsHandshake(conn, tc); err == nil || !strings.Contains(err.Error(), "pinned 2 fingerprints") {
		t.Errorf("handshake with an unpinned certificate: %v", err)
	}
}

// TestRelayListFailover: the agent takes the next relay of its list when the one it is on
// dies, within a few seconds, and skips a relay that does not answer.
func TestRelayListFailover(t *testing.T) {
	dead, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	deadAddr := dead.Addr().String()
	dead.Close() // nothing listens there now

	a1, stop1 := startStoppableRelay(t, false, nil)
	b := startRelay(t, false)
	tg := newTarget(t, nil)
	ag, logs := autoAgent(t, "ws://"+deadAddr, "", tg, func(c *Config) {
		c.Relay = ""
		c.Relays = StringList{"ws://" + deadAddr, "ws://" + a1.Addr(), "ws://" + b.Addr()}
	})
	testutil.CheckFor(t, 10*time.Second, 20*time.Millisecond, func() error {
		if len(a1.Agents()) != 1 {
			return errors.New("not on the first live relay yet")
		}
		return nil
	})
	waitDelivered(t, tg, postWebhook(t, a1, "via a"))
	if ag.Status().Relay != "ws://"+a1.Addr() {
		t.Errorf("status relay %q, want %q", ag.Status().Relay, "ws://"+a1.Addr())
	}
	died := time.Now()
	stop1()
	testutil.CheckFor(t, 10*time.Second, 20*time.Millisecond, func() error {
		if len(b.Agents()) != 1 {
			return errors.New("not on the next relay yet")
		}
		return nil
	})
	t.Logf("on the next relay %v after the first stopped", time.Since(died).Round(time.Millisecond))
	waitDelivered(t, tg, postWebhook(t, b, "via b"))
	if !logs.Has("relay=ws://" + b.Addr()) {
		t.Errorf("log does not name the relay it moved to:\n%s", logs)
	}
}

func tlsHandshake(conn net.Conn, tc *tls.Config) error {
	c := tls.Client(conn, tc)
	c.SetDeadline(time.Now().Add(5 * time.Second))
	return c.Handshake()
}
