// Package agent is the edge side of hookrelay: it dials out to a relay, stores every webhook it
// receives in its own Badger before acking it, and delivers it to a local HTTP target with retry.
// Nothing inbound is opened except a local admin address.
package agent

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/hookrelay/hookrelay/internal/admin"
	"github.com/hookrelay/hookrelay/internal/secretref"
	"github.com/hookrelay/hookrelay/internal/tracing"
	"github.com/hookrelay/hookrelay/protocol"
)

// Defaults of the agent configuration.
const (
	DefaultAdminAddr     = "127.0.0.1:7071"
	DefaultConcurrency   = 8
	DefaultMaxAttempts   = 20
	DefaultMaxAge        = 72 * time.Hour
	DefaultTimeout       = 30 * time.Second
	DefaultBackoffMin    = time.Second
	DefaultBackoffMax    = 10 * time.Minute
	DefaultShutdownGrace = 5 * time.Second
	DefaultQUICRetry     = 5 * time.Minute
)

// TokenEnv names the environment variable whose value wins over the file's token.
const TokenEnv = "HOOKAGENT_TOKEN"

// agentIDFile keeps the generated agent id in data_dir, so it is stable across restarts.
const agentIDFile = "agent-id"

// Config is the agent's one configuration (agent.yaml). Keys are exactly the interface
// contract's, plus the documented extras.
type Config struct {
	// Relays are the relay's URLs, tried in turn: ws://, wss://, quic://host:port, or
	// http(s):// (auto). Required (YAML: `relay:`, one URL or a list).
	Relays StringList `yaml:"relay"`
	// Relay is one relay URL for programs that build a Config; it is Relays[0] after
	// validation.
	Relay string `yaml:"-"`
	// Token authenticates the agent; HOOKAGENT_TOKEN in the environment wins. Required.
	Token string `yaml:"token"`
	// AgentID names this agent at the relay; default hostname + "-" + a random suffix, kept in
	// data_dir/agent-id.
	AgentID string `yaml:"agent_id"`
	// DataDir holds the store and the agent id. Required.
	DataDir string `yaml:"data_dir"`
	// RelayFingerprints ("sha256:" + 64 hex each) pin self-signed relay certificates: a
	// relay's certificate must be one of them. Optional (YAML: `relay_fingerprint:`, one or a
	// list).
	RelayFingerprints StringList `yaml:"relay_fingerprint"`
	// RelayFingerprint is one fingerprint for programs that build a Config; merged into
	// RelayFingerprints by validation.
	RelayFingerprint string `yaml:"-"`
	// AdminAddr is the local /healthz, /readyz, metrics and admin address; default
	// 127.0.0.1:7071. Port 0 picks a free port; "off" disables it (extra).
	AdminAddr string `yaml:"admin_addr"`
	// AdminToken (extra) is "sha256:" + hex of the SHA-256 of a token that /admin/ and
	// /metrics then require (Authorization: Bearer, or the UI's login), as the relay's
	// admin_token. Required when admin_addr is not loopback. Default: none (loopback only).
	AdminToken string `yaml:"admin_token"`
	// OTel exports a trace span per delivery attempt over OTLP/HTTP; absent: off.
	OTel *tracing.Config `yaml:"otel"`
	// ShutdownGrace (extra) is how long in-flight deliveries may finish on shutdown before they
	// are cancelled and handed back to the queue; default 5s.
	ShutdownGrace time.Duration `yaml:"shutdown_grace"`
	// QUICRetry (extra) is how often an agent in auto mode (an http(s):// relay) that fell
	// back to WebSocket tries QUIC again; default 5m.
	QUICRetry time.Duration `yaml:"quic_retry"`
	// Routes map relay endpoints to local targets. At least one.
	Routes []Route `yaml:"routes"`
	// Group is the relay consumer group this agent serves: the agents of one group share an
	// endpoint's webhooks, each group gets them all. It must be declared (relay endpoint
	// `groups:`) on every endpoint the agent routes. Default "default".
	Group string `yaml:"group"`

	// storeQuota (tests only) is the store's per-queue quota (persist.Options.Quota).
	storeQuota func(queue string) int64

	// OnEvent, when set (in code; there is no YAML key), is called for each thing the agent
	// does: tunnel up and down, webhooks received, stored, duplicated or refused, and every
	// delivery attempt's outcome (see Event). It is called synchronously from the agent's
	// goroutines, several at once: it must be safe for concurrent use and return quickly.
	// `hookagent listen` prints its lines from it; the agent's metrics see the same events.
	OnEvent func(Event) `yaml:"-"`
}

