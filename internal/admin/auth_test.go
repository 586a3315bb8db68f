package admin

import (
	"bufio"
	"context"
	"encoding/base64"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/hookrelay/hookrelay/internal/testutil"
	"github.com/hookrelay/hookrelay/persist"
)

const testToken = "s3cret-admin-token"

// raw sends a request with exactly the headers and cookies given (no Bearer added).
func raw(t *testing.T, e *env, method, path, body string, cookie *http.Cookie, hdr ...string) (*http.Response, string) {
	t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, e.srv.URL+path, rd)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	if cookie != nil {
		req.AddCookie(cookie)
	}
	c := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, string(b)
}

func login(t *testing.T, e *env) *http.Cookie {
	t.Helper()
	form := url.Values{"token": {testToken}}.Encode()
	resp, body := raw(t, e, "POST", "/admin/login", form, nil, "Content-Type", "application/x-www-form-urlencoded")
	if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != "/admin/" {
		t.Fatalf("login: %d Location %q; %s", resp.StatusCode, resp.Header.Get("Location"), body)
	}
	for _, c := range resp.Cookies() {
		if c.Name == cookieName {
			return c
		}
	}
	t.Fatalf("login set no %s cookie: %v", cookieName, resp.Header["Set-Cookie"])
	return nil
}

func TestAuthBearer(t *testing.T) {
	e := newEnv(t, Relay, testToken)
	for _, c := range []struct {
		name string
		hdr  []string
		want int
	}{
		{"no token", nil, 401},
		{"wrong bearer", []string{"Authorization", "Bearer nope"}, 401},
		{"other scheme", []string{"Authorization", "Basic " + testToken}, 401},
		{"right bearer", []string{"Authorization", "Bearer " + testToken}, 200},
	} {
		for _, path := range []string{"/admin/api/webhooks", "/admin/api/status", "/admin/api/agents", "/admin/app.js"} {
			resp, body := raw(t, e, "GET", path, "", nil, c.hdr...)
			if resp.StatusCode != c.want {
				t.Errorf("%s: GET %s = %d, want %d; %s", c.name, path, resp.StatusCode, c.want, body)
			}
		}
	}
	if n := e.h.FailedLogins(); n != 8 {
		t.Errorf("FailedLogins = %d, want 8 (2 wrong credentials × 4 paths)", n)
	}
	resp, body := raw(t, e, "GET", "/admin/api/webhooks", "", nil)
	wantError(t, "no token", resp.StatusCode, []byte(body), 401, "token")

	// mutating with the Bearer token needs no CSRF header
	r := e.add("github", `{}`)
	if err := e.store.Complete(r.ID, persist.StateDelivered, nil, ""); err != nil {
		t.Fatal(err)
	}
	resp, body = raw(t, e, "POST", "/admin/api/webhooks/"+r.ID+"/replay", "", nil, "Authorization", "Bearer "+testToken)
	if resp.StatusCode != 202 {
		t.Errorf("replay with bearer: %d %s", resp.StatusCode, body)
	}

	// the page without a session is the login form
	resp, body = raw(t, e, "GET", "/admin/", "", nil)
	if resp.StatusCode != 200 || !strings.Contains(body, `id="login-token"`) || strings.Contains(body, `id="webhooks"`) {
		t.Errorf("GET /admin/ unauthenticated: %d, want the login page; %s", resp.StatusCode, body)
	}
}

