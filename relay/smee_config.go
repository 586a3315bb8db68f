package relay

import (
	"fmt"
	"time"
)

const (
	// smeeMinName is the shortest name a smee endpoint may have: a smee channel is read by
	// anyone who knows its URL, so the name is its only secret.
	smeeMinName = 20
	// smeeEventsName is reserved: gosmee's client subscribes at /h/events/{endpoint}.
	smeeEventsName = "events"

	defaultSmeeKeepAlive = 30 * time.Second
	defaultChannelTTL    = 24 * time.Hour
	// defaultChannelsPerHour is how many channels one client address may make an hour.
	defaultChannelsPerHour = 30
)

// ChannelsConfig is the relay's channels key: GET or HEAD /new makes a fresh random
// stream-only smee endpoint and redirects to it, as smee.io's /new does.
type ChannelsConfig struct {
	// Enabled turns /new on. Default false: /new answers 404.
	Enabled bool `yaml:"enabled"`
	// TTL is how long a channel lives without use (a webhook, a stream attached). Default 24h.
	TTL time.Duration `yaml:"ttl"`
	// PerClientPerHour bounds the channels one client address (trusted_proxies apply; an IPv6
	// /64) may make per hour; past it 429 + Retry-After. Default 30.
	PerClientPerHour int `yaml:"per_client_per_hour"`
	// MaxBody is the largest webhook body a channel accepts. Default 1MiB (smee.io's limit).
	MaxBody ByteSize `yaml:"max_body"`
}

func (c *Config) applySmeeDefaults() {
	setDur(&c.SmeeKeepAlive, defaultSmeeKeepAlive)
	setDur(&c.Channels.TTL, defaultChannelTTL)
	setInt(&c.Channels.PerClientPerHour, defaultChannelsPerHour)
	if c.Channels.MaxBody == 0 {
		c.Channels.MaxBody = 1 << 20
	}
}

// validateSmee checks the smee and channels keys: the reserved name, smee names long enough
// to be a secret.
func (c *Config) validateSmee() []error {
	var errs []error
	for i, e := range c.Endpoints {
		key := fmt.Sprintf("endpoints[%d]", i)
		if e.Name == smeeEventsName {
			errs = append(errs, fmt.Errorf("%s.name: %q is reserved (gosmee subscribes at /h/events/{endpoint}): choose another name", key, e.Name))
		}
		if e.Smee && len(e.Name) < smeeMinName {
			errs = append(errs, fmt.Errorf("%s.smee: endpoint name %q has %d characters: a smee endpoint needs at least %d, "+
				"since anyone who knows the name can read its stream (e.g. hookrelay token prints a random one)",
				key, e.Name, len(e.Name), smeeMinName))
		}
	}
	if c.SmeeKeepAlive < 0 {
		errs = append(errs, fmt.Errorf("smee_keepalive: %v is negative: use a duration like 30s", c.SmeeKeepAlive))
	}
	if c.Channels.TTL < 0 {
		errs = append(errs, fmt.Errorf("channels.ttl: %v is negative: use a duration like 24h", c.Channels.TTL))
	}
	if c.Channels.PerClientPerHour < 0 {
		errs = append(errs, fmt.Errorf("channels.per_client_per_hour: %d is negative: use a positive count (default %d)",
			c.Channels.PerClientPerHour, defaultChannelsPerHour))
	}
	if c.Channels.Enabled && (c.Channels.MaxBody < 0 || c.Channels.MaxBody > c.IngressBuffer || c.Channels.MaxBody > c.PerClientBuffer) {
		errs = append(errs, fmt.Errorf("channels.max_body: %s is out of range: use a size up to ingress_buffer and per_client_buffer, like 1MiB",
			c.Channels.MaxBody))
	}
	return errs
}

// streamOnly reports whether the endpoint's webhooks go to smee streams only: no agent can
// ever receive them, so they are finished as soon as they are stored.
func (e *endpoint) streamOnly() bool { return e.cfg.Smee && len(e.cfg.Tokens) == 0 }
