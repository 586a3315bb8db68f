package agent

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hookrelay/hookrelay/internal/testutil"
)

const goodConfig = `
relay: wss://relay.example.com
token: file-token
data_dir: /tmp/x
routes:
  - endpoint: github
    target: http://127.0.0.1:3000/webhooks
`

func TestConfigDefaults(t *testing.T) {
	t.Setenv(TokenEnv, "")
	cfg, err := ParseConfig([]byte(goodConfig))
	if err != nil {
		t.Fatal(err)
	}
	r := cfg.Routes[0]
	if cfg.AdminAddr != "127.0.0.1:7071" || r.Concurrency != 8 || r.MaxAttempts != 20 ||
		r.MaxAge != 72*time.Hour || r.Timeout != 30*time.Second || r.BackoffMin != time.Second ||
		r.BackoffMax != 10*time.Minute || cfg.Token != "file-token" {
		t.Fatalf("defaults: %+v %+v", cfg, r)
	}
}

func TestConfigAllKeys(t *testing.T) {
	t.Setenv(TokenEnv, "")
	ca := filepath.Join(t.TempDir(), "ca.pem")
	os.WriteFile(ca, []byte("x"), 0o600)
	y := `
relay: https://relay.example.com
token: t
agent_id: edge-1
data_dir: /var/lib/hookagent
relay_fingerprint: "sha256:` + strings.Repeat("ab", 32) + `"
admin_addr: 127.0.0.1:0
shutdown_grace: 2s
routes:
  - endpoint: github
    target: https://127.0.0.1:3000/webhooks
    concurrency: 2
    rate: 5.5
    max_attempts: 3
    max_age: 1h
    ordered: true
    headers: {Authorization: "Bearer x"}
    ca_file: ` + ca + `
    timeout: 5s
    backoff_min: 100ms
    backoff_max: 1s
`
	cfg, err := ParseConfig([]byte(y))
	if err != nil {
		t.Fatal(err)
	}
	r := cfg.Routes[0]
	if cfg.AgentID != "edge-1" || r.Concurrency != 2 || r.Rate != 5.5 || r.MaxAttempts != 3 ||
		r.MaxAge != time.Hour || !r.Ordered || r.Headers["Authorization"] != "Bearer x" ||
		r.Timeout != 5*time.Second || r.BackoffMin != 100*time.Millisecond || r.BackoffMax != time.Second ||
		cfg.ShutdownGrace != 2*time.Second || r.CAFile != ca {
		t.Fatalf("parsed: %+v %+v", cfg, r)
	}
}

func TestConfigTokenFromEnvWins(t *testing.T) {
	t.Setenv(TokenEnv, "env-token")
	cfg, err := ParseConfig([]byte(goodConfig))
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Token != "env-token" {
		t.Fatalf("token = %q, want the environment's", cfg.Token)
	}
	noToken := strings.Replace(goodConfig, "token: file-token\n", "", 1)
	if cfg, err := ParseConfig([]byte(noToken)); err != nil || cfg.Token != "env-token" {
		t.Fatalf("env token only: %v %+v", err, cfg)
	}
}

func TestConfigErrors(t *testing.T) {
	t.Setenv(TokenEnv, "")
	rep := func(old, new string) string {
		if !strings.Contains(goodConfig, old) {
			t.Fatalf("%q not in the config", old)
		}
		return strings.Replace(goodConfig, old, new, 1)
	}
	route := "    target: http://127.0.0.1:3000/webhooks\n"
	testutil.CheckRejects(t, func(b []byte) error { _, err := ParseConfig(b); return err }, []testutil.Rejected{
		{"unknown key", goodConfig + "colour: blue\n", "colour"},
		{"unknown route key", rep(route, route+"    retries: 3\n"), "retries"},
		{"no relay", rep("relay: wss://relay.example.com\n", ""), "relay: missing"},
		{"relay scheme", rep("wss://relay", "ftp://relay"), `relay: scheme "ftp" not allowed (ws, wss, quic, http or https)`},
		{"relay host", rep("wss://relay.example.com", "wss://"), "relay:"},
		{"no token", rep("token: file-token\n", ""), "token: missing"},
		{"no data_dir", rep("data_dir: /tmp/x\n", ""), "data_dir: missing"},
		{"fingerprint", goodConfig + "relay_fingerprint: md5:abc\n", "relay_fingerprint"},
		{"admin_addr", goodConfig + "admin_addr: localhost\n", "admin_addr"},
		{"no routes", strings.Split(goodConfig, "routes:")[0], "routes: none"},
		{"no endpoint", rep("  - endpoint: github\n    target", "  - target"), "routes[0]: endpoint: missing"},
		{"target scheme", rep("http://127.0.0.1:3000/webhooks", "ftp://127.0.0.1/x"), "routes[0]: target"},
		{"target host", rep("http://127.0.0.1:3000/webhooks", "http:///webhooks"), "routes[0]: target"},
		{"concurrency", rep(route, route+"    concurrency: -1\n"), "concurrency"},
		{"rate", rep(route, route+"    rate: -1\n"), "rate"},
		{"max_attempts", rep(route, route+"    max_attempts: -2\n"), "max_attempts"},
		{"max_age", rep(route, route+"    max_age: -1h\n"), "max_age"},
		{"max_age syntax", rep(route, route+"    max_age: 3 days\n"), "max_age"},
		{"backoff", rep(route, route+"    backoff_min: 2s\n    backoff_max: 1s\n"), "backoff_max"},
		{"ca_file", rep(route, route+"    ca_file: /nonexistent/ca.pem\n"), "ca_file"},
		{"header name", rep(route, route+"    headers: {\"bad name\": x}\n"), "headers"},
		{"duplicate name", goodConfig + "  - endpoint: github\n    name: \"0\"\n    target: http://127.0.0.1:4000/\n", `routes[1].name: "0" is also routes[0]'s name`},
		{"bad name", rep(route, route+"    name: a/b\n"), `routes[0].name: "a/b"`},
	})
}

func TestLoadConfigFile(t *testing.T) {
	t.Setenv(TokenEnv, "")
	path := filepath.Join(t.TempDir(), "agent.yaml")
	if err := os.WriteFile(path, []byte(goodConfig), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadConfig(path); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadConfig(path + ".missing"); err == nil {
		t.Fatal("missing file accepted")
	}
}

func TestAgentIDKeptInDataDir(t *testing.T) {
	dir := t.TempDir()
	c1 := &Config{DataDir: dir}
	if err := c1.resolveAgentID(); err != nil {
		t.Fatal(err)
	}
	host, _ := os.Hostname()
	if !strings.HasPrefix(c1.AgentID, host+"-") || len(c1.AgentID) <= len(host)+1 {
		t.Fatalf("agent id %q is not hostname-suffix", c1.AgentID)
	}
	c2 := &Config{DataDir: dir}
	if err := c2.resolveAgentID(); err != nil {
		t.Fatal(err)
	}
	if c2.AgentID != c1.AgentID {
		t.Fatalf("agent id changed across loads: %q then %q", c1.AgentID, c2.AgentID)
	}
	c3 := &Config{DataDir: t.TempDir()}
	c3.resolveAgentID()
	if c3.AgentID == c1.AgentID {
		t.Fatal("two data dirs got the same random suffix")
	}
}

func FuzzParseConfig(f *testing.F) {
	f.Add([]byte(goodConfig))
	f.Add([]byte("routes: [{endpoint: a, target: 'http://x', headers: {a: b}}]"))
	f.Fuzz(func(t *testing.T, b []byte) {
		ParseConfig(b) // must not panic
	})
}
