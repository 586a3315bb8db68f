package relay

import (
	"bufio"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/hookrelay/hookrelay/internal/testutil"
	"github.com/hookrelay/hookrelay/protocol"
)

const adminToken = "hr_admin_token"

// get requests url with an optional bearer token and returns the status and body.
func get(t *testing.T, method, url, token string) (int, string) {
	t.Helper()
	if token == "" {
		return testutil.Request(t, method, url)
	}
	return testutil.Request(t, method, url, "Authorization", "Bearer "+token)
}

func withAdminToken(c *Config) { c.AdminToken = hashOf(adminToken) }

func TestAdminAndMetricsNeedToken(t *testing.T) {
	s := startServer(t, withAdminToken)
	accept(t, s, "/h/ep", []byte("x"))
	post(t, s, "POST", "/h/nope/a", nil, nil)
	for _, path := range []string{"/admin/api/webhooks", "/admin/api/agents", "/metrics"} {
		for _, tok := range []string{"", "wrong", tokenA, hashOf(adminToken)} {
			if code, _ := get(t, "GET", s.url(path), tok); code != http.StatusUnauthorized {
				t.Errorf("GET %s with token %q: %d, want 401", path, tok, code)
			}
		}
		if code, _ := get(t, "GET", s.url(path), adminToken); code != 200 {
			t.Errorf("GET %s with the admin token: %d, want 200", path, code)
		}
	}
	if code, _ := get(t, "POST", s.url("/admin/api/dead/replay"), "wrong"); code != http.StatusUnauthorized {
		t.Errorf("POST dead/replay with a wrong token: %d, want 401", code)
	}
	_, body := get(t, "GET", s.url("/metrics"), adminToken)
	for _, want := range []string{
		`hookrelay_ingress_requests_total{code="202",endpoint="ep"} 1`,
		`hookrelay_ingress_requests_total{code="404",endpoint="_unknown"} 1`,
		`hookrelay_queue_pending{endpoint="ep"} 1`,
		`hookrelay_queue_oldest_age_seconds{endpoint="ep"}`,
		`hookrelay_agents_connected{transport="websocket"} 0`,
		`hookrelay_store_commit_batch_records_count`,
		`hookrelay_store_commit_seconds_bucket`,
		`hookrelay_admin_failed_logins_total`,
		`hookrelay_go_goroutines`,
		`hookrelay_process_resident_memory_bytes`,
		`hookrelay_node_info{node_id="` + s.cfg.NodeID + `",store="badger"} 1`,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
	for _, line := range strings.Split(body, "\n") {
		if line != "" && !strings.HasPrefix(line, "#") && !strings.HasPrefix(line, "hookrelay_") {
			t.Errorf("metric without the hookrelay_ prefix: %s", line)
		}
	}
	if strings.Contains(body, "nope") {
		t.Error("an unknown endpoint's name became a label")
	}
	// 3 paths × 3 wrong tokens, plus the POST; the empty one is no login attempt.
	if got := s.adminFailures(); got != 10 {
		t.Errorf("failed logins %d, want 10", got)
	}
}

func TestAdminDisabledWithoutToken(t *testing.T) {
	s := startServer(t, nil)
	for _, path := range []string{"/admin/", "/admin/api/webhooks", "/metrics"} {
		if code, _ := get(t, "GET", s.url(path), "anything"); code != http.StatusNotFound {
			t.Errorf("GET %s without admin_token: %d, want 404", path, code)
		}
	}
}

func TestAdminAddr(t *testing.T) {
	// Loopback admin_addr, no token: /metrics only, and only there.
	s := startServer(t, func(c *Config) { c.AdminAddr = "127.0.0.1:0" })
	admin := "http://" + s.AdminAddr()
	if code, body := get(t, "GET", admin+"/metrics", ""); code != 200 || !strings.Contains(body, "hookrelay_") {
		t.Errorf("metrics on loopback admin_addr without token: %d", code)
	}
	if code, _ := get(t, "GET", admin+"/admin/api/webhooks", ""); code != http.StatusNotFound {
		t.Errorf("admin API without admin_token: %d, want 404", code)
	}
	if code, _ := get(t, "GET", s.url("/metrics"), ""); code != http.StatusNotFound {
		t.Errorf("metrics on the public addr while admin_addr is set: %d, want 404", code)
	}

	// With a token: both there, token required; nothing on the public addr.
	s = startServer(t, func(c *Config) { c.AdminAddr = "127.0.0.1:0"; withAdminToken(c) })
	admin = "http://" + s.AdminAddr()
	for _, path := range []string{"/admin/api/webhooks", "/metrics"} {
		if code, _ := get(t, "GET", admin+path, ""); code != http.StatusUnauthorized {
			t.Errorf("GET %s on admin_addr without a token: %d, want 401", path, code)
		}
		if code, _ := get(t, "GET", admin+path, adminToken); code != 200 {
			t.Errorf("GET %s on admin_addr with the token: %d, want 200", path, code)
		}
		if code, _ := get(t, "GET", s.url(path), adminToken); code != http.StatusNotFound {
			t.Errorf("GET %s on the public addr: %d, want 404", path, code)
		}
	}
}

func TestAdminReplayReachesAgent(t *testing.T) {
	s := startServer(t, withAdminToken)
	a := dial(t, s, tokenA, "edge-1")
	id := accept(t, s, "/h/ep", []byte("again"))
	if w := a.webhook(); w.ID != id || w.Replay {
		t.Fatalf("first send %s replay=%v", w.ID, w.Replay)
	}
	a.send(&protocol.Ack{IDs: []string{id}})
	a.send(&protocol.Report{ID: id, Outcome: protocol.OutcomeDelivered, Status: 200, Attempts: 1})
	testutil.WaitFor(t, 10*time.Second, "delivered", func() bool { return state(t, s, id).String() == "delivered" })

	code, body := get(t, "POST", s.url("/admin/api/webhooks/"+id+"/replay"), adminToken)
	if code != http.StatusAccepted {
		t.Fatalf("replay: %d %s", code, body)
	}
	if counterValue(t, s.metrics.acked.WithLabelValues("ep", DefaultGroup)) != 1 || counterValue(t, s.metrics.reports.WithLabelValues("delivered", DefaultGroup)) != 1 {
		t.Error("ack and report not counted")
	}
	w := a.webhook()
	if w.ID != id || !w.Replay || string(w.Body) != "again" {
		t.Fatalf("after replay got %s replay=%v %q, want %s with the replay mark", w.ID, w.Replay, w.Body, id)
	}
	// The agents list shows the session in the admin API's shape.
	_, body = get(t, "GET", s.url("/admin/api/agents"), adminToken)
	var out struct {
		Agents []map[string]any `json:"agents"`
	}
	if err := json.Unmarshal([]byte(body), &out); err != nil || len(out.Agents) != 1 ||
		out.Agents[0]["agent_id"] != "edge-1" || out.Agents[0]["transport"] != "websocket" || out.Agents[0]["in_flight"] != 1.0 {
		t.Errorf("agents %s", body)
	}
}

// TestShutdownEndsAdminEvents: an open UI event stream does not hold the shutdown for
// shutdown_timeout.
func TestShutdownEndsAdminEvents(t *testing.T) {
	s, stop := runServer(t, &Config{Addr: "127.0.0.1:0", DataDir: t.TempDir(), AdminToken: hashOf(adminToken),
		ShutdownTimeout: time.Minute, Endpoints: []Endpoint{{Name: "ep"}}}, testLogger(t))
	req, _ := http.NewRequest("GET", s.url("/admin/api/events"), nil)
	req.Header.Set("Authorization", "Bearer "+adminToken)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if _, err := bufio.NewReader(resp.Body).ReadString('\n'); err != nil {
		t.Fatalf("event stream: %v", err)
	}
	start := time.Now()
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	if took := time.Since(start); took > 10*time.Second {
		t.Errorf("shutdown took %v with an event stream open", took)
	}
}
