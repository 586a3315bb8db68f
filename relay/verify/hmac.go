package verify

import (
	"crypto/sha1"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"hash"
	"net/http"
	"net/textproto"
	"strings"
	"time"
)

// genericHMAC checks a signature header holding prefix + encode(HMAC-alg(secret, body)).
type genericHMAC struct {
	keys     [][]byte
	header   string // canonical
	newHash  func() hash.Hash
	size     int
	base64   bool
	prefix   string
	malforms string // the Reason for a malformed header, computed once
}

var hmacAlgorithms = map[string]func() hash.Hash{
	"sha1":   sha1.New,
	"sha256": sha256.New,
	"sha512": sha512.New,
}

func newHMAC(c *HMACConfig) (*genericHMAC, error) {
	keys, err := rawKeys(SchemeHMAC, c.Secrets)
	if err != nil {
		return nil, err
	}
	if c.Header == "" {
		return nil, fmt.Errorf("verify.hmac.header: required: the request header holding the signature, e.g. X-Signature")
	}
	if !validHeaderName(c.Header) {
		return nil, fmt.Errorf("verify.hmac.header: %q is not a valid header name: use letters, digits and -", c.Header)
	}
	alg := strings.ToLower(c.Algorithm)
	if alg == "" {
		alg = "sha256"
	}
	h, ok := hmacAlgorithms[alg]
	if !ok {
		return nil, fmt.Errorf("verify.hmac.algorithm: %q is not allowed: use sha1, sha256 or sha512", c.Algorithm)
	}
	var b64 bool
	switch strings.ToLower(c.Encoding) {
	case "", "hex":
	case "base64":
		b64 = true
	default:
		return nil, fmt.Errorf("verify.hmac.encoding: %q is not allowed: use hex or base64", c.Encoding)
	}
	header := textproto.CanonicalMIMEHeaderKey(c.Header)
	enc := "hex"
	if b64 {
		enc = "base64"
	}
	return &genericHMAC{
		keys:     keys,
		header:   header,
		newHash:  h,
		size:     h().Size(),
		base64:   b64,
		prefix:   c.Prefix,
		malforms: fmt.Sprintf("malformed %s header: want %s<%s %s>", header, c.Prefix, alg, enc),
	}, nil
}

func validHeaderName(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0) {
			return false
		}
	}
	return s != ""
}

func (g *genericHMAC) check(r *http.Request, body []byte, _ time.Time) *Failure {
	v := r.Header.Get(g.header)
	if v == "" {
		return unauthorized(SchemeHMAC, "missing "+g.header+" header")
	}
	enc, ok := strings.CutPrefix(strings.TrimSpace(v), g.prefix)
	if !ok {
		return unauthorized(SchemeHMAC, g.malforms)
	}
	sig, ok := g.decode(enc)
	if !ok || len(sig) != g.size {
		return unauthorized(SchemeHMAC, g.malforms)
	}
	if !anyMAC(g.newHash, g.keys, [][]byte{sig}, body) {
		return unauthorized(SchemeHMAC, "signature mismatch")
	}
	return nil
}

// decode accepts hex in either case, or base64 in the standard or URL alphabet, padded or not
// (strictly: unused trailing bits must be zero, so each signature has one encoding).
func (g *genericHMAC) decode(s string) ([]byte, bool) {
	if !g.base64 {
		b, err := hex.DecodeString(s)
		return b, err == nil
	}
	s = strings.TrimRight(s, "=")
	if b, err := base64.RawStdEncoding.Strict().DecodeString(s); err == nil {
		return b, true
	}
	b, err := base64.RawURLEncoding.Strict().DecodeString(s)
	return b, err == nil
}
