package agent

import (
	"crypto/tls"
	"errors"
	"fmt"
	"net/url"
	"strings"

	"gopkg.in/yaml.v3"

	"github.com/hookrelay/hookrelay/protocol"
)

// StringList is a YAML value given either as one string or as a list of strings
// (`relay: wss://a` or `relay: [wss://a, wss://b]`).
type StringList []string

// UnmarshalYAML accepts a scalar or a sequence of scalars.
func (l *StringList) UnmarshalYAML(n *yaml.Node) error {
	switch n.Kind {
	case yaml.ScalarNode:
		var s string
		if err := n.Decode(&s); err != nil {
			return err
		}
		*l = StringList{s}
		return nil
	case yaml.SequenceNode:
		var ss []string
		if err := n.Decode(&ss); err != nil {
			return err
		}
		*l = ss
		return nil
	}
	return fmt.Errorf("line %d: a string or a list of strings", n.Line)
}

// checkRelays merges the programmatic Relay and RelayFingerprint into their lists and checks
// every URL and fingerprint, naming the one that is wrong.
func (c *Config) checkRelays() error {
	if len(c.Relays) == 0 && c.Relay != "" {
		c.Relays = StringList{c.Relay}
	}
	if len(c.Relays) == 0 {
		return errors.New("config relay: missing (ws://, wss://, quic://host:port, http:// or https:// URL of the relay, or a list of them)")
	}
	for i, r := range c.Relays {
		key := "relay"
		if len(c.Relays) > 1 {
			key = fmt.Sprintf("relay[%d]", i)
		}
		if err := checkRelayURL(key, r); err != nil {
			return err
		}
	}
	c.Relay = c.Relays[0]
	if len(c.RelayFingerprints) == 0 && c.RelayFingerprint != "" {
		c.RelayFingerprints = StringList{c.RelayFingerprint}
	}
	for i, fp := range c.RelayFingerprints {
		fp = strings.TrimSpace(fp)
		if _, err := protocol.ParseFingerprint(fp); err != nil {
			if len(c.RelayFingerprints) > 1 {
				return fmt.Errorf("config relay_fingerprint[%d]: %w", i, err)
			}
			return fmt.Errorf("config relay_fingerprint: %w", err)
		}
		c.RelayFingerprints[i] = fp
	}
	if len(c.RelayFingerprints) > 0 {
		c.RelayFingerprint = c.RelayFingerprints[0]
	}
	return nil
}

func checkRelayURL(key, relay string) error {
	if relay == "" {
		return fmt.Errorf("config %s: empty (ws://, wss://, quic://host:port, http:// or https:// URL of the relay)", key)
	}
	u, err := url.Parse(relay)
	if err != nil {
		return fmt.Errorf("config %s: %q is not a URL: %w", key, relay, err)
	}
	switch u.Scheme {
	case "ws", "wss", "quic", "http", "https":
	default:
		return fmt.Errorf("config %s: scheme %q not allowed (ws, wss, quic, http or https)", key, u.Scheme)
	}
	if u.Host == "" {
		return fmt.Errorf("config %s: %q has no host (e.g. wss://relay.example.com)", key, relay)
	}
	if u.Scheme == "quic" && u.Port() == "" {
		return fmt.Errorf("config %s: %q has no port (quic://host:port, the relay's quic_addr)", key, relay)
	}
	if u.User != nil {
		// Refused rather than carried into error messages and logs; the token authenticates.
		return fmt.Errorf("config %s: %s has user info (not allowed: the token authenticates the agent)", key, displayURL(relay))
	}
	return nil
}

// pinned reports whether relay_fingerprint is set.
func (c *Config) pinned() bool { return len(c.RelayFingerprints) > 0 }

// pinnedTLS is the client TLS config trusting exactly the relay_fingerprint certificates.
func (c *Config) pinnedTLS(serverName string) (*tls.Config, error) {
	tc, err := protocol.PinnedTLSConfigAny(c.RelayFingerprints, serverName)
	if err != nil {
		return nil, fmt.Errorf("relay fingerprint: %w", err)
	}
	return tc, nil
}

// displayURLs is the relay list as logged: one URL, or several joined by ", ".
func displayURLs(relays []string) string {
	shown := make([]string, len(relays))
	for i, r := range relays {
		shown[i] = displayURL(r)
	}
	return strings.Join(shown, ", ")
}

// currentRelay is the relay URL the connection loop dials or is connected to, as shown.
func (a *Agent) currentRelay() string {
	s, _ := a.relayNow.Load().(string)
	return s
}
