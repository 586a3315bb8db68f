// Package verify checks that an ingress request really comes from an endpoint's sender
// (signatures, Basic auth, address rules) before the relay stores it.
package verify

import "time"

// Config is an endpoint's `verify:` block. Every present scheme must pass.
type Config struct {
	GitHub           *Secrets     `yaml:"github"`
	Stripe           *Timed       `yaml:"stripe"`
	StandardWebhooks *Timed       `yaml:"standard_webhooks"`
	HMAC             *HMACConfig  `yaml:"hmac"`
	Basic            *BasicConfig `yaml:"basic"`
	IPAllow          *IPAllow     `yaml:"ip_allow"`
	Slack            *Timed       `yaml:"slack"`
	Zoom             *Timed       `yaml:"zoom"`
	MTLS             *MTLSConfig  `yaml:"mtls"`
}

// Secrets holds one secret or several (rotation).
type Secrets struct {
	Secret  string   `yaml:"secret"`
	Secrets []string `yaml:"secrets"`
}

// Timed is a signature scheme with a timestamp tolerance (default 300s).
type Timed struct {
	Secrets   `yaml:",inline"`
	Tolerance time.Duration `yaml:"tolerance"`
}

// HMACConfig is a generic HMAC signature header.
type HMACConfig struct {
	Secrets   `yaml:",inline"`
	Header    string `yaml:"header"`
	Algorithm string `yaml:"algorithm"` // sha1, sha256 (default), sha512
	Encoding  string `yaml:"encoding"`  // hex (default), base64
	Prefix    string `yaml:"prefix"`
}

// BasicConfig is HTTP Basic auth; PasswordHash is "sha256:HEX" or a bcrypt hash.
type BasicConfig struct {
	User         string `yaml:"user"`
	PasswordHash string `yaml:"password_hash"`
}

// IPAllow admits only client addresses inside CIDRs. The client address is the socket's,
// unless the socket's address is inside TrustedProxies: then the right-most untrusted address
// of X-Forwarded-For.
type IPAllow struct {
	CIDRs          []string `yaml:"cidrs"`
	TrustedProxies []string `yaml:"trusted_proxies"`
}

// MTLSConfig requires a client certificate that chains to the CA (or CAs) in CAFile and is
// valid for client authentication. Subjects, when set, also require the leaf to name one of
// them: its subject DN as Go prints it ("CN=client,O=Acme"), its common name, or one of its
// DNS, email or URI names. Empty Subjects admit every certificate the CA issued.
type MTLSConfig struct {
	CAFile   string   `yaml:"ca_file"`
	Subjects []string `yaml:"subjects"`
}
