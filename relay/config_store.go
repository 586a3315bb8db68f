package relay

import (
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strings"
)

// StoreConfig chooses the relay's queue. Without nats, the embedded Badger store in data_dir
// (the default); with it, cluster mode: every relay of the cluster opens the same JetStream
// stream and bucket (relay/jsqueue).
type StoreConfig struct {
	NATS *NATSConfig `yaml:"nats"`
}

// NATSConfig is how a cluster's relays reach NATS JetStream.
type NATSConfig struct {
	// URLs of the NATS servers; at least one (the client finds the rest of the cluster).
	URLs []string `yaml:"urls"`
	// Replicas of the webhook stream and the state bucket, 1..5. Default 3. A 202 is sent
	// once JetStream acknowledged the webhook stored on a majority of them.
	Replicas int `yaml:"replicas"`
	// Creds is a NATS credentials file; "" (default) = none. Relative to the config file.
	Creds string `yaml:"creds"`
	// TLS verifies the servers with CA (default: system roots) and presents Cert and Key
	// (both or neither). Relative to the config file.
	TLS *NATSTLS `yaml:"tls"`
}

// NATSTLS names PEM files for the connection to NATS.
type NATSTLS struct {
	CA   string `yaml:"ca"`
	Cert string `yaml:"cert"`
	Key  string `yaml:"key"`
}

// Clustered says whether the relay runs in cluster mode (store.nats).
func (c *Config) Clustered() bool { return c.Store.NATS != nil }

func (c *Config) resolveStorePaths(dir string) {
	n := c.Store.NATS
	if n == nil {
		return
	}
	paths := []*string{&n.Creds}
	if n.TLS != nil {
		paths = append(paths, &n.TLS.CA, &n.TLS.Cert, &n.TLS.Key)
	}
	for _, p := range paths {
		if *p != "" && !filepath.IsAbs(*p) {
			*p = filepath.Join(dir, *p)
		}
	}
}

func (c *Config) applyStoreDefaults() {
	if c.NodeID == "" {
		c.NodeID, _ = os.Hostname()
	}
	if c.Store.NATS != nil {
		setInt(&c.Store.NATS.Replicas, 3)
	}
}

// validateStore checks store and node_id; bad reports one problem under its key.
func (c *Config) validateStore(bad func(key, format string, args ...any)) {
	if c.NodeID != "" && !validName(c.NodeID) {
		bad("node_id", "%q: use letters, digits, '-', '_' and '.'", c.NodeID)
	}
	n := c.Store.NATS
	if n == nil {
		return
	}
	if len(n.URLs) == 0 {
		bad("store.nats.urls", "none given: list the NATS servers, e.g. [\"nats://10.0.0.1:4222\"]")
	}
	for i, u := range n.URLs {
		if err := validNATSURL(u); err != nil {
			bad(fmt.Sprintf("store.nats.urls[%d]", i), "%q: %v", u, err)
		}
	}
	if n.Replicas < 1 || n.Replicas > 5 {
		bad("store.nats.replicas", "%d is out of range: use 1 to 5", n.Replicas)
	}
	if n.TLS != nil && (n.TLS.Cert == "") != (n.TLS.Key == "") {
		bad("store.nats.tls", "cert and key go together: set both or neither")
	}
}

func validNATSURL(s string) error {
	if !strings.Contains(s, "://") {
		s = "nats://" + s
	}
	u, err := url.Parse(s)
	if err != nil {
		return fmt.Errorf("not a URL (%v)", err)
	}
	switch u.Scheme {
	case "nats", "tls", "ws", "wss":
	default:
		return fmt.Errorf("scheme %q: use nats://, tls://, ws:// or wss://", u.Scheme)
	}
	if u.Hostname() == "" {
		return fmt.Errorf("no host: use nats://host:4222")
	}
	return nil
}
