package verify

import (
	"crypto/sha256"
	"encoding/base64"
	"fmt"
	"net/http"
	"strings"
	"time"
)

// Standard Webhooks headers (https://www.standardwebhooks.com).
const (
	headerWebhookID        = "webhook-id"
	headerWebhookTimestamp = "webhook-timestamp"
	headerWebhookSignature = "webhook-signature"
)

// standardWebhooks checks the Standard Webhooks symmetric signature: webhook-signature holds
// space-separated "v1,<base64>" entries, each base64(HMAC-SHA256(key, id + "." + timestamp +
// "." + body)), where key is the base64-decoded part of the "whsec_…" secret. Entries of other
// versions (v1a, asymmetric) are ignored.
type standardWebhooks struct {
	keys      [][]byte
	tolerance time.Duration
}

func newStandardWebhooks(c *Timed) (*standardWebhooks, error) {
	list, err := secretList(SchemeStandardWebhooks, c.Secrets)
	if err != nil {
		return nil, err
	}
	keys := make([][]byte, len(list))
	for i, s := range list {
		k, err := base64.StdEncoding.DecodeString(strings.TrimPrefix(s, "whsec_"))
		if err != nil || len(k) == 0 {
			return nil, fmt.Errorf("%s: is not a Standard Webhooks secret: want whsec_ followed by base64", secretKey(SchemeStandardWebhooks, c.Secrets, i))
		}
		keys[i] = k
	}
	tol, err := tolerance(SchemeStandardWebhooks, c.Tolerance)
	if err != nil {
		return nil, err
	}
	return &standardWebhooks{keys: keys, tolerance: tol}, nil
}

// secretKey names the i-th secret of secretList(s) as a config key.
func secretKey(scheme string, s Secrets, i int) string {
	if s.Secret != "" {
		if i == 0 {
			return "verify." + scheme + ".secret"
		}
		i--
	}
	return fmt.Sprintf("verify.%s.secrets[%d]", scheme, i)
}

func (s *standardWebhooks) check(r *http.Request, body []byte, now time.Time) *Failure {
	id := r.Header.Get(headerWebhookID)
	ts := r.Header.Get(headerWebhookTimestamp)
	sigHeader := r.Header.Get(headerWebhookSignature)
	switch {
	case id == "":
		return unauthorized(SchemeStandardWebhooks, "missing webhook-id header")
	case ts == "":
		return unauthorized(SchemeStandardWebhooks, "missing webhook-timestamp header")
	case sigHeader == "":
		return unauthorized(SchemeStandardWebhooks, "missing webhook-signature header")
	}
	t, ok := parseUnix(ts)
	if !ok {
		return unauthorized(SchemeStandardWebhooks, "malformed webhook-timestamp header: want unix seconds")
	}
	var sigs [][]byte
	for entry := range strings.FieldsSeq(sigHeader) {
		ver, b64, ok := strings.Cut(entry, ",")
		if !ok || ver != "v1" {
			continue
		}
		// Strict: one encoding per signature (unused trailing bits must be zero), as a string
		// comparison of the expected signature would have it.
		if sig, err := base64.StdEncoding.Strict().DecodeString(b64); err == nil && len(sig) == sha256.Size {
			sigs = append(sigs, sig)
		}
	}
	if len(sigs) == 0 {
		return unauthorized(SchemeStandardWebhooks, "malformed webhook-signature header: no valid v1,<base64> entry")
	}
	if !anyMAC(sha256.New, s.keys, sigs, []byte(id), []byte("."), []byte(ts), []byte("."), body) {
		return unauthorized(SchemeStandardWebhooks, "signature mismatch")
	}
	if !withinTolerance(t, now, s.tolerance) {
		return unauthorized(SchemeStandardWebhooks, "timestamp outside tolerance")
	}
	return nil
}