// Route delivers one relay endpoint to one local target. Several routes may name one
// endpoint: each gets its own copy of every webhook, with its own queue, retries and dead
// letters (routes.go).
type Route struct {
	// Endpoint is the relay endpoint name. Required.
	Endpoint string `yaml:"endpoint"`
	// Name names the route in the admin API, metrics and status: letters, digits, "-", "_"
	// and "." (at most 64), unique. Default: the route's index ("0", "1", …).
	Name string `yaml:"name"`
	// Target is the http(s) URL the path suffix and query are appended to. Required.
	Target string `yaml:"target"`
	// Concurrency is the number of deliveries in flight to the target; default 8.
	Concurrency int `yaml:"concurrency"`
	// Rate is the most deliveries per second to the target; 0 (default) = unlimited.
	Rate float64 `yaml:"rate"`
	// MaxAttempts bounds attempts before the dead letter; default 20.
	MaxAttempts int `yaml:"max_attempts"`
	// MaxAge bounds the time since the relay received the webhook; default 72h.
	MaxAge time.Duration `yaml:"max_age"`
	// Ordered delivers one at a time, the next only after the previous is delivered or dead.
	Ordered bool `yaml:"ordered"`
	// Headers are added toward the target where the sender sent no header of that name.
	Headers map[string]string `yaml:"headers"`
	// ReplaceHeaders (extra) names headers whose value the route sets whatever the sender sent:
	// Headers' value of that name replaces the sender's, and without one the sender's is
	// dropped, so a target can trust them (X-Forwarded-For, Forwarded). Default: none.
	ReplaceHeaders []string `yaml:"replace_headers"`
	// CAFile is a PEM file of a private CA trusted (with the system roots) for an https target.
	CAFile string `yaml:"ca_file"`
	// Timeout (extra) bounds one attempt, response body included; default 30s.
	Timeout time.Duration `yaml:"timeout"`
	// BackoffMin and BackoffMax (extras) bound the retry backoff (exponential, full jitter);
	// defaults 1s and 10m.
	BackoffMin time.Duration `yaml:"backoff_min"`
	BackoffMax time.Duration `yaml:"backoff_max"`
	// Sign makes hookrelay sign each attempt (Standard Webhooks); the sender's own
	// webhook-* headers move to hookrelay-original-webhook-*. Default: none.
	Sign *Sign `yaml:"sign"`
	// ExposeResponse lets the relay return the target's answers to senders (sync endpoints)
	// and record them; a target's answers are private to its network. Default false.
	ExposeResponse bool `yaml:"expose_response"`
	// Filter is an expression (expr-lang) over method, path, query, headers and body: a
	// webhook it is false for is "filtered", not delivered. Default: none (all delivered).
	Filter string `yaml:"filter"`

	filter    *filter         // compiled Filter, set by validate
	targetURL *url.URL        // parsed Target, set by validate
	replace   map[string]bool // canonical ReplaceHeaders, set by validate
	// queue is the store queue of the route's copies and first whether it is the first route
	// of its endpoint (set by validate, see routes.go).
	queue string
	first bool
}

// LoadConfig reads the YAML file at path, applies HOOKAGENT_TOKEN and the defaults, and
// validates it. Unknown keys are refused.
func LoadConfig(path string) (*Config, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read config: %w", err)
	}
	return parseConfig(b, filepath.Dir(path))
}

// ParseConfig is LoadConfig over bytes (relative KEY_file paths from the working directory).
func ParseConfig(b []byte) (*Config, error) { return parseConfig(b, "") }

// secretKeys are the keys whose value may instead come from KEY_file or KEY_env (see
// secretref); "secret" is a route's signing secret.
var secretKeys = []string{"token", "admin_token", "secret", "secrets"}

// parseConfig reads KEY_file / KEY_env secrets (relative paths from dir), decodes b
// strictly, applies HOOKAGENT_TOKEN and the defaults, and validates.
func parseConfig(b []byte, dir string) (*Config, error) {
	b, err := secretref.Resolve(b, secretKeys, []string{"secrets"}, dir, nil)
	if err != nil {
		return nil, err
	}
	cfg := &Config{}
	dec := yaml.NewDecoder(bytes.NewReader(b))
	dec.KnownFields(true)
	if err := dec.Decode(cfg); err != nil && !errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("parse config: %w%s", err, keyHint(b, err))
	}
	if tok := os.Getenv(TokenEnv); tok != "" {
		cfg.Token = tok
	}
	if err := cfg.check(); err != nil {
		return nil, err
	}
	return cfg, nil
}

