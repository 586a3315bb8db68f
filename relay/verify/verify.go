package verify

import (
	"crypto/hmac"
	"errors"
	"fmt"
	"hash"
	"net/http"
	"net/netip"
	"time"
)

// DefaultTolerance is how far a signed timestamp (stripe, standard_webhooks) may be from now,
// in either direction, when the scheme's tolerance is left out.
const DefaultTolerance = 300 * time.Second

// Scheme names, as the config keys of the verify block; they appear in Failure.Scheme.
const (
	SchemeGitHub           = "github"
	SchemeStripe           = "stripe"
	SchemeStandardWebhooks = "standard_webhooks"
	SchemeHMAC             = "hmac"
	SchemeBasic            = "basic"
	SchemeIPAllow          = "ip_allow"
	SchemeSlack            = "slack"
	SchemeZoom             = "zoom"
	SchemeMTLS             = "mtls"
)

// Failure is why Check refused a request. Reason is short and safe to show the sender: it
// never holds a secret, a password or an expected signature.
type Failure struct {
	Status int    // http.StatusUnauthorized, or http.StatusForbidden for ip_allow and an mtls subject not allowed
	Scheme string // the scheme that failed, one of the Scheme constants
	Reason string
}

func (f *Failure) Error() string { return "verify " + f.Scheme + ": " + f.Reason }

// scheme is one compiled block of the config.
type scheme interface {
	check(r *http.Request, body []byte, now time.Time) *Failure
}

// Verifier checks ingress requests against an endpoint's verify block. It is immutable after
// New and safe for concurrent use.
type Verifier struct {
	headers  []scheme          // need only the headers and the peer: checked before the body is read
	schemes  []scheme          // need the body
	standard *standardWebhooks // nil unless standard_webhooks is configured
}

// New validates and compiles c. A nil or empty Config gives a Verifier that accepts every
// request. Errors name the offending key relative to the verify block ("verify.hmac.algorithm")
// and say what is allowed; all problems are reported at once.
func New(c *Config) (*Verifier, error) { return NewTrusting(c, nil) }

