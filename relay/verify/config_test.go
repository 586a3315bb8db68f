package verify

import (
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"
)

func TestNewValidation(t *testing.T) {
	bc, err := bcrypt.GenerateFromPassword([]byte("pw"), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	costly := "$2a$13$" + string(bc[7:])
	shaHash := "sha256:" + strings.Repeat("ab", 32)
	wsec := "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
	cases := []struct {
		name string
		c    Config
		want []string // substrings of the error; none means valid
	}{
		{"github ok", Config{GitHub: &Secrets{Secret: "s"}}, nil},
		{"github secrets only", Config{GitHub: &Secrets{Secrets: []string{"a", "b"}}}, nil},
		{"github no secret", Config{GitHub: &Secrets{}}, []string{"verify.github: no secret"}},
		{"github empty rotation entry", Config{GitHub: &Secrets{Secret: "a", Secrets: []string{"b", ""}}}, []string{"verify.github.secrets[1]: is empty"}},
		{"stripe no secret", Config{Stripe: &Timed{}}, []string{"verify.stripe: no secret"}},
		{"stripe negative tolerance", Config{Stripe: &Timed{Secrets: Secrets{Secret: "whsec_x"}, Tolerance: -time.Second}}, []string{"verify.stripe.tolerance: -1s is negative"}},
		{"standard ok", Config{StandardWebhooks: &Timed{Secrets: Secrets{Secret: wsec}}}, nil},
		{"standard ok without prefix", Config{StandardWebhooks: &Timed{Secrets: Secrets{Secret: "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"}}}, nil},
		{"standard no secret", Config{StandardWebhooks: &Timed{}}, []string{"verify.standard_webhooks: no secret"}},
		{"standard bad base64", Config{StandardWebhooks: &Timed{Secrets: Secrets{Secret: "whsec_not base64!"}}}, []string{"verify.standard_webhooks.secret: is not a Standard Webhooks secret"}},
		{"standard bad rotated secret", Config{StandardWebhooks: &Timed{Secrets: Secrets{Secret: wsec, Secrets: []string{wsec, "whsec_"}}}}, []string{"verify.standard_webhooks.secrets[1]: is not a Standard Webhooks secret"}},
		{"hmac ok defaults", Config{HMAC: &HMACConfig{Secrets: Secrets{Secret: "s"}, Header: "X-Signature"}}, nil},
		{"hmac ok sha512 base64", Config{HMAC: &HMACConfig{Secrets: Secrets{Secret: "s"}, Header: "X-Sig", Algorithm: "SHA512", Encoding: "base64", Prefix: "sha512="}}, nil},
		{"hmac md5", Config{HMAC: &HMACConfig{Secrets: Secrets{Secret: "s"}, Header: "X-Sig", Algorithm: "md5"}}, []string{`verify.hmac.algorithm: "md5" is not allowed: use sha1, sha256 or sha512`}},
		{"hmac bad encoding", Config{HMAC: &HMACConfig{Secrets: Secrets{Secret: "s"}, Header: "X-Sig", Encoding: "base32"}}, []string{`verify.hmac.encoding: "base32" is not allowed: use hex or base64`}},
		{"hmac no header", Config{HMAC: &HMACConfig{Secrets: Secrets{Secret: "s"}}}, []string{"verify.hmac.header: required"}},
		{"hmac bad header", Config{HMAC: &HMACConfig{Secrets: Secrets{Secret: "s"}, Header: "X Sig:"}}, []string{`verify.hmac.header: "X Sig:" is not a valid header name`}},
		{"hmac no secret", Config{HMAC: &HMACConfig{Header: "X-Sig"}}, []string{"verify.hmac: no secret"}},
		{"basic sha256 ok", Config{Basic: &BasicConfig{User: "u", PasswordHash: shaHash}}, nil},
		{"basic bcrypt ok", Config{Basic: &BasicConfig{User: "u", PasswordHash: string(bc)}}, nil},
		{"basic bcrypt 2y ok", Config{Basic: &BasicConfig{User: "u", PasswordHash: "$2y$" + string(bc[4:])}}, nil},
		{"basic no user", Config{Basic: &BasicConfig{PasswordHash: shaHash}}, []string{"verify.basic.user: required"}},
		{"basic no hash", Config{Basic: &BasicConfig{User: "u"}}, []string{"verify.basic.password_hash: required"}},
		{"basic plain password", Config{Basic: &BasicConfig{User: "u", PasswordHash: "hunter2"}}, []string{`verify.basic.password_hash: must be "sha256:<64 hex digits>" or a bcrypt hash`}},
		{"basic short sha", Config{Basic: &BasicConfig{User: "u", PasswordHash: "sha256:abcd"}}, []string{"verify.basic.password_hash: must be"}},
		{"basic truncated bcrypt", Config{Basic: &BasicConfig{User: "u", PasswordHash: string(bc[:40])}}, []string{"verify.basic.password_hash: not a valid bcrypt hash"}},
		{"basic bcrypt 2x", Config{Basic: &BasicConfig{User: "u", PasswordHash: "$2x$" + string(bc[4:])}}, []string{"verify.basic.password_hash: must be"}},
		{"basic bcrypt too costly", Config{Basic: &BasicConfig{User: "u", PasswordHash: costly}}, []string{"bcrypt cost 13 is too high"}},
		{"ip ok", Config{IPAllow: &IPAllow{CIDRs: []string{"192.0.2.0/24", "2001:db8::/32", "198.51.100.7", "::ffff:203.0.113.0/120"}, TrustedProxies: []string{"10.0.0.0/8"}}}, nil},
		{"ip no cidrs", Config{IPAllow: &IPAllow{}}, []string{"verify.ip_allow.cidrs: required"}},
		{"ip bad cidr", Config{IPAllow: &IPAllow{CIDRs: []string{"192.0.2.0/24", "192.0.2.0/33"}}}, []string{`verify.ip_allow.cidrs[1]: "192.0.2.0/33" is not a CIDR`}},
		{"ip bad proxy", Config{IPAllow: &IPAllow{CIDRs: []string{"192.0.2.0/24"}, TrustedProxies: []string{"proxy.local"}}}, []string{`verify.ip_allow.trusted_proxies[0]: "proxy.local" is not a CIDR`}},
		{"ip mixed mapped prefix", Config{IPAllow: &IPAllow{CIDRs: []string{"::ffff:0.0.0.0/80"}}}, []string{"verify.ip_allow.cidrs[0]"}},
		{"several problems reported together", Config{GitHub: &Secrets{}, HMAC: &HMACConfig{Secrets: Secrets{Secret: "s"}, Header: "X", Algorithm: "md5"}},
			[]string{"verify.github: no secret", "verify.hmac.algorithm"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			v, err := New(&c.c)
			if len(c.want) == 0 {
				if err != nil || v == nil {
					t.Fatalf("New = %v, %v; want a verifier", v, err)
				}
				return
			}
			if err == nil {
				t.Fatalf("New succeeded, want error containing %q", c.want)
			}
			if v != nil {
				t.Errorf("New returned a verifier with error %v", err)
			}
			for _, w := range c.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not contain %q", err, w)
				}
			}
		})
	}
}

func TestNewErrorsDoNotEchoSecrets(t *testing.T) {
	_, err := New(&Config{
		StandardWebhooks: &Timed{Secrets: Secrets{Secret: "whsec_topsecret!!"}},
		Basic:            &BasicConfig{User: "u", PasswordHash: "sha256:topsecretpasswordhash"},
	})
	if err == nil {
		t.Fatal("New succeeded")
	}
	if strings.Contains(err.Error(), "topsecret") {
		t.Errorf("error echoes a secret: %v", err)
	}
}
