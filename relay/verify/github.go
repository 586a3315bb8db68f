package verify

import (
	"crypto/sha256"
	"encoding/hex"
	"net/http"
	"strings"
	"time"
)

const headerGitHub = "X-Hub-Signature-256"

// gitHub checks X-Hub-Signature-256: "sha256=" + hex(HMAC-SHA256(secret, body)), as GitHub
// signs webhook deliveries.
type gitHub struct {
	keys [][]byte
}

func newGitHub(c *Secrets) (*gitHub, error) {
	keys, err := rawKeys(SchemeGitHub, *c)
	if err != nil {
		return nil, err
	}
	return &gitHub{keys: keys}, nil
}

func (g *gitHub) check(r *http.Request, body []byte, _ time.Time) *Failure {
	v := r.Header.Get(headerGitHub)
	if v == "" {
		return unauthorized(SchemeGitHub, "missing "+headerGitHub+" header")
	}
	h, ok := strings.CutPrefix(strings.TrimSpace(v), "sha256=")
	if !ok {
		return unauthorized(SchemeGitHub, "malformed "+headerGitHub+" header: want sha256=<hex>")
	}
	sig, err := hex.DecodeString(h)
	if err != nil || len(sig) != sha256.Size {
		return unauthorized(SchemeGitHub, "malformed "+headerGitHub+" header: want sha256=<hex>")
	}
	if !anyMAC(sha256.New, g.keys, [][]byte{sig}, body) {
		return unauthorized(SchemeGitHub, "signature mismatch")
	}
	return nil
}