// NewTrusting is New for a relay whose top-level trusted_proxies are trusted: ip_allow takes
// its client address from the forwarding headers those proxies (and its own) send.
func NewTrusting(c *Config, trusted []netip.Prefix) (*Verifier, error) {
	v := &Verifier{}
	if c == nil {
		return v, nil
	}
	var errs []error
	add := func(s scheme, err error) {
		if err != nil {
			errs = append(errs, err)
			return
		}
		v.schemes = append(v.schemes, s)
	}
	addHeader := func(s scheme, err error) {
		if err != nil {
			errs = append(errs, err)
			return
		}
		v.headers = append(v.headers, s)
	}
	// Cheapest first: the address rule needs no hashing, mtls only checks the certificate
	// the TLS handshake already received, and bcrypt is the dearest of the
	// header checks. Header checks run before the body is even read.
	if c.IPAllow != nil {
		addHeader(newIPAllow(c.IPAllow, trusted))
	}
	if c.MTLS != nil {
		addHeader(newMTLS(c.MTLS))
	}
	if c.Basic != nil {
		addHeader(newBasic(c.Basic))
	}
	if c.GitHub != nil {
		add(newGitHub(c.GitHub))
	}
	if c.Stripe != nil {
		add(newStripe(c.Stripe))
	}
	if c.StandardWebhooks != nil {
		s, err := newStandardWebhooks(c.StandardWebhooks)
		if err == nil {
			v.standard = s
		}
		add(s, err)
	}
	if c.HMAC != nil {
		add(newHMAC(c.HMAC))
	}
	if c.Slack != nil {
		add(newV0(slackV0, c.Slack))
	}
	if c.Zoom != nil {
		add(newV0(zoomV0, c.Zoom))
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return v, nil
}

// Check returns nil when every configured scheme accepts the request, else a *Failure for the
// first that refused it: CheckHeaders, then CheckBody. body is the complete raw request body;
// now is the time the timestamp tolerances are measured against. A nil Verifier accepts
// everything.
func (v *Verifier) Check(r *http.Request, body []byte, now time.Time) error {
	if err := v.CheckHeaders(r, now); err != nil {
		return err
	}
	return v.CheckBody(r, body, now)
}

// CheckHeaders runs the schemes that need no body (ip_allow, basic), so that a sender they
// refuse is answered before it can make the relay read and hold a body. A Failure with
// status 429 means the relay is too busy checking passwords: retry later, not refused.
func (v *Verifier) CheckHeaders(r *http.Request, now time.Time) error {
	if v == nil {
		return nil
	}
	for _, s := range v.headers {
		if f := s.check(r, nil, now); f != nil {
			return f
		}
	}
	return nil
}

// CheckBody runs the body-signature schemes; call it after CheckHeaders accepted.
func (v *Verifier) CheckBody(r *http.Request, body []byte, now time.Time) error {
	if v == nil {
		return nil
	}
	for _, s := range v.schemes {
		if f := s.check(r, body, now); f != nil {
			return f
		}
	}
	return nil
}

// NeedsBody reports whether CheckBody has a scheme to run: whether the body must be at hand,
// whole, before the webhook may be stored.
func (v *Verifier) NeedsBody() bool {
	return v != nil && len(v.schemes) > 0
}

// MessageID returns the sender's webhook-id header when standard_webhooks is configured and
// the header is set. Only meaningful after Check accepted the request: the id is covered by the
// signature, so the relay may use it to recognise a replay of a message it already accepted.
func (v *Verifier) MessageID(r *http.Request) (id string, ok bool) {
	if v == nil || v.standard == nil {
		return "", false
	}
	id = r.Header.Get(headerWebhookID)
	return id, id != ""
}

// ReplayWindow is how long the relay must remember an accepted webhook-id to refuse every
// replay of it: a message is accepted while its timestamp is within the tolerance of now in
// either direction, so up to twice the tolerance after it was first accepted. Zero when
// standard_webhooks is not configured.
func (v *Verifier) ReplayWindow() time.Duration {
	if v == nil || v.standard == nil {
		return 0
	}
	return 2 * v.standard.tolerance
}

func unauthorized(scheme, reason string) *Failure {
	return &Failure{Status: http.StatusUnauthorized, Scheme: scheme, Reason: reason}
}

// secretList returns the secrets of a block in order (secret first, then secrets).
func secretList(key string, s Secrets) ([]string, error) {
	var out []string
	if s.Secret != "" {
		out = append(out, s.Secret)
	}
	for i, x := range s.Secrets {
		if x == "" {
			return nil, fmt.Errorf("verify.%s.secrets[%d]: is empty: give the secret or remove the entry", key, i)
		}
		out = append(out, x)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("verify.%s: no secret: set secret, or secrets for several", key)
	}
	return out, nil
}

// rawKeys is secretList with each secret used as the HMAC key bytes unchanged.
func rawKeys(key string, s Secrets) ([][]byte, error) {
	list, err := secretList(key, s)
	if err != nil {
		return nil, err
	}
	keys := make([][]byte, len(list))
	for i, x := range list {
		keys[i] = []byte(x)
	}
	return keys, nil
}

func tolerance(key string, d time.Duration) (time.Duration, error) {
	switch {
	case d < 0:
		return 0, fmt.Errorf("verify.%s.tolerance: %s is negative: use a positive duration such as 300s, or leave it out for %s", key, d, DefaultTolerance)
	case d == 0:
		return DefaultTolerance, nil
	}
	return d, nil
}

// anyMAC reports whether HMAC(key, msg...) equals one of sigs for one of keys. Comparisons are
// constant-time; a signature of the wrong length never matches.
func anyMAC(h func() hash.Hash, keys, sigs [][]byte, msg ...[]byte) bool {
	if len(sigs) == 0 {
		return false
	}
	for _, k := range keys {
		m := hmac.New(h, k)
		for _, p := range msg {
			m.Write(p)
		}
		sum := m.Sum(nil)
		for _, s := range sigs {
			if hmac.Equal(sum, s) {
				return true
			}
		}
	}
	return false
}

// parseUnix parses a decimal Unix time in seconds: digits only, at most 18 of them, so it
// cannot overflow and "+1", "-1" or " 1" are refused.
func parseUnix(s string) (int64, bool) {
	if s == "" || len(s) > 18 {
		return 0, false
	}
	var n int64
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < '0' || c > '9' {
			return 0, false
		}
		n = n*10 + int64(c-'0')
	}
	return n, true
}

// withinTolerance reports whether the Unix time ts is no further than tol from now, in either
// direction.
func withinTolerance(ts int64, now time.Time, tol time.Duration) bool {
	t := time.Unix(ts, 0)
	return !t.Before(now.Add(-tol)) && !t.After(now.Add(tol))
}
