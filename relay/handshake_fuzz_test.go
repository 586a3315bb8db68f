package relay

import (
	"encoding/json"
	"regexp"
	"testing"
)

var signedTokenRE = regexp.MustCompile(`^[A-Za-z0-9._~+/=-]{1,256}$`)

// FuzzHandshakeBody feeds untrusted bodies to the slack and zoom matchers: no panic; a match
// only for the exact event; and the charset rule agrees with the contract's regexp.
func FuzzHandshakeBody(f *testing.F) {
	f.Add([]byte(`{"type":"url_verification","challenge":"abc"}`))
	f.Add([]byte(`{"payload":{"plainToken":"qgg8vlvZRS6UYooatFL8Aw"},"event_ts":1654503849680,"event":"endpoint.url_validation"}`))
	f.Add([]byte(`{"event":"endpoint.url_validation","payload":"x"}`))
	f.Add([]byte(`{"type":"url_verification","challenge":"a\u0000b"}`))
	h := newHandshakes(&HandshakeConfig{Slack: &EmptyHandshake{}, Zoom: &ZoomHandshake{Secret: "s"}})
	f.Fuzz(func(t *testing.T, body []byte) {
		provider, _, token, ok := matchBodyHandshake(h, body)
		if !ok {
			return
		}
		var doc map[string]any
		if err := json.Unmarshal(body, &doc); err != nil {
			t.Fatalf("matched %s on a body that is not a JSON object: %q", provider, body)
		}
		if provider == providerSlack && doc["type"] != "url_verification" || provider == providerZoom && doc["event"] != "endpoint.url_validation" {
			t.Fatalf("matched %s on %q", provider, body)
		}
		for _, tok := range token {
			if validSignedToken(tok) != signedTokenRE.MatchString(tok) {
				t.Fatalf("validSignedToken(%q) = %v, the contract's regexp says otherwise", tok, validSignedToken(tok))
			}
		}
	})
}

func FuzzSignedToken(f *testing.F) {
	for _, s := range []string{"", "a", "qgg8vlvZRS6UYooatFL8Aw", "a b", "é", "a\n"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if validSignedToken(s) != signedTokenRE.MatchString(s) {
			t.Fatalf("validSignedToken(%q) = %v, the contract's regexp says otherwise", s, validSignedToken(s))
		}
	})
}
