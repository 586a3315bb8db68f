package relay

import (
	"fmt"
	"path/filepath"
)

// HandshakeConfig is an endpoint's `handshake:` block: the URL handshakes the relay answers
// itself, with no agent connected, never storing them (handshake.go). Each present key turns
// one provider's responder on; absent keys leave those requests to take the usual way.
type HandshakeConfig struct {
	// Slack answers Events API url_verification: POST JSON {"type":"url_verification",
	// "challenge":C} → 200 text/plain C. Body-signature schemes (verify: slack) apply to it.
	Slack *EmptyHandshake `yaml:"slack"`
	// Meta answers the Graph API webhook subscription check: GET ?hub.mode=subscribe
	// &hub.verify_token=T&hub.challenge=C → 200 C, or 403 when T is not VerifyToken.
	Meta *MetaHandshake `yaml:"meta"`
	// Graph answers Microsoft Graph's validation: ?validationToken=V (any method, no body)
	// → 200 text/plain V.
	Graph *EmptyHandshake `yaml:"graph"`
	// Zoom answers endpoint.url_validation with HMAC-SHA256(Secret, plainToken) in hex.
	// Requires verify: zoom, so that only a request Zoom signed gets the token signed.
	Zoom *ZoomHandshake `yaml:"zoom"`
	// Twitter answers X's CRC: GET ?crc_token=T → {"response_token": "sha256=" +
	// base64(HMAC-SHA256(ConsumerSecret, T))}.
	Twitter *TwitterHandshake `yaml:"twitter"`
	// Dropbox answers the verification request: GET ?challenge=C → 200 text/plain C.
	Dropbox *EmptyHandshake `yaml:"dropbox"`
}

// EmptyHandshake is a responder with no settings: write it as `{}`.
type EmptyHandshake struct{}

// MetaHandshake holds the verify token typed into Meta's webhook settings.
type MetaHandshake struct {
	VerifyToken string `yaml:"verify_token"`
}

// ZoomHandshake holds the app's Secret Token (the one verify: zoom uses too).
type ZoomHandshake struct {
	Secret string `yaml:"secret"`
}

// TwitterHandshake holds the X app's consumer secret (API key secret).
type TwitterHandshake struct {
	ConsumerSecret string `yaml:"consumer_secret"`
}

// validateHandshake checks the handshake block of the endpoint at key.
func (e *Endpoint) validateHandshake(key string) []error {
	h := e.Handshake
	if h == nil {
		return nil
	}
	var errs []error
	bad := func(sub, format string, args ...any) {
		errs = append(errs, fmt.Errorf("%s.handshake.%s: "+format, append([]any{key, sub}, args...)...))
	}
	if h.Meta != nil && h.Meta.VerifyToken == "" {
		bad("meta.verify_token", "required: the Verify Token you type into Meta's webhook settings (or verify_token_file / verify_token_env)")
	}
	if h.Zoom != nil {
		if h.Zoom.Secret == "" {
			bad("zoom.secret", "required: the app's Secret Token from Zoom's Event Subscriptions (or secret_file / secret_env)")
		}
		if e.Verify == nil || e.Verify.Zoom == nil {
			bad("zoom", "requires verify.zoom on this endpoint (the same Secret Token), so that the relay signs only plainTokens Zoom sent")
		}
	}
	if h.Twitter != nil && h.Twitter.ConsumerSecret == "" {
		bad("twitter.consumer_secret", "required: the X app's API key secret (or consumer_secret_file / consumer_secret_env)")
	}
	return errs
}

// validateMTLS checks that endpoints with verify.mtls are served over TLS: without it no
// client certificate can ever arrive.
func (c *Config) validateMTLS() []error {
	var errs []error
	for i, e := range c.Endpoints {
		if e.Verify != nil && e.Verify.MTLS != nil && c.TLS == nil {
			errs = append(errs, fmt.Errorf("endpoints[%d].verify.mtls: needs tls (cert and key) on the relay: client certificates only come over https", i))
		}
	}
	return errs
}

// resolveMTLSPaths makes relative verify.mtls.ca_file paths relative to the config's dir.
func (c *Config) resolveMTLSPaths(dir string) {
	for i := range c.Endpoints {
		v := c.Endpoints[i].Verify
		if v != nil && v.MTLS != nil && v.MTLS.CAFile != "" && !filepath.IsAbs(v.MTLS.CAFile) {
			v.MTLS.CAFile = filepath.Join(dir, v.MTLS.CAFile)
		}
	}
}

// hasMTLS reports whether any endpoint of lv requires client certificates, so that the TLS
// server asks senders for one.
func (lv *live) hasMTLS() bool {
	for _, e := range lv.order {
		if e.cfg.Verify != nil && e.cfg.Verify.MTLS != nil {
			return true
		}
	}
	return false
}
