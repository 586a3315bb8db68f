package admin

// Attempts a hostile web page makes on an admin API through the browser of someone who can
// reach it, and what each now gets. The agent's admin API has no token on loopback, so the
// browser's own checks (Origin, Sec-Fetch-Site, Host) are all that stands between any site the
// user visits and the webhooks.

import (
	"io"
	"net"
	"net/http"
	"strings"
	"testing"

	"github.com/hookrelay/hookrelay/persist"
)

// send makes one request with host as its Host header ("" = the server's address) and the
// given header pairs, adding no token, and returns the status and body.
func send(t *testing.T, e *env, method, path, host string, hdr ...string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(method, e.srv.URL+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	if host != "" {
		req.Host = host
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := e.srv.Client().Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func port(t *testing.T, e *env) string {
	_, p, err := net.SplitHostPort(e.srv.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// Attempt: a page on any site runs fetch("http://127.0.0.1:7071/admin/api/dead/replay",
// {method: "POST", mode: "no-cors"}) against the agent's token-less admin API, to replay every
// dead letter. Now: 403 naming the cross-site origin, the dead letters stay dead, and the
// refusal is counted; curl (no Origin, no Sec-Fetch-Site) still replays.
func TestAttackCrossSiteReplayOfDeadLetters(t *testing.T) {
	e := newEnv(t, Agent, "")
	id := finished(persist.StateDead, "max attempts")(e, "github")

	for _, hdr := range [][]string{
		{"Origin", "https://evil.example", "Sec-Fetch-Site", "cross-site"},
		{"Origin", "https://evil.example"},
		{"Origin", "null"},
		{"Sec-Fetch-Site", "cross-site"},
		{"Origin", "http://localhost:8000", "Sec-Fetch-Site", "same-site"}, // a dev server on another port
	} {
		code, body := send(t, e, "POST", "/admin/api/dead/replay", "", hdr...)
		if code != http.StatusForbidden || !strings.Contains(body, "cross-site") {
			t.Errorf("POST dead/replay with %q: %d %s, want 403 naming the cross-site request", hdr, code, body)
		}
	}
	for _, hdr := range [][]string{{"Origin", "https://evil.example"}, {"Sec-Fetch-Site", "cross-site"}} {
		if code, body := send(t, e, "DELETE", "/admin/api/dead/"+id, "", hdr...); code != http.StatusForbidden {
			t.Errorf("DELETE dead/{id} with %q: %d %s, want 403", hdr, code, body)
		}
	}
	if got := get(t, e.store, id).State; got != persist.StateDead {
		t.Fatalf("after the refused replays the record is %v, want still dead", got)
	}
	if got := e.h.Refused(); got != 7 {
		t.Errorf("Refused() = %d, want 7", got)
	}

	// The UI itself (same origin) and curl (neither header) still work.
	own := "http://127.0.0.1:" + port(t, e)
	if code, body := send(t, e, "POST", "/admin/api/webhooks/"+id+"/replay", "",
		"Origin", own, "Sec-Fetch-Site", "same-origin"); code != http.StatusAccepted {
		t.Errorf("same-origin replay: %d %s, want 202", code, body)
	}
	if code, body := send(t, e, "POST", "/admin/api/dead/replay", ""); code != http.StatusAccepted {
		t.Errorf("curl's replay: %d %s, want 202", code, body)
	}
}

// Attempt: DNS rebinding. evil.example first resolves to the attacker, then to 127.0.0.1, so
// the attacker's page reads http://evil.example:7071/admin/api/webhooks/{id} "same-origin" and
// gets the webhook bodies. Now: a request whose Host is not a loopback name or address gets
// 403 naming the Host; loopback Hosts in every spelling still work.
func TestAttackDNSRebindingReadsWebhookBodies(t *testing.T) {
	e := newEnv(t, Agent, "")
	r := e.add("github", `{"secret":"payload"}`)
	p := port(t, e)

	for _, host := range []string{"evil.example:" + p, "evil.example", "127.0.0.1.evil.example:" + p,
		"localhost.evil.example:" + p, "10.0.0.1:" + p} {
		for _, path := range []string{"/admin/api/webhooks/" + r.ID, "/admin/api/webhooks", "/admin/"} {
			code, body := send(t, e, "GET", path, host)
			if code != http.StatusForbidden || strings.Contains(body, "secret") || !strings.Contains(body, "Host") {
				t.Errorf("GET %s with Host %s: %d %s, want 403 naming the Host", path, host, code, body)
			}
		}
	}
	if got := e.h.Refused(); got != 15 {
		t.Errorf("Refused() = %d, want 15", got)
	}
	for _, host := range []string{"127.0.0.1:" + p, "localhost:" + p, "LOCALHOST", "127.1.2.3:" + p, "[::1]:" + p, "::1"} {
		if code, body := send(t, e, "GET", "/admin/api/webhooks/"+r.ID, host); code != http.StatusOK {
			t.Errorf("GET with Host %s: %d %s, want 200", host, code, body)
		}
	}
}

// Attempt: on the relay (token, UI cookie + CSRF header), a cross-site page that somehow holds
// the session (or a sibling subdomain that can set headers through a CORS mistake) posts a
// replay. Now: the Origin check refuses it before the cookie is even looked at, and the UI's
// own same-origin requests still pass.
func TestAttackCrossSiteWithSessionCookieOnRelay(t *testing.T) {
	e := newEnv(t, Relay, testToken)
	id := finished(persist.StateDead, "max attempts")(e, "github")
	c := login(t, e)

	req := func(origin, site string) int {
		t.Helper()
		hdr := []string{csrfHeader, csrfValue}
		if origin != "" {
			hdr = append(hdr, "Origin", origin)
		}
		if site != "" {
			hdr = append(hdr, "Sec-Fetch-Site", site)
		}
		resp, _ := raw(t, e, "POST", "/admin/api/webhooks/"+id+"/replay", "", c, hdr...)
		return resp.StatusCode
	}
	if got := req("https://evil.example", "cross-site"); got != http.StatusForbidden {
		t.Errorf("cross-site replay with the session cookie: %d, want 403", got)
	}
	if got := get(t, e.store, id).State; got != persist.StateDead {
		t.Fatalf("record is %v after the refused replay, want dead", got)
	}
	if got := req(e.srv.URL, "same-origin"); got != http.StatusAccepted {
		t.Errorf("the UI's same-origin replay: %d, want 202", got)
	}
	// Login CSRF: a cross-site form that posts the attacker's own token is refused too.
	resp, _ := raw(t, e, "POST", "/admin/login", "token="+testToken, nil,
		"Content-Type", "application/x-www-form-urlencoded", "Origin", "https://evil.example")
	if resp.StatusCode != http.StatusForbidden {
		t.Errorf("cross-site login: %d, want 403", resp.StatusCode)
	}
}
