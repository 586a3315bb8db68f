package relay

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hookrelay/hookrelay/internal/testutil"
)

const hashA = "sha256:9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"

func TestParseConfigGood(t *testing.T) {
	c, err := parseConfig([]byte(`
addr: 127.0.0.1:8080
quic_addr: 127.0.0.1:8443
data_dir: /tmp/x
tls: {cert: /etc/relay.crt, key: /etc/relay.key}
admin_token: "` + hashA + `"
admin_addr: 127.0.0.1:7070
window: 64
lease_ttl: 90s
endpoints:
  - name: github
    tokens: ["` + hashA + `"]
    retention: 24h
    quota: 1GiB
    rate: 100
    max_body: 512KB
    sync: false
    verify:
      github: {secret: "s3"}
      stripe: {secret: "whsec_x", tolerance: 300s}
  - name: Stripe_1.x-y
`))
	if err != nil {
		t.Fatal(err)
	}
	if c.Addr != "127.0.0.1:8080" || c.QUICAddr != "127.0.0.1:8443" || c.DataDir != "/tmp/x" ||
		c.TLS == nil || c.TLS.Cert != "/etc/relay.crt" || c.AdminToken != hashA || c.AdminAddr != "127.0.0.1:7070" ||
		c.Window != 64 || c.LeaseTTL != 90*time.Second {
		t.Errorf("top-level keys parsed wrong: %+v", c)
	}
	e := c.Endpoints[0]
	if e.Name != "github" || len(e.Tokens) != 1 || e.Retention != 24*time.Hour || e.Quota != 1<<30 ||
		e.Rate != 100 || e.Burst != 100 || e.MaxBody != 512000 || e.Verify == nil || e.Verify.GitHub.Secret != "s3" ||
		e.Verify.Stripe.Tolerance != 300*time.Second {
		t.Errorf("endpoint parsed wrong: %+v", e)
	}
	d := c.Endpoints[1]
	if d.Retention != 72*time.Hour || d.MaxBody != 25<<20 || d.Quota != 0 || d.Rate != 0 || d.Verify != nil {
		t.Errorf("endpoint defaults wrong: %+v", d)
	}
}

func TestParseConfigDefaults(t *testing.T) {
	c, err := parseConfig([]byte("endpoints: [{name: a}]\n"))
	if err != nil {
		t.Fatal(err)
	}
	if c.Addr != DefaultAddr || c.DataDir != DefaultDataDir || c.Window != 256 || c.HandshakeTimeout != 10*time.Second ||
		c.ReadHeaderTimeout != 10*time.Second || c.QUICAddr != "" || c.TLS != nil {
		t.Errorf("defaults wrong: %+v", c)
	}
}

func TestParseConfigBad(t *testing.T) {
	ep := "endpoints: [{name: a}]\n"
	testutil.CheckRejects(t, func(b []byte) error { _, err := parseConfig(b); return err }, []testutil.Rejected{
		{"unknown top key", "adr: :80\n" + ep, "adr"},
		{"unknown endpoint key", "endpoints: [{name: a, qouta: 1}]", "qouta"},
		{"unknown verify key", "endpoints: [{name: a, verify: {gitlab: {secret: x}}}]", "gitlab"},
		{"no endpoints", "addr: :80\n", "endpoints"},
		{"bad name slash", "endpoints: [{name: a}, {name: a/b}]", `endpoints[1].name: "a/b" is not allowed`},
		{"bad name dotdot", "endpoints: [{name: ..}]", "endpoints[0].name"},
		{"empty name", "endpoints: [{tokens: []}]", "endpoints[0].name: missing"},
		{"duplicate name", "endpoints: [{name: a}, {name: a}]", `endpoints[1].name: "a" is used twice`},
		{"token not a hash", "endpoints: [{name: a, tokens: [secret]}]", "endpoints[0].tokens[0]"},
		{"token upper hex", "endpoints: [{name: a, tokens: [\"" + strings.ToUpper(hashA) + "\"]}]", "endpoints[0].tokens[0]"},
		{"token short", "endpoints: [{name: a, tokens: [\"sha256:abcd\"]}]", "endpoints[0].tokens[0]"},
		{"admin token", "admin_token: hunter2\n" + ep, "admin_token"},
		{"addr", "addr: localhost\n" + ep, "addr"},
		{"addr port", "addr: :99999\n" + ep, "addr"},
		{"quic addr", "quic_addr: nope\n" + ep, "quic_addr"},
		{"admin addr", "admin_addr: nope\n" + ep, "admin_addr"},
		{"tls half", "tls: {cert: a.crt}\n" + ep, "tls"},
		{"window", "window: -1\n" + ep, "window"},
		{"negative lease", "lease_ttl: -1s\n" + ep, "lease_ttl"},
		{"bad size", "endpoints: [{name: a, quota: 1XB}]", "1XB"},
		{"negative size", "endpoints: [{name: a, max_body: -5}]", "-5"},
		{"bad duration", "endpoints: [{name: a, retention: forever}]", "forever"},
		{"negative retention", "endpoints: [{name: a, retention: -1h}]", "endpoints[0].retention"},
		{"negative rate", "endpoints: [{name: a, rate: -1}]", "endpoints[0].rate"},
		{"max body over buffer", "ingress_buffer: 1MiB\nendpoints: [{name: a, max_body: 2MiB}]", "endpoints[0].max_body"},
		{"max body over what the tunnel carries", "endpoints: [{name: a, max_body: 40MiB}]", "endpoints[0].max_body: 40MiB is over 32MiB"},
		{"two documents", ep + "---\n" + ep, "more than one document"},
		{"negative agents per token", "max_agents_per_token: -1\n" + ep, "max_agents_per_token"},
		{"negative per client requests", "per_client_requests: -1\n" + ep, "per_client_requests: -1 is negative"},
		{"negative per client buffer", "per_client_buffer: -1\n" + ep, `size "-1" is out of range`},
		{"max body over per client buffer", "per_client_buffer: 1MiB\nendpoints: [{name: a, max_body: 2MiB}]", "endpoints[0].max_body: 2MiB is over per_client_buffer"},
		{"trusted proxy not a CIDR", "trusted_proxies: [10.0.0.0/8, proxy.local]\n" + ep, `trusted_proxies[1]: "proxy.local" is not a CIDR`},
		{"bad verify", "endpoints: [{name: a, verify: {hmac: {header: X-Sig, algorithm: md5, secret: s}}}]", "endpoints[0].verify.hmac.algorithm"},
		{"verify no secret", "endpoints: [{name: a}, {name: b, verify: {github: {}}}]", "endpoints[1].verify.github"},
	})
}