func TestAuthSession(t *testing.T) {
	e := newEnv(t, Relay, testToken)

	// a wrong token: 401 and the login page again, counted
	form := url.Values{"token": {"wrong"}}.Encode()
	resp, body := raw(t, e, "POST", "/admin/login", form, nil, "Content-Type", "application/x-www-form-urlencoded")
	if resp.StatusCode != 401 || !strings.Contains(body, `id="login-token"`) || !strings.Contains(body, "Wrong token") {
		t.Errorf("wrong login: %d %s", resp.StatusCode, body)
	}
	if len(resp.Cookies()) != 0 {
		t.Errorf("wrong login set a cookie: %v", resp.Cookies())
	}
	if e.h.FailedLogins() != 1 {
		t.Errorf("FailedLogins = %d, want 1", e.h.FailedLogins())
	}

	c := login(t, e)
	if !c.HttpOnly || c.SameSite != http.SameSiteStrictMode || c.Path != "/admin" || c.Secure || len(c.Value) < 20 {
		t.Errorf("cookie %+v: want HttpOnly, SameSite=Strict, Path=/admin, a long random value", c)
	}
	if c2 := login(t, e); c2.Value == c.Value {
		t.Error("two logins got the same session id")
	}

	resp, body = raw(t, e, "GET", "/admin/api/webhooks", "", c)
	if resp.StatusCode != 200 {
		t.Errorf("API with cookie: %d %s", resp.StatusCode, body)
	}
	resp, body = raw(t, e, "GET", "/admin/", "", c)
	if resp.StatusCode != 200 || !strings.Contains(body, `id="webhooks"`) {
		t.Errorf("page with cookie: %d, want the UI; %s", resp.StatusCode, body)
	}
	if csp := resp.Header.Get("Content-Security-Policy"); !strings.Contains(csp, "script-src 'self'") {
		t.Errorf("CSP %q", csp)
	}
	checkSSEWithCookie(t, e, c)

	// mutating with the cookie needs X-Requested-With
	r := e.add("github", `{}`)
	if err := e.store.Complete(r.ID, persist.StateDelivered, nil, ""); err != nil {
		t.Fatal(err)
	}
	path := "/admin/api/webhooks/" + r.ID + "/replay"
	resp, body = raw(t, e, "POST", path, "", c)
	wantError(t, "replay with cookie, no X-Requested-With", resp.StatusCode, []byte(body), 403, "X-Requested-With")
	if got := get(t, e.store, r.ID); got.State != persist.StateDelivered {
		t.Fatalf("refused replay still changed the record: %v", got.State)
	}
	resp, body = raw(t, e, "DELETE", "/admin/api/dead/"+r.ID, "", c, "X-Requested-With", "XMLHttpRequest")
	wantError(t, "delete with a foreign X-Requested-With", resp.StatusCode, []byte(body), 403)
	resp, body = raw(t, e, "POST", path, "", c, "X-Requested-With", "hookrelay")
	if resp.StatusCode != 202 {
		t.Errorf("replay with cookie and header: %d %s", resp.StatusCode, body)
	}

	// logout ends the session
	resp, _ = raw(t, e, "POST", "/admin/logout", "", c, "X-Requested-With", "hookrelay")
	if resp.StatusCode != 204 {
		t.Errorf("logout: %d", resp.StatusCode)
	}
	resp, _ = raw(t, e, "GET", "/admin/api/webhooks", "", c)
	if resp.StatusCode != 401 {
		t.Errorf("API after logout: %d, want 401", resp.StatusCode)
	}
	resp, body = raw(t, e, "GET", "/admin/", "", c)
	if !strings.Contains(body, `id="login-token"`) {
		t.Errorf("page after logout: %d, want the login page", resp.StatusCode)
	}
}

func TestAuthJSONLoginAndExpiry(t *testing.T) {
	e := newEnv(t, Relay, testToken, func(c *Config) { c.SessionTTL = time.Second })
	resp, body := raw(t, e, "POST", "/admin/login", `{"token": "`+testToken+`"}`, nil, "Content-Type", "application/json")
	if resp.StatusCode != 204 || len(resp.Cookies()) != 1 {
		t.Fatalf("JSON login: %d %v %s", resp.StatusCode, resp.Cookies(), body)
	}
	c := resp.Cookies()[0]
	resp, _ = raw(t, e, "GET", "/admin/api/status", "", c)
	if resp.StatusCode != 200 {
		t.Fatalf("cookie from JSON login: %d", resp.StatusCode)
	}
	// the server forgets the session when it expires, whatever the browser keeps
	if !e.h.sessions.valid(c.Value, time.Now()) || e.h.sessions.valid(c.Value, time.Now().Add(2*time.Second)) {
		t.Error("session should be valid now and gone after its TTL")
	}
	testutil.CheckFor(t, 3*time.Second, 50*time.Millisecond, func() error {
		if resp, _ := raw(t, e, "GET", "/admin/api/status", "", c); resp.StatusCode != 401 {
			return fmt.Errorf("expired session: %d, want 401", resp.StatusCode)
		}
		return nil
	})
	resp, body = raw(t, e, "POST", "/admin/login", `{"token": "nope"}`, nil, "Content-Type", "application/json")
	wantError(t, "JSON login, wrong token", resp.StatusCode, []byte(body), 401)

	// no token configured: no login at all, and the API is open
	a := newEnv(t, Agent, "")
	resp, _ = raw(t, a, "POST", "/admin/login", "token=x", nil, "Content-Type", "application/x-www-form-urlencoded")
	if resp.StatusCode != 404 {
		t.Errorf("login without a token configured: %d, want 404", resp.StatusCode)
	}
	resp, body = raw(t, a, "GET", "/admin/", "", nil)
	if resp.StatusCode != 200 || !strings.Contains(body, `id="webhooks"`) {
		t.Errorf("agent page: %d", resp.StatusCode)
	}
}

