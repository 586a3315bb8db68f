package verify

import (
	"crypto/hmac"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/base64"
	"encoding/hex"
	"hash"
	"net/http"
	"strings"
	"testing"
)

func macOf(h func() hash.Hash, key, body string) []byte {
	m := hmac.New(h, []byte(key))
	m.Write([]byte(body))
	return m.Sum(nil)
}

func TestHMAC(t *testing.T) {
	body := "order=42&status=paid"
	sha256hex := hex.EncodeToString(macOf(sha256.New, "k", body))
	cases := []struct {
		name   string
		c      HMACConfig
		header string // header name the sender uses
		value  string
		body   string
		reason string
	}{
		{"defaults: sha256 hex", HMACConfig{Header: "X-Signature"}, "X-Signature", sha256hex, body, ""},
		{"header name is case-insensitive", HMACConfig{Header: "x-signature"}, "X-SIGNATURE", sha256hex, body, ""},
		{"sha1 hex", HMACConfig{Header: "X-Sig", Algorithm: "sha1"}, "X-Sig", hex.EncodeToString(macOf(sha1.New, "k", body)), body, ""},
		{"sha512 base64 with prefix", HMACConfig{Header: "X-Sig", Algorithm: "sha512", Encoding: "base64", Prefix: "sha512="}, "X-Sig",
			"sha512=" + base64.StdEncoding.EncodeToString(macOf(sha512.New, "k", body)), body, ""},
		{"base64 url alphabet unpadded", HMACConfig{Header: "X-Sig", Encoding: "base64"}, "X-Sig",
			base64.RawURLEncoding.EncodeToString(macOf(sha256.New, "k", body)), body, ""},
		{"prefix with hex", HMACConfig{Header: "X-Sig", Prefix: "sha256="}, "X-Sig", "sha256=" + sha256hex, body, ""},
		{"prefix missing", HMACConfig{Header: "X-Sig", Prefix: "sha256="}, "X-Sig", sha256hex, body, "malformed X-Sig header: want sha256=<sha256 hex>"},
		{"rotation: second secret", HMACConfig{Secrets: Secrets{Secret: "old", Secrets: []string{"k"}}, Header: "X-Sig"}, "X-Sig", sha256hex, body, ""},
		{"wrong secret", HMACConfig{Secrets: Secrets{Secret: "nope"}, Header: "X-Sig"}, "X-Sig", sha256hex, body, "signature mismatch"},
		{"tampered body", HMACConfig{Header: "X-Sig"}, "X-Sig", sha256hex, body + "&admin=1", "signature mismatch"},
		{"wrong algorithm", HMACConfig{Header: "X-Sig", Algorithm: "sha512"}, "X-Sig", sha256hex, body, "malformed"},
		{"missing header", HMACConfig{Header: "X-Sig"}, "X-Other", sha256hex, body, "missing X-Sig header"},
		{"hex expected, base64 sent", HMACConfig{Header: "X-Sig"}, "X-Sig", base64.StdEncoding.EncodeToString(macOf(sha256.New, "k", body)), body, "malformed"},
		{"base64 expected, garbage sent", HMACConfig{Header: "X-Sig", Encoding: "base64"}, "X-Sig", "***", body, "malformed"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if c.c.Secret == "" && len(c.c.Secrets.Secrets) == 0 {
				c.c.Secret = "k"
			}
			v := mustNew(t, &Config{HMAC: &c.c})
			r := request(c.body, map[string]string{c.header: c.value})
			err := v.Check(r, []byte(c.body), now0)
			expect(t, err, http.StatusUnauthorized, SchemeHMAC, c.reason)
			if err != nil && strings.Contains(err.Error(), sha256hex) {
				t.Errorf("failure echoes the expected signature: %v", err)
			}
		})
	}
}
