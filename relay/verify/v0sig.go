package verify

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"net/http"
	"strings"
	"time"
)

// v0Format is one provider's spelling of the "v0" timestamped HMAC that Slack introduced and
// Zoom copied: header Signature = "v0=" + hex(HMAC-SHA256(secret, "v0:" + Timestamp + ":" + body)).
type v0Format struct {
	scheme    string
	signature string // header holding "v0=<hex>"
	timestamp string // header holding the Unix time in seconds
}

var (
	slackV0 = v0Format{scheme: SchemeSlack, signature: "X-Slack-Signature", timestamp: "X-Slack-Request-Timestamp"}
	zoomV0  = v0Format{scheme: SchemeZoom, signature: "X-Zm-Signature", timestamp: "X-Zm-Request-Timestamp"}
)

// v0 checks a v0Format signature against any of its secrets (raw bytes, as both providers
// use them), with the timestamp within tolerance of now.
type v0 struct {
	f         v0Format
	keys      [][]byte
	tolerance time.Duration
}

func newV0(f v0Format, c *Timed) (*v0, error) {
	keys, err := rawKeys(f.scheme, c.Secrets)
	if err != nil {
		return nil, err
	}
	tol, err := tolerance(f.scheme, c.Tolerance)
	if err != nil {
		return nil, err
	}
	return &v0{f: f, keys: keys, tolerance: tol}, nil
}

func (s *v0) check(r *http.Request, body []byte, now time.Time) *Failure {
	sigHeader, tsHeader := r.Header.Get(s.f.signature), r.Header.Get(s.f.timestamp)
	switch {
	case sigHeader == "":
		return unauthorized(s.f.scheme, "missing "+s.f.signature+" header")
	case tsHeader == "":
		return unauthorized(s.f.scheme, "missing "+s.f.timestamp+" header")
	}
	ts, ok := parseUnix(tsHeader)
	if !ok {
		return unauthorized(s.f.scheme, "malformed "+s.f.timestamp+" header: want a Unix time in seconds")
	}
	hexSig, ok := strings.CutPrefix(sigHeader, "v0=")
	sig, err := hex.DecodeString(hexSig)
	if err == nil && hexSig != strings.ToLower(hexSig) {
		err = errUpperHex // the providers send lowercase: one spelling per signature
	}
	if !ok || err != nil || len(sig) != sha256.Size {
		return unauthorized(s.f.scheme, "malformed "+s.f.signature+" header: want v0=<64 hex digits>")
	}
	if !anyMAC(sha256.New, s.keys, [][]byte{sig}, []byte("v0:"+tsHeader+":"), body) {
		return unauthorized(s.f.scheme, "signature mismatch")
	}
	if !withinTolerance(ts, now, s.tolerance) {
		return unauthorized(s.f.scheme, "timestamp outside tolerance")
	}
	return nil
}

var errUpperHex = errors.New("uppercase hex")