// keyHint names the keys on the lines a YAML type error points at (yaml.v3 gives only line
// numbers), with the accepted forms of a duration.
func keyHint(b []byte, err error) string {
	var te *yaml.TypeError
	if !errors.As(err, &te) {
		return ""
	}
	var root yaml.Node
	if yaml.Unmarshal(b, &root) != nil {
		return ""
	}
	var keys []string
	for _, msg := range te.Errors {
		var line int
		if _, err := fmt.Sscanf(msg, "line %d:", &line); err == nil {
			if k := keyAtLine(&root, line); k != "" {
				keys = append(keys, k)
			}
		}
	}
	if len(keys) == 0 {
		return ""
	}
	hint := " (key " + strings.Join(keys, ", ") + ")"
	if strings.Contains(err.Error(), "time.Duration") {
		hint += " (durations look like 500ms, 30s, 10m, 72h)"
	}
	return hint
}

// keyAtLine finds the mapping key written on a line.
func keyAtLine(n *yaml.Node, line int) string {
	if n.Kind == yaml.MappingNode {
		for i := 0; i+1 < len(n.Content); i += 2 {
			if n.Content[i].Line == line {
				return n.Content[i].Value
			}
		}
	}
	for _, c := range n.Content {
		if k := keyAtLine(c, line); k != "" {
			return k
		}
	}
	return ""
}

// check applies the defaults and validates; New calls it too, so a Config built in code (as
// `hookagent listen` does) gets the same treatment. It is idempotent.
func (c *Config) check() error {
	c.setDefaults()
	return c.validate()
}

func (c *Config) setDefaults() {
	orDefault(&c.AdminAddr, DefaultAdminAddr)
	orDefault(&c.ShutdownGrace, DefaultShutdownGrace)
	orDefault(&c.QUICRetry, DefaultQUICRetry)
	for i := range c.Routes {
		r := &c.Routes[i]
		orDefault(&r.Name, strconv.Itoa(i))
		orDefault(&r.Concurrency, DefaultConcurrency)
		orDefault(&r.MaxAttempts, DefaultMaxAttempts)
		orDefault(&r.MaxAge, DefaultMaxAge)
		orDefault(&r.Timeout, DefaultTimeout)
		orDefault(&r.BackoffMin, DefaultBackoffMin)
		orDefault(&r.BackoffMax, DefaultBackoffMax)
	}
}

// orDefault sets *v to def when it is the zero value (the key was not given).
func orDefault[T comparable](v *T, def T) {
	var zero T
	if *v == zero {
		*v = def
	}
}

// validate reports the first problem as "KEY: what was wrong (what is allowed)".
func (c *Config) validate() error {
	if err := c.checkRelays(); err != nil {
		return err
	}
	if c.OTel != nil {
		if err := c.OTel.Validate("otel"); err != nil {
			return err
		}
	}
	if c.Token == "" {
		return fmt.Errorf("config token: missing (set token in the file or %s in the environment)", TokenEnv)
	}
	if c.DataDir == "" {
		return errors.New("config data_dir: missing (a directory for the store, e.g. /var/lib/hookagent)")
	}
	if c.AdminToken != "" {
		if err := admin.CheckTokenHash(c.AdminToken); err != nil {
			return fmt.Errorf("config admin_token: %w (hookrelay token prints a token and its hash)", err)
		}
	}
	if c.AdminAddr != "off" {
		host, _, err := net.SplitHostPort(c.AdminAddr)
		if err != nil {
			return fmt.Errorf("config admin_addr: %q is not host:port (e.g. 127.0.0.1:7071, or off)", c.AdminAddr)
		}
		if c.AdminToken == "" && !isLoopback(host) {
			// Without a token the admin API is open to whoever reaches it.
			return fmt.Errorf("config admin_addr: %q is not loopback: set admin_token (the hash of a token "+
				"that /admin/ and /metrics will require; hookrelay token prints one), or use 127.0.0.1", c.AdminAddr)
		}
	}
	if c.ShutdownGrace < 0 {
		return fmt.Errorf("config shutdown_grace: %v is negative (a duration like 5s)", c.ShutdownGrace)
	}
	if c.QUICRetry < 0 {
		return fmt.Errorf("config quic_retry: %v is negative (a duration like 5m)", c.QUICRetry)
	}
	if !validGroup(c.Group) {
		return fmt.Errorf("config group: %q is not allowed: use letters, digits, '-' and '_' (1 to 64 characters)", c.Group)
	}
	if len(c.Routes) == 0 {
		return errors.New("config routes: none (at least one {endpoint, target})")
	}
	names, endpoints := map[string]int{}, map[string]bool{}
	for i := range c.Routes {
		r := &c.Routes[i]
		if err := r.validate(); err != nil {
			return fmt.Errorf("config routes[%d]: %w", i, err)
		}
		if !validRouteName(r.Name) {
			return fmt.Errorf("config routes[%d].name: %q is not a route name (1 to 64 letters, digits, -, _ or .)", i, r.Name)
		}
		if j, dup := names[r.Name]; dup {
			return fmt.Errorf("config routes[%d].name: %q is also routes[%d]'s name (names are unique)", i, r.Name, j)
		}
		names[r.Name] = i
		r.first = !endpoints[r.Endpoint]
		endpoints[r.Endpoint] = true
		r.queue = r.queueName()
	}
	return nil
}

