package relay

import (
	"fmt"
	"strconv"
	"time"

	"gopkg.in/yaml.v3"
)

// Sync response mode limits: how long ingress waits for the target's answer.
const (
	DefaultSyncTimeout = 10 * time.Second
	MaxSyncTimeout     = 60 * time.Second // protocol.MaxSyncWait: an agent holds a retry no longer
)

// SyncConfig is an endpoint's sync key: `sync: true`, or `sync: {timeout: 10s}`. When on,
// ingress stores the webhook, then waits up to Timeout for the target's answer to the first
// attempt and returns it (sync.go).
type SyncConfig struct {
	Enabled bool
	// Timeout bounds the wait for the target's answer. Default 10s, at most 60s.
	Timeout time.Duration
}

// UnmarshalYAML accepts a boolean or a mapping with timeout.
func (c *SyncConfig) UnmarshalYAML(n *yaml.Node) error {
	switch n.Kind {
	case yaml.ScalarNode:
		on, err := strconv.ParseBool(n.Value)
		if err != nil {
			return fmt.Errorf("line %d: sync: %q is not true, false or {timeout: 10s}", n.Line, n.Value)
		}
		*c = SyncConfig{Enabled: on}
		return nil
	case yaml.MappingNode:
		*c = SyncConfig{Enabled: true}
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, v := n.Content[i], n.Content[i+1]
			if k.Value != "timeout" {
				return fmt.Errorf("line %d: sync.%s: unknown key (sync takes timeout only)", k.Line, k.Value)
			}
			d, err := time.ParseDuration(v.Value)
			if v.Kind != yaml.ScalarNode || err != nil {
				return fmt.Errorf("line %d: sync.timeout: %q is not a duration like 10s", v.Line, v.Value)
			}
			c.Timeout = d
		}
		return nil
	}
	return fmt.Errorf("line %d: sync: use true, false or {timeout: 10s}", n.Line)
}

// MarshalYAML writes the form it was read in.
func (c SyncConfig) MarshalYAML() (any, error) {
	if c.Timeout == 0 {
		return c.Enabled, nil
	}
	return map[string]string{"timeout": c.Timeout.String()}, nil
}

// wait is how long ingress waits for the target's answer.
func (c SyncConfig) wait() time.Duration {
	if c.Timeout == 0 {
		return DefaultSyncTimeout
	}
	return c.Timeout
}

// validate checks the timeout (key names the endpoint: "endpoints[i]").
func (c SyncConfig) validate(key string) []error {
	if c.Timeout < 0 || c.Timeout > MaxSyncTimeout {
		return []error{fmt.Errorf("%s.sync.timeout: %v is out of range: use a duration from 1ms to %v (default %v)",
			key, c.Timeout, MaxSyncTimeout, DefaultSyncTimeout)}
	}
	return nil
}
