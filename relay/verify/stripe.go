package verify

import (
	"crypto/sha256"
	"encoding/hex"
	"net/http"
	"strings"
	"time"
)

const headerStripe = "Stripe-Signature"

// stripe checks Stripe-Signature: "t=<unix>,v1=<hex>[,v1=<hex>…][,v0=…]". The signed payload is
// t + "." + body under HMAC-SHA256 keyed with the whole endpoint secret ("whsec_…" included),
// as Stripe does. Any v1 matching any secret passes; v0 and unknown keys are ignored.
type stripe struct {
	keys      [][]byte
	tolerance time.Duration
}

func newStripe(c *Timed) (*stripe, error) {
	keys, err := rawKeys(SchemeStripe, c.Secrets)
	if err != nil {
		return nil, err
	}
	tol, err := tolerance(SchemeStripe, c.Tolerance)
	if err != nil {
		return nil, err
	}
	return &stripe{keys: keys, tolerance: tol}, nil
}

func (s *stripe) check(r *http.Request, body []byte, now time.Time) *Failure {
	v := r.Header.Get(headerStripe)
	if v == "" {
		return unauthorized(SchemeStripe, "missing "+headerStripe+" header")
	}
	var (
		ts   string
		sigs [][]byte
	)
	for item := range strings.SplitSeq(v, ",") {
		k, val, ok := strings.Cut(strings.TrimSpace(item), "=")
		if !ok {
			continue
		}
		switch k {
		case "t":
			ts = val
		case "v1":
			if sig, err := hex.DecodeString(val); err == nil && len(sig) == sha256.Size {
				sigs = append(sigs, sig)
			}
		}
	}
	t, ok := parseUnix(ts)
	if !ok {
		return unauthorized(SchemeStripe, "malformed "+headerStripe+" header: no valid t=<unix time>")
	}
	if len(sigs) == 0 {
		return unauthorized(SchemeStripe, "malformed "+headerStripe+" header: no valid v1 signature")
	}
	if !anyMAC(sha256.New, s.keys, sigs, []byte(ts), []byte("."), body) {
		return unauthorized(SchemeStripe, "signature mismatch")
	}
	if !withinTolerance(t, now, s.tolerance) {
		return unauthorized(SchemeStripe, "timestamp outside tolerance")
	}
	return nil
}
