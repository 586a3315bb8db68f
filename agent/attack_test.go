package agent

// Attempts on the agent from hostile senders, relays and web pages, and what each now gets.

import (
	"crypto/sha256"
	"encoding/hex"
	"net/http"
	"strings"
	"testing"

	"github.com/hookrelay/hookrelay/internal/testutil"
	"github.com/hookrelay/hookrelay/persist"
)

// agentReq sends one request to the agent's admin address with the given header pairs and
// returns the status and body.
func agentReq(t *testing.T, a *Agent, method, path string, hdr ...string) (int, string) {
	t.Helper()
	return testutil.Request(t, method, "http://"+a.AdminAddr()+path, hdr...)
}

func sha256Hex(s string) string {
	sum := sha256.Sum256([]byte(s))
	return "sha256:" + hex.EncodeToString(sum[:])
}

// Attempt: an operator sets admin_addr: 0.0.0.0:7071 so the UI is reachable from the LAN,
// and with no token anyone on the LAN reads and replays webhooks. Now: a config error naming
// admin_token; with admin_token set it is accepted.
func TestAttackNonLoopbackAdminWithoutToken(t *testing.T) {
	t.Setenv(TokenEnv, "")
	for _, addr := range []string{"0.0.0.0:7071", ":7071", "192.168.1.5:7071", "[::]:7071", "edge.lan:7071"} {
		_, err := ParseConfig([]byte(goodConfig + "admin_addr: \"" + addr + "\"\n"))
		if err == nil || !strings.Contains(err.Error(), "admin_token") {
			t.Errorf("admin_addr %s without admin_token: %v, want an error naming admin_token", addr, err)
		}
		y := goodConfig + "admin_addr: \"" + addr + "\"\nadmin_token: \"" + sha256Hex("t") + "\"\n"
		if _, err := ParseConfig([]byte(y)); err != nil {
			t.Errorf("admin_addr %s with admin_token: %v", addr, err)
		}
	}
	for _, addr := range []string{"127.0.0.1:7071", "localhost:7071", "[::1]:7071", "127.0.0.2:0", "off"} {
		if _, err := ParseConfig([]byte(goodConfig + "admin_addr: \"" + addr + "\"\n")); err != nil {
			t.Errorf("loopback admin_addr %s without admin_token: %v", addr, err)
		}
	}
	if _, err := ParseConfig([]byte(goodConfig + "admin_token: plain\n")); err == nil || !strings.Contains(err.Error(), "admin_token") {
		t.Errorf("admin_token not a hash: %v, want an error naming admin_token", err)
	}
}

// Attempt: anyone who reaches an agent's admin_addr (admin_token set) reads webhooks or
// metrics without the token. Now: 401 on /admin/ and /metrics; the token opens both, and
// /healthz stays open for probes.
func TestAttackAgentAdminWithoutTheToken(t *testing.T) {
	a := newTestAgentWith(t, "ws://127.0.0.1:1", func(c *Config) { c.AdminToken = sha256Hex("adm") },
		Route{Endpoint: "github", Target: "http://127.0.0.1:1/"})
	runAgent(t, a)
	for _, path := range []string{"/admin/api/webhooks", "/metrics"} {
		for _, tok := range []string{"", "wrong", "sha256:" + strings.Repeat("0", 64)} {
			var hdr []string
			if tok != "" {
				hdr = []string{"Authorization", "Bearer " + tok}
			}
			if code, body := agentReq(t, a, "GET", path, hdr...); code != http.StatusUnauthorized {
				t.Errorf("GET %s with token %q: %d %s, want 401", path, tok, code, body)
			}
		}
		if code, body := agentReq(t, a, "GET", path, "Authorization", "Bearer adm"); code != http.StatusOK {
			t.Errorf("GET %s with the admin token: %d %s, want 200", path, code, body)
		}
	}
	if code, _ := agentReq(t, a, "GET", "/healthz"); code != http.StatusOK {
		t.Errorf("/healthz: %d, want 200 without a token", code)
	}
}

