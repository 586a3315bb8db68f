package verify

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"
)

// Signers below follow the senders' documentation and share no code with the package.

func hmacSHA256(key []byte, msg string) []byte {
	m := hmac.New(sha256.New, key)
	m.Write([]byte(msg))
	return m.Sum(nil)
}

func githubSig(secret, body string) string {
	return "sha256=" + hex.EncodeToString(hmacSHA256([]byte(secret), body))
}

// stripeSig is "v1=" + hex(HMAC-SHA256(whole secret, t + "." + body)).
func stripeSig(secret string, t int64, body string) string {
	ts := itoa(t)
	return "v1=" + hex.EncodeToString(hmacSHA256([]byte(secret), ts+"."+body))
}

// standardSig is "v1," + base64(HMAC-SHA256(base64decode(secret without whsec_), id.ts.body)).
func standardSig(t *testing.T, secret, id string, ts int64, body string) string {
	t.Helper()
	key, err := base64.StdEncoding.DecodeString(strings.TrimPrefix(secret, "whsec_"))
	if err != nil {
		t.Fatalf("test secret: %v", err)
	}
	return "v1," + base64.StdEncoding.EncodeToString(hmacSHA256(key, id+"."+itoa(ts)+"."+body))
}

func itoa(n int64) string { return strconv.FormatInt(n, 10) }

func mustNew(t *testing.T, c *Config) *Verifier {
	t.Helper()
	v, err := New(c)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return v
}

func request(body string, headers map[string]string) *http.Request {
	r := httptest.NewRequest(http.MethodPost, "/h/ep", strings.NewReader(body))
	for k, v := range headers {
		r.Header.Set(k, v)
	}
	return r
}

// expect checks that err is nil when reason is "", else a *Failure with that status and a
// Reason containing reason.
func expect(t *testing.T, err error, status int, scheme, reason string) {
	t.Helper()
	if reason == "" {
		if err != nil {
			t.Fatalf("Check = %v, want pass", err)
		}
		return
	}
	var f *Failure
	if !errors.As(err, &f) {
		t.Fatalf("Check = %v, want *Failure %q", err, reason)
	}
	if f.Status != status || f.Scheme != scheme || !strings.Contains(f.Reason, reason) {
		t.Fatalf("Check = %+v, want status %d scheme %s reason containing %q", *f, status, scheme, reason)
	}
}

var now0 = time.Unix(1_700_000_000, 0)

func TestNilAndEmptyAcceptEverything(t *testing.T) {
	var nilV *Verifier
	for name, v := range map[string]*Verifier{"nil config": mustNew(t, nil), "empty config": mustNew(t, &Config{}), "nil verifier": nilV} {
		if err := v.Check(request("x", nil), []byte("x"), now0); err != nil {
			t.Errorf("%s: Check = %v, want nil", name, err)
		}
		if id, ok := v.MessageID(request("", map[string]string{"webhook-id": "msg_1"})); ok {
			t.Errorf("%s: MessageID = %q, true without standard_webhooks", name, id)
		}
		if w := v.ReplayWindow(); w != 0 {
			t.Errorf("%s: ReplayWindow = %v, want 0", name, w)
		}
	}
}

func TestCombinedSchemesAllMustPass(t *testing.T) {
	v := mustNew(t, &Config{
		IPAllow: &IPAllow{CIDRs: []string{"192.0.2.0/24"}},
		GitHub:  &Secrets{Secret: "gh"},
	})
	body := `{"zen":"ok"}`
	cases := []struct {
		name, remote, sig string
		status            int
		scheme, reason    string
	}{
		{"both pass", "192.0.2.10:4000", githubSig("gh", body), 0, "", ""},
		{"address refused", "203.0.113.1:4000", githubSig("gh", body), 403, SchemeIPAllow, "not allowed"},
		{"signature refused", "192.0.2.10:4000", githubSig("other", body), 401, SchemeGitHub, "signature mismatch"},
		{"both refused reports the address", "203.0.113.1:4000", "", 403, SchemeIPAllow, "not allowed"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r := request(body, map[string]string{headerGitHub: c.sig})
			r.RemoteAddr = c.remote
			expect(t, v.Check(r, []byte(body), now0), c.status, c.scheme, c.reason)
		})
	}
}

func TestMessageIDAndReplayWindow(t *testing.T) {
	secret := "whsec_" + base64.StdEncoding.EncodeToString([]byte("0123456789abcdef0123456789abcdef"))
	v := mustNew(t, &Config{StandardWebhooks: &Timed{Secrets: Secrets{Secret: secret}}})
	if w := v.ReplayWindow(); w != 2*DefaultTolerance {
		t.Errorf("ReplayWindow = %v, want %v", w, 2*DefaultTolerance)
	}
	if id, ok := v.MessageID(request("", map[string]string{"Webhook-Id": "msg_2Zx"})); !ok || id != "msg_2Zx" {
		t.Errorf("MessageID = %q, %v; want msg_2Zx, true", id, ok)
	}
	if id, ok := v.MessageID(request("", nil)); ok {
		t.Errorf("MessageID without header = %q, true", id)
	}
	v = mustNew(t, &Config{StandardWebhooks: &Timed{Secrets: Secrets{Secret: secret}, Tolerance: 10 * time.Second}})
	if w := v.ReplayWindow(); w != 20*time.Second {
		t.Errorf("ReplayWindow with tolerance 10s = %v, want 20s", w)
	}
}

func TestFailureError(t *testing.T) {
	var err error = &Failure{Status: 401, Scheme: SchemeStripe, Reason: "signature mismatch"}
	if got := err.Error(); got != "verify stripe: signature mismatch" {
		t.Errorf("Error() = %q", got)
	}
}
