package relay

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/hookrelay/hookrelay/relay/verify"
)

// Every test here runs a relay with no agent connected: handshakes are answered by the relay
// itself, and never stored.

// send makes a request to s and returns the status, headers and raw body of the answer.
func send(t *testing.T, s *Server, method, path string, body string, hdr map[string]string) (int, http.Header, string) {
	t.Helper()
	req, err := http.NewRequest(method, s.url(path), strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header, string(raw)
}

// handshakesCounted reads hookrelay_handshakes_total for one endpoint, provider and result.
func handshakesCounted(t *testing.T, s *Server, endpoint, provider, result string) float64 {
	t.Helper()
	return counterValue(t, s.metrics.handshakes.WithLabelValues(endpoint, provider, result))
}

// wantEcho checks a 200 text/plain answer of exactly want, with nosniff.
func wantEcho(t *testing.T, what string, code int, h http.Header, body, want string) {
	t.Helper()
	if code != http.StatusOK || body != want || !strings.HasPrefix(h.Get("Content-Type"), "text/plain") ||
		h.Get("X-Content-Type-Options") != "nosniff" {
		t.Fatalf("%s: %d %q (Content-Type %q, X-Content-Type-Options %q), want 200 text/plain nosniff %q",
			what, code, body, h.Get("Content-Type"), h.Get("X-Content-Type-Options"), want)
	}
}

// wantRefused checks an answer's status and that its JSON error says reason.
func wantRefused(t *testing.T, what string, code int, body string, wantCode int, reason string) {
	t.Helper()
	var e map[string]string
	json.Unmarshal([]byte(body), &e)
	if code != wantCode || !strings.Contains(e["error"], reason) {
		t.Fatalf("%s: %d %q, want %d with an error saying %q", what, code, body, wantCode, reason)
	}
}

func withHandshake(name string, h *HandshakeConfig, v *verify.Config) func(*Config) {
	return func(c *Config) {
		c.Endpoints = append(c.Endpoints, Endpoint{Name: name, Tokens: []string{hashOf(tokenA)}, Handshake: h, Verify: v})
	}
}

func TestHandshakeSlack(t *testing.T) {
	const secret = "8f742231b10e8888abcd99yyyzzz85a5" // Slack's documented example secret
	s := startServer(t, withHandshake("slack", &HandshakeConfig{Slack: &EmptyHandshake{}},
		&verify.Config{Slack: &verify.Timed{Secrets: verify.Secrets{Secret: secret}}}))
	// The url_verification body of Slack's Events API docs.
	challenge := "3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P"
	body := `{"token":"Jhj5dZrVaK7ZwHHjRyZWjbDl","challenge":"` + challenge + `","type":"url_verification"}`
	signed := func(secret, body string) map[string]string {
		ts := strconv.FormatInt(time.Now().Unix(), 10)
		return map[string]string{"Content-Type": "application/json", "X-Slack-Request-Timestamp": ts,
			"X-Slack-Signature": hmacV0(secret, ts, body)}
	}
	code, h, got := send(t, s, "POST", "/h/slack", body, signed(secret, body))
	wantEcho(t, "signed url_verification", code, h, got, challenge)

	code, _, got = send(t, s, "POST", "/h/slack", body, signed("another secret", body))
	wantRefused(t, "url_verification signed with another secret", code, got, http.StatusUnauthorized, "slack: signature mismatch")
	code, _, got = send(t, s, "POST", "/h/slack", body, nil)
	wantRefused(t, "unsigned url_verification", code, got, http.StatusUnauthorized, "slack: missing X-Slack-Signature")
	noChallenge := `{"type":"url_verification","challenge":17}`
	code, _, got = send(t, s, "POST", "/h/slack", noChallenge, signed(secret, noChallenge))
	wantRefused(t, "challenge not a string", code, got, http.StatusBadRequest, "challenge must be given once")
	long := `{"type":"url_verification","challenge":"` + strings.Repeat("c", 1025) + `"}`
	code, _, got = send(t, s, "POST", "/h/slack", long, signed(secret, long))
	wantRefused(t, "challenge over 1024 bytes", code, got, http.StatusBadRequest, "1 to 1024 bytes")

	if n := stored(t, s, "slack"); n != 0 {
		t.Fatalf("%d handshakes stored, want none", n)
	}
	// An event takes the usual way: stored, 202.
	event := `{"type":"event_callback","event":{"type":"app_mention"}}`
	code, _, got = send(t, s, "POST", "/h/slack", event, signed(secret, event))
	if code != http.StatusAccepted || stored(t, s, "slack") != 1 {
		t.Fatalf("signed event: %d %q, %d stored; want 202 and stored", code, got, stored(t, s, "slack"))
	}
	for result, want := range map[string]float64{handshakeAnswered: 1, handshakeUnauthorized: 2, handshakeBadRequest: 2} {
		if n := handshakesCounted(t, s, "slack", providerSlack, result); n != want {
			t.Errorf("hookrelay_handshakes_total{slack,%s} = %v, want %v", result, n, want)
		}
	}
	if n := counterValue(t, s.metrics.verifyFailed.WithLabelValues("slack", verify.SchemeSlack, "mismatch")); n != 1 {
		t.Errorf("verify failures (slack, mismatch) = %v, want 1", n)
	}
}

func hmacV0(secret, ts, body string) string {
	m := hmac.New(sha256.New, []byte(secret))
	m.Write([]byte("v0:" + ts + ":" + body))
	return "v0=" + hex.EncodeToString(m.Sum(nil))
}

// metricsText is what /metrics would serve.
func metricsText(t *testing.T, s *Server) string {
	rec := httptest.NewRecorder()
	s.metrics.handler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	return rec.Body.String()
}

func TestHandshakeMeta(t *testing.T) {
	// Meta's docs use hub.challenge=1158201444 and verify token "meatyhamhock".
	s := startServer(t, withHandshake("meta", &HandshakeConfig{Meta: &MetaHandshake{VerifyToken: "meatyhamhock"}}, nil))
	q := func(token string) string {
		v := url.Values{"hub.mode": {"subscribe"}, "hub.challenge": {"1158201444"}}
		if token != "" {
			v.Set("hub.verify_token", token)
		}
		return "/h/meta?" + v.Encode()
	}
	code, h, got := send(t, s, "GET", q("meatyhamhock"), "", nil)
	wantEcho(t, "right verify token", code, h, got, "1158201444")
	code, _, got = send(t, s, "GET", q("meatyhamhocks"), "", nil)
	wantRefused(t, "wrong verify token", code, got, http.StatusForbidden, "hub.verify_token does not match")
	code, _, got = send(t, s, "GET", q(""), "", nil)
	wantRefused(t, "no verify token", code, got, http.StatusForbidden, "hub.verify_token does not match")
	code, _, got = send(t, s, "GET", "/h/meta?hub.mode=subscribe&hub.verify_token=meatyhamhock&hub.challenge=", "", nil)
	wantRefused(t, "empty challenge", code, got, http.StatusBadRequest, "hub.challenge must be given once")
	code, _, got = send(t, s, "GET", "/h/meta?hub.mode=subscribe&hub.verify_token=meatyhamhock&hub.challenge=1&hub.challenge=2", "", nil)
	wantRefused(t, "two challenges", code, got, http.StatusBadRequest, "hub.challenge must be given once")
	if n := stored(t, s, "meta"); n != 0 {
		t.Fatalf("%d handshakes stored, want none", n)
	}
	// Not the handshake: another mode, or a POST with the same query, is a webhook.
	for _, c := range []struct{ method, path, body string }{
		{"GET", "/h/meta?hub.mode=unsubscribe&hub.verify_token=meatyhamhock&hub.challenge=1", ""},
		{"POST", q("meatyhamhock"), `{"object":"page","entry":[]}`},
	} {
		if code, _, got := send(t, s, c.method, c.path, c.body, nil); code != http.StatusAccepted {
			t.Fatalf("%s %s: %d %q, want 202 (stored as a webhook)", c.method, c.path, code, got)
		}
	}
	for result, want := range map[string]float64{handshakeAnswered: 1, handshakeForbidden: 2, handshakeBadRequest: 2} {
		if n := handshakesCounted(t, s, "meta", providerMeta, result); n != want {
			t.Errorf("hookrelay_handshakes_total{meta,%s} = %v, want %v", result, n, want)
		}
	}
}

func TestHandshakeGraph(t *testing.T) {
	s := startServer(t, withHandshake("graph", &HandshakeConfig{Graph: &EmptyHandshake{}}, nil))
	// Graph's tokens hold spaces and colons; it sends them URL-encoded and wants them decoded.
	token := "Validation: Testing client application reachability for subscription Request-Id: 7a4c64b7-8e5a-4c3f-9a40-5cbd0a6b2c01"
	path := "/h/graph?validationToken=" + url.QueryEscape(token)
	code, h, got := send(t, s, "POST", path, "", map[string]string{"Content-Type": "text/plain; charset=utf-8"})
	wantEcho(t, "POST validation", code, h, got, token)
	code, h, got = send(t, s, "GET", path, "", nil)
	wantEcho(t, "GET validation", code, h, got, token)
	code, _, got = send(t, s, "POST", "/h/graph?validationToken="+strings.Repeat("v", 1025), "", nil)
	wantRefused(t, "token over 1024 bytes", code, got, http.StatusBadRequest, "validationToken must be given once, 1 to 1024 bytes")
	if n := stored(t, s, "graph"); n != 0 {
		t.Fatalf("%d handshakes stored, want none", n)
	}
	// A notification with a body is a webhook, whatever its query.
	if code, _, got := send(t, s, "POST", path, `{"value":[]}`, nil); code != http.StatusAccepted {
		t.Fatalf("notification: %d %q, want 202", code, got)
	}
	if n := handshakesCounted(t, s, "graph", providerGraph, handshakeAnswered); n != 2 {
		t.Errorf("answered graph handshakes = %v, want 2", n)
	}
}

func TestHandshakeZoom(t *testing.T) {
	// secretValueTest → 70c1…40ff is the pair Elastic's Zoom CRC test publishes; the body
	// is the example of Zoom's "Validate your webhook endpoint".
	const secret = "secretValueTest"
	s := startServer(t, withHandshake("zoom", &HandshakeConfig{Zoom: &ZoomHandshake{Secret: secret}},
		&verify.Config{Zoom: &verify.Timed{Secrets: verify.Secrets{Secret: secret}}}))
	validation := func(plain string) string {
		return `{"payload":{"plainToken":"` + plain + `"},"event_ts":1654503849680,"event":"endpoint.url_validation"}`
	}
	signed := func(secret, body string) map[string]string {
		ts := strconv.FormatInt(time.Now().Unix(), 10)
		return map[string]string{"Content-Type": "application/json", "x-zm-request-timestamp": ts, "x-zm-signature": hmacV0(secret, ts, body)}
	}
	body := validation("qgg8vlvZRS6UYooatFL8Aw")
	code, h, got := send(t, s, "POST", "/h/zoom", body, signed(secret, body))
	var ans map[string]string
	json.Unmarshal([]byte(got), &ans)
	if code != http.StatusOK || h.Get("Content-Type") != "application/json" || len(ans) != 2 ||
		ans["plainToken"] != "qgg8vlvZRS6UYooatFL8Aw" ||
		ans["encryptedToken"] != "70c1f2e2e6ca2d39297490d1f9142c7d701415ea8e6151f6562a08fa657a40ff" {
		t.Fatalf("signed validation: %d %s %q, want 200 JSON with Zoom's encryptedToken", code, h.Get("Content-Type"), got)
	}
	code, _, got = send(t, s, "POST", "/h/zoom", body, signed("wrong", body))
	wantRefused(t, "validation signed with another secret", code, got, http.StatusUnauthorized, "zoom: signature mismatch")
	for _, bad := range []string{`a b`, `{\"x\":1}`, strings.Repeat("t", 257), ``, `é`} {
		b := validation(bad)
		code, _, got = send(t, s, "POST", "/h/zoom", b, signed(secret, b))
		wantRefused(t, "plainToken "+bad, code, got, http.StatusBadRequest, "must be given once and match [A-Za-z0-9._~+/=-]{1,256}")
	}
	noPayload := `{"event":"endpoint.url_validation","payload":"x"}`
	code, _, got = send(t, s, "POST", "/h/zoom", noPayload, signed(secret, noPayload))
	wantRefused(t, "payload not an object", code, got, http.StatusBadRequest, "payload.plainToken")
	if n := stored(t, s, "zoom"); n != 0 {
		t.Fatalf("%d handshakes stored, want none", n)
	}
	event := `{"event":"meeting.started","payload":{"plainToken":"x"}}`
	if code, _, got := send(t, s, "POST", "/h/zoom", event, signed(secret, event)); code != http.StatusAccepted {
		t.Fatalf("signed event: %d %q, want 202", code, got)
	}
	for result, want := range map[string]float64{handshakeAnswered: 1, handshakeUnauthorized: 1, handshakeBadRequest: 6} {
		if n := handshakesCounted(t, s, "zoom", providerZoom, result); n != want {
			t.Errorf("hookrelay_handshakes_total{zoom,%s} = %v, want %v", result, n, want)
		}
	}
}

func TestHandshakeTwitter(t *testing.T) {
	// The consumer secret and crc_token of X's own CRC sample code; the response token was
	// computed apart with: printf %s TOKEN | openssl dgst -sha256 -hmac SECRET -binary | base64
	const secret = "z3ZX4v7mAAUGykl3EcmkqbartmuW8VFOOzCloLx9Q45P0hLrFu"
	const token = "9b4507b3-9040-4669-9ca3-6b94edb50553"
	const want = "sha256=Cytd4Sq+NvEcV3MMrXxWJGJx5A+y/lXzzU2Maartkx8="
	s := startServer(t, func(c *Config) {
		withHandshake("x", &HandshakeConfig{Twitter: &TwitterHandshake{ConsumerSecret: secret}}, nil)(c)
		withHandshake("x-other", &HandshakeConfig{Twitter: &TwitterHandshake{ConsumerSecret: secret + "x"}}, nil)(c)
	})
	answer := func(endpoint, query string) (int, string) {
		code, h, got := send(t, s, "GET", "/h/"+endpoint+"?"+query, "", nil)
		var ans map[string]string
		json.Unmarshal([]byte(got), &ans)
		if code == http.StatusOK && h.Get("Content-Type") != "application/json" {
			t.Fatalf("CRC answer is %s, want application/json", h.Get("Content-Type"))
		}
		return code, ans["response_token"]
	}
	if code, got := answer("x", "crc_token="+token+"&nonce=MTc2OTUxODI5MjkxNA"); code != http.StatusOK || got != want {
		t.Fatalf("CRC: %d %q, want 200 %q", code, got, want)
	}
	if code, got := answer("x-other", "crc_token="+token); code != http.StatusOK || got == want || !strings.HasPrefix(got, "sha256=") {
		t.Fatalf("CRC with another consumer secret: %d %q, want 200 with another token than %q", code, got, want)
	}
	for _, q := range []string{"crc_token=a%20b", "crc_token=%7B%7D", "crc_token=", "crc_token=a&crc_token=b", "crc_token=" + strings.Repeat("t", 257)} {
		code, _, got := send(t, s, "GET", "/h/x?"+q, "", nil)
		wantRefused(t, q, code, got, http.StatusBadRequest, "crc_token must be given once and match")
	}
	if n := stored(t, s, "x"); n != 0 {
		t.Fatalf("%d handshakes stored, want none", n)
	}
	if code, _, got := send(t, s, "POST", "/h/x?crc_token="+token, `{"for_user_id":"1"}`, nil); code != http.StatusAccepted {
		t.Fatalf("an event POST: %d %q, want 202", code, got)
	}
	if a, b := handshakesCounted(t, s, "x", providerTwitter, handshakeAnswered), handshakesCounted(t, s, "x", providerTwitter, handshakeBadRequest); a != 1 || b != 5 {
		t.Errorf("twitter handshakes answered %v, bad %v; want 1 and 5", a, b)
	}
}

func TestHandshakeDropbox(t *testing.T) {
	s := startServer(t, withHandshake("dropbox", &HandshakeConfig{Dropbox: &EmptyHandshake{}}, nil))
	code, h, got := send(t, s, "GET", "/h/dropbox?challenge=8ZJdyOOIxFl9Cwq7Zm1bRkRJsA2Fnz6lIuQmXnTdkKk", "", nil)
	wantEcho(t, "challenge", code, h, got, "8ZJdyOOIxFl9Cwq7Zm1bRkRJsA2Fnz6lIuQmXnTdkKk")
	// Echoed as text, never as something a browser would render.
	code, h, got = send(t, s, "GET", "/h/dropbox?challenge="+url.QueryEscape("<script>alert(1)</script>"), "", nil)
	wantEcho(t, "markup challenge", code, h, got, "<script>alert(1)</script>")
	code, _, got = send(t, s, "GET", "/h/dropbox?challenge=", "", nil)
	wantRefused(t, "empty challenge", code, got, http.StatusBadRequest, "challenge must be given once")
	if n := stored(t, s, "dropbox"); n != 0 {
		t.Fatalf("%d handshakes stored, want none", n)
	}
	// Without a challenge, a GET is a webhook like any other.
	if code, _, got := send(t, s, "GET", "/h/dropbox?other=1", "", nil); code != http.StatusAccepted {
		t.Fatalf("GET without challenge: %d %q, want 202", code, got)
	}
}

// Address and transport rules apply to handshakes too; an endpoint without a responder
// stores what would have been a handshake.
func TestHandshakeAddressRulesAndOff(t *testing.T) {
	s := startServer(t, func(c *Config) {
		withHandshake("walled", &HandshakeConfig{Dropbox: &EmptyHandshake{}, Graph: &EmptyHandshake{}},
			&verify.Config{IPAllow: &verify.IPAllow{CIDRs: []string{"192.0.2.0/24"}}})(c)
		withHandshake("locked", &HandshakeConfig{Dropbox: &EmptyHandshake{}},
			&verify.Config{Basic: &verify.BasicConfig{User: "u", PasswordHash: hashOf("pw")}})(c)
	})
	code, _, got := send(t, s, "GET", "/h/walled?challenge=abc", "", nil)
	wantRefused(t, "dropbox from an address not allowed", code, got, http.StatusForbidden, "ip_allow")
	code, _, got = send(t, s, "POST", "/h/walled?validationToken=abc", "", nil)
	wantRefused(t, "graph from an address not allowed", code, got, http.StatusForbidden, "ip_allow")
	code, _, got = send(t, s, "GET", "/h/locked?challenge=abc", "", nil)
	wantRefused(t, "dropbox without basic auth", code, got, http.StatusUnauthorized, "basic")
	req, _ := http.NewRequest("GET", s.url("/h/locked?challenge=abc"), nil)
	req.SetBasicAuth("u", "pw")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	raw, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	wantEcho(t, "dropbox with basic auth", resp.StatusCode, resp.Header, string(raw), "abc")
	// "ep" has no handshake block: the same request is a webhook.
	if code, _, got := send(t, s, "GET", "/h/ep?challenge=abc", "", nil); code != http.StatusAccepted {
		t.Fatalf("challenge on an endpoint without handshakes: %d %q, want 202", code, got)
	}
	if !bytes.Contains([]byte(metricsText(t, s)), []byte(`hookrelay_handshakes_total{endpoint="locked",provider="dropbox",result="answered"} 1`)) {
		t.Errorf("/metrics lacks the answered handshake")
	}
}
