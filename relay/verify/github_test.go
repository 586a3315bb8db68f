package verify

import (
	"net/http"
	"testing"
)

func TestGitHub(t *testing.T) {
	body := `{"action":"opened","number":1}`
	cases := []struct {
		name    string
		secrets Secrets
		body    string
		header  string
		set     bool
		reason  string
	}{
		// The example from GitHub's "Validating webhook deliveries" documentation.
		{"github docs example", Secrets{Secret: "It's a Secret to Everybody"}, "Hello, World!",
			"sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17", true, ""},
		{"signed", Secrets{Secret: "s3cr3t"}, body, githubSig("s3cr3t", body), true, ""},
		{"uppercase hex", Secrets{Secret: "s3cr3t"}, body, "sha256=" + upper(githubSig("s3cr3t", body)[7:]), true, ""},
		{"rotation: second secret", Secrets{Secret: "old", Secrets: []string{"new"}}, body, githubSig("new", body), true, ""},
		{"wrong secret", Secrets{Secret: "s3cr3t"}, body, githubSig("guess", body), true, "signature mismatch"},
		{"tampered body", Secrets{Secret: "s3cr3t"}, body + " ", githubSig("s3cr3t", body), true, "signature mismatch"},
		{"missing header", Secrets{Secret: "s3cr3t"}, body, "", false, "missing X-Hub-Signature-256"},
		{"sha1 prefix", Secrets{Secret: "s3cr3t"}, body, "sha1=" + githubSig("s3cr3t", body)[7:], true, "malformed"},
		{"not hex", Secrets{Secret: "s3cr3t"}, body, "sha256=zz", true, "malformed"},
		{"truncated", Secrets{Secret: "s3cr3t"}, body, githubSig("s3cr3t", body)[:40], true, "malformed"},
		{"empty body signed", Secrets{Secret: "s3cr3t"}, "", githubSig("s3cr3t", ""), true, ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			v := mustNew(t, &Config{GitHub: &c.secrets})
			r := request(c.body, nil)
			if c.set {
				r.Header.Set("X-Hub-Signature-256", c.header)
			}
			expect(t, v.Check(r, []byte(c.body), now0), http.StatusUnauthorized, SchemeGitHub, c.reason)
		})
	}
}

func upper(s string) string {
	b := []byte(s)
	for i, c := range b {
		if 'a' <= c && c <= 'z' {
			b[i] = c - 'a' + 'A'
		}
	}
	return string(b)
}
