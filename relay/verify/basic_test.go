package verify

import (
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"net/http"
	"testing"

	"golang.org/x/crypto/bcrypt"
)

func TestBasic(t *testing.T) {
	sum := sha256.Sum256([]byte("correct horse"))
	shaHash := "sha256:" + hex.EncodeToString(sum[:])
	bc, err := bcrypt.GenerateFromPassword([]byte("correct horse"), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	b64 := func(s string) string { return "Basic " + base64.StdEncoding.EncodeToString([]byte(s)) }
	for _, hash := range []string{shaHash, string(bc), "$2b$" + string(bc[4:]), "$2y$" + string(bc[4:])} {
		v := mustNew(t, &Config{Basic: &BasicConfig{User: "stripe", PasswordHash: hash}})
		cases := []struct {
			name, auth, reason string
		}{
			{"right user and password", b64("stripe:correct horse"), ""},
			{"scheme is case-insensitive", "basic " + base64.StdEncoding.EncodeToString([]byte("stripe:correct horse")), ""},
			{"wrong password", b64("stripe:correct horsE"), "wrong user or password"},
			{"wrong user", b64("Stripe:correct horse"), "wrong user or password"},
			{"user prefix", b64("strip:correct horse"), "wrong user or password"},
			{"empty password", b64("stripe:"), "wrong user or password"},
			{"missing", "", "missing Authorization header"},
			{"bearer", "Bearer abc", "malformed Authorization header"},
			{"not base64", "Basic !!!", "malformed Authorization header"},
			{"no colon", b64("stripe"), "malformed Authorization header"},
		}
		for _, c := range cases {
			t.Run(hash[:4]+" "+c.name, func(t *testing.T) {
				r := request("", nil)
				if c.auth != "" {
					r.Header.Set("Authorization", c.auth)
				}
				expect(t, v.Check(r, nil, now0), http.StatusUnauthorized, SchemeBasic, c.reason)
			})
		}
	}
}
