package relay

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"net/http"
	"strconv"
	"testing"
	"time"

	"github.com/hookrelay/hookrelay/persist"
	"github.com/hookrelay/hookrelay/relay/verify"
)

const githubSecret = "gh-secret"

// swKey is a Standard Webhooks key; swSecret its config form.
var (
	swKey    = []byte("a 32 byte key for standard hooks")
	swSecret = "whsec_" + base64.StdEncoding.EncodeToString(swKey)
)

func githubSig(body string) string {
	m := hmac.New(sha256.New, []byte(githubSecret))
	m.Write([]byte(body))
	return "sha256=" + hex.EncodeToString(m.Sum(nil))
}

// swHeaders signs a Standard Webhooks message sent at ts.
func swHeaders(msgID string, ts time.Time, body string) http.Header {
	t := strconv.FormatInt(ts.Unix(), 10)
	m := hmac.New(sha256.New, swKey)
	m.Write([]byte(msgID + "." + t + "." + body))
	return http.Header{
		"Webhook-Id":        {msgID},
		"Webhook-Timestamp": {t},
		"Webhook-Signature": {"v1," + base64.StdEncoding.EncodeToString(m.Sum(nil))},
	}
}

// stored counts the records of endpoint in the store.
func stored(t *testing.T, s *Server, endpoint string) int {
	t.Helper()
	recs, err := s.Store().List(t.Context(), persist.Filter{Queue: endpoint, Limit: 1000})
	if err != nil {
		t.Fatal(err)
	}
	return len(recs)
}

func withVerify(name string, v *verify.Config) func(*Config) {
	return func(c *Config) {
		c.Endpoints = append(c.Endpoints, Endpoint{Name: name, Tokens: []string{hashOf(tokenA)}, Verify: v})
	}
}

func TestIngressVerifyGitHub(t *testing.T) {
	s := startServer(t, withVerify("gh", &verify.Config{GitHub: &verify.Secrets{Secret: githubSecret}}))
	body := `{"action":"opened"}`
	code, _, out := post(t, s, "POST", "/h/gh", []byte(body), http.Header{"X-Hub-Signature-256": {githubSig(body)}})
	if code != http.StatusAccepted {
		t.Fatalf("signed request: %d %v, want 202", code, out)
	}
	rec, err := s.Store().Get(t.Context(), out["id"])
	if err != nil || string(rec.Body) != body {
		t.Fatalf("signed request not stored as sent: %v %v", rec, err)
	}
	for name, hdr := range map[string]http.Header{
		"no signature":    nil,
		"wrong signature": {"X-Hub-Signature-256": {githubSig("other body")}},
		"malformed":       {"X-Hub-Signature-256": {"sha1=abc"}},
	} {
		code, h, out := post(t, s, "POST", "/h/gh", []byte(body), hdr)
		if code != http.StatusUnauthorized || out["error"] == "" || out["id"] != "" {
			t.Errorf("%s: %d %v, want 401 with a reason", name, code, out)
		}
		if h.Get("WWW-Authenticate") != "" {
			t.Errorf("%s: WWW-Authenticate %q on a signature failure", name, h.Get("WWW-Authenticate"))
		}
	}
	if n := stored(t, s, "gh"); n != 1 {
		t.Errorf("%d records stored, want only the signed one", n)
	}
	if got := counterValue(t, s.metrics.verifyFailed.WithLabelValues("gh", "github", "mismatch")); got != 1 {
		t.Errorf("verify failures {gh, github, mismatch} = %v, want 1", got)
	}
	if got := counterValue(t, s.metrics.ingress.WithLabelValues("gh", "401")); got != 3 {
		t.Errorf("ingress {gh, 401} = %v, want 3", got)
	}
	// Another endpoint without verify is unaffected.
	accept(t, s, "/h/ep", []byte(body))
}

func TestIngressVerifyBasicAndAddress(t *testing.T) {
	sum := sha256.Sum256([]byte("pw"))
	s := startServer(t, func(c *Config) {
		withVerify("basic", &verify.Config{Basic: &verify.BasicConfig{User: "u", PasswordHash: "sha256:" + hex.EncodeToString(sum[:])}})(c)
		withVerify("office", &verify.Config{IPAllow: &verify.IPAllow{CIDRs: []string{"192.0.2.0/24"}}})(c)
	})
	req, _ := http.NewRequest("POST", s.url("/h/basic"), nil)
	req.SetBasicAuth("u", "wrong")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 401 || resp.Header.Get("WWW-Authenticate") != `Basic realm="hookrelay"` {
		t.Errorf("wrong password: %d WWW-Authenticate %q, want 401 with Basic realm", resp.StatusCode, resp.Header.Get("WWW-Authenticate"))
	}
	req, _ = http.NewRequest("POST", s.url("/h/basic"), nil)
	req.SetBasicAuth("u", "pw")
	resp, err = http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 202 {
		t.Errorf("right password: %d, want 202", resp.StatusCode)
	}
	// 127.0.0.1 is outside the allowed network, and X-Forwarded-For from an untrusted peer
	// does not change that.
	code, _, out := post(t, s, "POST", "/h/office", []byte("x"), http.Header{"X-Forwarded-For": {"192.0.2.9"}})
	if code != http.StatusForbidden || out["error"] == "" {
		t.Errorf("address not allowed: %d %v, want 403", code, out)
	}
	if n := stored(t, s, "office"); n != 0 {
		t.Errorf("a refused address stored %d records", n)
	}
	if got := counterValue(t, s.metrics.verifyFailed.WithLabelValues("office", "ip_allow", "address")); got != 1 {
		t.Errorf("verify failures {office, ip_allow, address} = %v, want 1", got)
	}
}