// Attempt: a web page POSTs to the agent's loopback admin API (no token) to replay every dead
// letter. Now: 403, and hookagent_admin_refused_total counts it.
func TestAttackCrossSitePageOnAgentAdmin(t *testing.T) {
	a := newTestAgent(t, "ws://127.0.0.1:1", Route{Endpoint: "github", Target: "http://127.0.0.1:1/"})
	runAgent(t, a)
	code, body := agentReq(t, a, "POST", "/admin/api/dead/replay", "Origin", "https://evil.example", "Sec-Fetch-Site", "cross-site")
	if code != http.StatusForbidden {
		t.Fatalf("cross-site replay: %d %s, want 403", code, body)
	}
	_, metrics := agentReq(t, a, "GET", "/metrics")
	if !strings.Contains(metrics, "hookagent_admin_refused_total 1") {
		t.Errorf("/metrics lacks hookagent_admin_refused_total 1")
	}
}

// Attempt: any sender sets X-Forwarded-For / Forwarded to a trusted-looking address, and the
// target, behind the agent, believes it (the route's own headers never replaced the sender's).
// Now: a route's replace_headers makes its headers replace the sender's of those names, and
// drops the sender's where the route sets no value; other headers stay byte-exact.
func TestAttackForgedForwardedForReachesTarget(t *testing.T) {
	tg := newTarget(t, nil)
	r := fastRoute(tg.URL)
	r.Headers = map[string]string{"X-Forwarded-For": "203.0.113.7", "Authorization": "Bearer route"}
	r.ReplaceHeaders = []string{"x-forwarded-for", "Forwarded"}
	a := newTestAgent(t, "ws://127.0.0.1:1", r)
	runDeliverers(t, a)
	appendRecord(t, a, &persist.Record{ID: "xff", Queue: "ep", Headers: []persist.Header{
		{Name: "X-Forwarded-For", Value: "10.0.0.1"}, {Name: "x-forwarded-for", Value: "10.0.0.2"},
		{Name: "Forwarded", Value: "for=10.0.0.1"}, {Name: "Authorization", Value: "Bearer sender"},
		{Name: "X-Other", Value: "kept"},
	}})
	waitState(t, a, "xff", persist.StateDelivered)
	got := tg.requests("xff")
	if len(got) != 1 {
		t.Fatalf("%d deliveries", len(got))
	}
	h := got[0].Header
	if v := h["X-Forwarded-For"]; len(v) != 1 || v[0] != "203.0.113.7" {
		t.Errorf("X-Forwarded-For at the target: %q, want only the route's 203.0.113.7", v)
	}
	if v, ok := h["Forwarded"]; ok {
		t.Errorf("Forwarded at the target: %q, want the sender's dropped", v)
	}
	// Not listed: the sender's value still wins, as before.
	if v := h.Get("Authorization"); v != "Bearer sender" {
		t.Errorf("Authorization: %q, want the sender's (not in replace_headers)", v)
	}
	if v := h.Get("X-Other"); v != "kept" {
		t.Errorf("X-Other: %q", v)
	}
}

func TestReplaceHeadersConfig(t *testing.T) {
	t.Setenv(TokenEnv, "")
	route := "    target: http://127.0.0.1:3000/webhooks\n"
	for _, bad := range []string{"[\"bad name\"]", "[Hookrelay-Id]", "[Host]", "[Content-Length]", "[\"\"]"} {
		y := strings.Replace(goodConfig, route, route+"    replace_headers: "+bad+"\n", 1)
		if _, err := ParseConfig([]byte(y)); err == nil || !strings.Contains(err.Error(), "replace_headers") {
			t.Errorf("replace_headers: %s: %v, want an error naming replace_headers", bad, err)
		}
	}
	y := strings.Replace(goodConfig, route, route+"    headers: {X-Forwarded-For: 1.2.3.4}\n    replace_headers: [X-Forwarded-For, Forwarded]\n", 1)
	if _, err := ParseConfig([]byte(y)); err != nil {
		t.Fatal(err)
	}
}