func TestParseByteSize(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want ByteSize
	}{
		{"0", 0}, {"1024", 1024}, {"512KB", 512000}, {"512kb", 512000}, {"1KiB", 1024},
		{"25MiB", 25 << 20}, {"1GiB", 1 << 30}, {"2GB", 2e9}, {"1TiB", 1 << 40}, {"10B", 10},
		{"1.5KiB", 1536}, {" 3 MiB ", 3 << 20},
	} {
		got, err := ParseByteSize(tc.in)
		if err != nil || got != tc.want {
			t.Errorf("ParseByteSize(%q) = %d, %v; want %d", tc.in, got, err, tc.want)
		}
	}
	for _, in := range []string{"", "MiB", "-1", "1XB", "abc", "1e400", "99999999999TiB"} {
		if got, err := ParseByteSize(in); err == nil {
			t.Errorf("ParseByteSize(%q) = %d, want an error", in, got)
		}
	}
}

func TestLoadConfigEnvAndPaths(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "relay.yaml")
	err := os.WriteFile(path, []byte("addr: 127.0.0.1:1\ndata_dir: /from/file\ntls: {cert: relay.crt, key: /abs/relay.key}\nendpoints: [{name: a}]\n"), 0o600)
	if err != nil {
		t.Fatal(err)
	}
	t.Setenv("HOOKRELAY_ADDR", "127.0.0.1:2")
	t.Setenv("HOOKRELAY_ADMIN_TOKEN", hashA)
	c, err := LoadConfig(path)
	if err != nil {
		t.Fatal(err)
	}
	if c.Addr != "127.0.0.1:2" {
		t.Errorf("env did not override the file: addr = %q", c.Addr)
	}
	if c.DataDir != "/from/file" || c.AdminToken != hashA {
		t.Errorf("file or env value lost: data_dir %q admin_token %q", c.DataDir, c.AdminToken)
	}
	if c.TLS.Cert != filepath.Join(dir, "relay.crt") || c.TLS.Key != "/abs/relay.key" {
		t.Errorf("tls paths not resolved against the config dir: %+v", c.TLS)
	}

	t.Setenv("HOOKRELAY_ADDR", "bogus")
	c, err = LoadConfig(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Validate(); err == nil || !strings.Contains(err.Error(), "addr") {
		t.Errorf("a bad env value was not refused by key: %v", err)
	}
	if err := os.WriteFile(path, []byte("endpoints: [{name: a, bogus: 1}]\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadConfig(path); err == nil || !strings.Contains(err.Error(), "bogus") {
		t.Errorf("an unknown key was not refused by LoadConfig: %v", err)
	}
	if _, err := LoadConfig(filepath.Join(dir, "missing.yaml")); err == nil {
		t.Error("a missing file was accepted")
	}
}

func FuzzParseConfig(f *testing.F) {
	f.Add([]byte("endpoints: [{name: a, quota: 1GiB, max_body: 25MiB, retention: 72h}]"))
	f.Add([]byte("addr: :80\nendpoints:\n  - name: x\n    tokens: [\"" + hashA + "\"]\n"))
	f.Add([]byte("max_agents_per_token: 2\nadmin_token: \"" + hashA + "\"\nendpoints:\n  - name: s\n    verify:\n      standard_webhooks: {secret: whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw, tolerance: 60s}\n      ip_allow: {cidrs: [10.0.0.0/8]}\n"))
	f.Add([]byte("endpoints: [{name: h, verify: {hmac: {header: X-Sig, algorithm: md5, secret: s}}}]"))
	f.Fuzz(func(t *testing.T, b []byte) {
		c, err := parseConfig(b)
		if err == nil && (len(c.Endpoints) == 0 || c.Window < 1) {
			t.Fatalf("accepted an invalid config: %+v", c)
		}
	})
}