// validGroup reports whether s may name a consumer group ("" is "default"), as the relay
// allows them.
func validGroup(s string) bool {
	if len(s) > 64 {
		return false
	}
	for _, r := range s {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_') {
			return false
		}
	}
	return true
}

func (r *Route) validate() error {
	if r.Endpoint == "" {
		return errors.New("endpoint: missing (the relay endpoint name)")
	}
	if strings.ContainsAny(r.Endpoint, "/?# ") {
		return fmt.Errorf("endpoint: %q has a /, ?, # or space (a bare endpoint name)", r.Endpoint)
	}

	u, err := url.Parse(r.Target)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return fmt.Errorf("target: %q is not an http(s) URL with a host (e.g. http://127.0.0.1:3000/webhooks)", r.Target)
	}
	if u.Fragment != "" || u.User != nil {
		return fmt.Errorf("target: %q has a fragment or user info (not allowed)", r.Target)
	}
	r.targetURL = u
	switch {
	case r.Concurrency < 1:
		return fmt.Errorf("concurrency: %d (1 or more; default %d)", r.Concurrency, DefaultConcurrency)
	case r.Rate < 0:
		return fmt.Errorf("rate: %v is negative (deliveries per second, 0 = unlimited)", r.Rate)
	case r.MaxAttempts < 1:
		return fmt.Errorf("max_attempts: %d (1 or more; default %d)", r.MaxAttempts, DefaultMaxAttempts)
	case r.MaxAge < 0:
		return fmt.Errorf("max_age: %v is negative (a duration like 72h)", r.MaxAge)
	case r.Timeout < 0:
		return fmt.Errorf("timeout: %v is negative (a duration like 30s)", r.Timeout)
	case r.BackoffMin < 0:
		return fmt.Errorf("backoff_min: %v is negative (a duration like 1s)", r.BackoffMin)
	case r.BackoffMax < r.BackoffMin:
		return fmt.Errorf("backoff_max: %v is below backoff_min %v", r.BackoffMax, r.BackoffMin)
	}
	for name := range r.Headers {
		if name == "" || strings.ContainsAny(name, " :\r\n\t") {
			return fmt.Errorf("headers: %q is not a header name", name)
		}
	}
	r.replace = make(map[string]bool, len(r.ReplaceHeaders))
	for _, name := range r.ReplaceHeaders {
		k := http.CanonicalHeaderKey(name)
		if !validHeader(k, "") || protocol.HopByHop(nil)(k) || ownHeaders[k] || strings.HasPrefix(k, "Hookrelay-") {
			return fmt.Errorf("replace_headers: %q is not a header name the route may set (hop-by-hop, Host, Content-Length and hookrelay-* are not)", name)
		}
		r.replace[k] = true
	}
	if r.CAFile != "" {
		if _, err := os.Stat(r.CAFile); err != nil {
			return fmt.Errorf("ca_file: %w", err)
		}
	}
	if r.Sign != nil {
		if err := r.Sign.validate(); err != nil {
			return err
		}
	}
	if r.Filter != "" {
		f, err := compileFilter(r.Filter)
		if err != nil {
			return fmt.Errorf("filter: %w", err)
		}
		r.filter = f
	}
	return nil
}

// isLoopback reports whether host (of host:port) is localhost or a loopback address; "" (all
// interfaces) is not.
func isLoopback(host string) bool {
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// resolveAgentID fills AgentID when empty from data_dir/agent-id, creating it once as
// hostname + "-" + 8 random hex digits.
func (c *Config) resolveAgentID() error {
	if c.AgentID != "" {
		return nil
	}
	path := filepath.Join(c.DataDir, agentIDFile)
	if b, err := os.ReadFile(path); err == nil {
		if id := strings.TrimSpace(string(b)); id != "" {
			c.AgentID = id
			return nil
		}
	} else if !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("read agent id: %w", err)
	}
	host, err := os.Hostname()
	if err != nil || host == "" {
		host = "agent"
	}
	suffix := make([]byte, 4)
	if _, err := rand.Read(suffix); err != nil {
		return fmt.Errorf("agent id suffix: %w", err)
	}
	id := host + "-" + hex.EncodeToString(suffix)
	if err := os.WriteFile(path, []byte(id+"\n"), 0o600); err != nil {
		return fmt.Errorf("write agent id: %w", err)
	}
	c.AgentID = id
	return nil
}

// endpoints lists the routes' endpoints once each, in config order.
func (c *Config) endpoints() []string {
	var out []string
	for _, r := range c.Routes {
		if r.first {
			out = append(out, r.Endpoint)
		}
	}
	return out
}