// checkSSEWithCookie opens the event stream with the session cookie and reads its first event.
func checkSSEWithCookie(t *testing.T, e *env, c *http.Cookie) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "GET", e.srv.URL+"/admin/api/events", nil)
	req.AddCookie(c)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("events with cookie: %v", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "text/event-stream" {
		t.Fatalf("events with cookie: %d %s", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		if sc.Text() == "event: stats" {
			return
		}
	}
	t.Fatalf("no stats event on the stream: %v", sc.Err())
}

// TestAuthSessionAcrossRelays: a UI login made on one relay of a cluster (same admin_token)
// works on the others; a relay with another token, a tampered cookie or a forged one with
// a far expiry are refused; logout revokes the cookie where it is sent.
func TestAuthSessionAcrossRelays(t *testing.T) {
	a := newEnv(t, Relay, testToken)
	b := newEnv(t, Relay, testToken)
	other := newEnv(t, Relay, testToken+"-other")
	resp, body := raw(t, a, "POST", "/admin/login", `{"token": "`+testToken+`"}`, nil, "Content-Type", "application/json")
	if resp.StatusCode != 204 || len(resp.Cookies()) != 1 {
		t.Fatalf("login: %d %s", resp.StatusCode, body)
	}
	c := resp.Cookies()[0]
	if resp, _ := raw(t, b, "GET", "/admin/api/status", "", c); resp.StatusCode != 200 {
		t.Errorf("login on relay a, request on relay b: %d, want 200", resp.StatusCode)
	}
	if resp, _ := raw(t, other, "GET", "/admin/api/status", "", c); resp.StatusCode != 401 {
		t.Errorf("relay with another token: %d, want 401", resp.StatusCode)
	}
	payload, mac, _ := strings.Cut(strings.TrimPrefix(c.Value, "v1."), ".")
	raw8, _ := base64.RawURLEncoding.DecodeString(payload)
	raw8[0] ^= 0x40 // an expiry far in the future, same signature
	forged := &http.Cookie{Name: c.Name, Value: "v1." + base64.RawURLEncoding.EncodeToString(raw8) + "." + mac}
	for name, v := range map[string]*http.Cookie{
		"forged expiry": forged,
		"bad mac":       {Name: c.Name, Value: c.Value[:len(c.Value)-2] + "AA"},
		"garbage":       {Name: c.Name, Value: "v1.x.y"},
		"old format":    {Name: c.Name, Value: "ABCDEFGHIJKLMNOPQRSTUVWXYZ"},
	} {
		if resp, _ := raw(t, b, "GET", "/admin/api/status", "", v); resp.StatusCode != 401 {
			t.Errorf("%s cookie: %d, want 401", name, resp.StatusCode)
		}
	}
	if resp, _ := raw(t, b, "POST", "/admin/logout", "", c, csrfHeader, csrfValue); resp.StatusCode != 204 {
		t.Fatalf("logout: %d", resp.StatusCode)
	}
	if resp, _ := raw(t, b, "GET", "/admin/api/status", "", c); resp.StatusCode != 401 {
		t.Errorf("after logout on b: %d, want 401", resp.StatusCode)
	}
}
