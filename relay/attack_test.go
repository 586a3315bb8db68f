package relay

// Attempts on the relay from hostile agents and web pages, and what each now gets.

import (
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/hookrelay/hookrelay/protocol"
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