func standardEndpoint(c *Config) {
	withVerify("sw", &verify.Config{StandardWebhooks: &verify.Timed{Secrets: verify.Secrets{Secret: swSecret}}})(c)
}

func TestIngressStandardWebhooksReplay(t *testing.T) {
	s := startServer(t, standardEndpoint)
	body := `{"type":"invoice.paid"}`
	now := time.Now()
	code, _, first := post(t, s, "POST", "/h/sw", []byte(body), swHeaders("msg_1", now, body))
	if code != http.StatusAccepted || first["id"] == "" {
		t.Fatalf("signed message: %d %v, want 202", code, first)
	}
	// The sender retries after a lost answer: same id back, stored once.
	for range 3 {
		code, _, again := post(t, s, "POST", "/h/sw", []byte(body), swHeaders("msg_1", now, body))
		if code != http.StatusAccepted || again["id"] != first["id"] {
			t.Fatalf("replayed message: %d %v, want 202 with the first id %s", code, again, first["id"])
		}
	}
	// An attacker replays it with a fresh timestamp: the signature covers it, so 401.
	h := swHeaders("msg_1", now, body)
	h.Set("Webhook-Timestamp", strconv.FormatInt(now.Unix()+5, 10))
	if code, _, _ := post(t, s, "POST", "/h/sw", []byte(body), h); code != http.StatusUnauthorized {
		t.Errorf("replay with a forged timestamp: %d, want 401", code)
	}
	if code, _, _ := post(t, s, "POST", "/h/sw", []byte(body), swHeaders("msg_old", now.Add(-time.Hour), body)); code != http.StatusUnauthorized {
		t.Errorf("expired message: %d, want 401", code)
	}
	// Another message id is another message.
	code, _, other := post(t, s, "POST", "/h/sw", []byte(body), swHeaders("msg_2", now, body))
	if code != http.StatusAccepted || other["id"] == first["id"] {
		t.Fatalf("another message: %d %v, want 202 with a new id", code, other)
	}
	if n := stored(t, s, "sw"); n != 2 {
		t.Errorf("%d records stored, want 2 (msg_1 once, msg_2)", n)
	}
	if got := counterValue(t, s.metrics.duplicates.WithLabelValues("sw")); got != 3 {
		t.Errorf("duplicates = %v, want 3", got)
	}
}

func TestIngressStandardWebhooksConcurrentDuplicates(t *testing.T) {
	s := startServer(t, standardEndpoint)
	body := `{"n":1}`
	hdr := swHeaders("msg_same", time.Now(), body)
	ids := postCopies(t, []*Server{s}, "/h/sw", body, hdr, 8)
	for i := range ids {
		if ids[i] != ids[0] || ids[i] == "" {
			t.Fatalf("concurrent copies got ids %v, want one id", ids)
		}
	}
	if got := stored(t, s, "sw"); got != 1 {
		t.Errorf("%d records stored from %d concurrent copies, want 1", got, len(ids))
	}
}

// TestIngressStandardWebhooksReplayAfterRestart: the accepted ids are read back from the
// store, so a copy arriving after a restart inside the window is not stored again.
func TestIngressStandardWebhooksReplayAfterRestart(t *testing.T) {
	dir := t.TempDir()
	body := `{"type":"x"}`
	now := time.Now()
	s1 := startServer(t, func(c *Config) { c.DataDir = dir; standardEndpoint(c) })
	id := accept2(t, s1, "/h/sw", body, swHeaders("msg_r", now, body))
	if err := s1.Close(); err != nil {
		t.Fatal(err)
	}
	s2 := startServer(t, func(c *Config) { c.DataDir = dir; standardEndpoint(c) })
	if got := accept2(t, s2, "/h/sw", body, swHeaders("msg_r", now, body)); got != id {
		t.Fatalf("after a restart the copy got %s, want the first id %s", got, id)
	}
	if n := stored(t, s2, "sw"); n != 1 {
		t.Errorf("%d records after restart, want 1", n)
	}
}

// accept2 posts with headers and wants a 202; it returns the id.
func accept2(t *testing.T, s *Server, path, body string, hdr http.Header) string {
	t.Helper()
	code, _, out := post(t, s, "POST", path, []byte(body), hdr)
	if code != http.StatusAccepted || out["id"] == "" {
		t.Fatalf("POST %s: %d %v, want 202", path, code, out)
	}
	return out["id"]
}
