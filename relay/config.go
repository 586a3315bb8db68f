package relay

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/hookrelay/hookrelay/internal/secretref"
	"github.com/hookrelay/hookrelay/internal/tracing"
	"github.com/hookrelay/hookrelay/protocol"
	"github.com/hookrelay/hookrelay/relay/verify"
)

// Config is the relay's whole configuration, read from YAML (relay.yaml). The keys of the
// interface contract in DESIGN.md keep exactly their meaning; the others are documented here.
// Every field says its default; zero values get the default in applyDefaults.
// Precedence: flag (cmd/hookrelay) > environment (HOOKRELAY_*) > file > default.
type Config struct {
	// Addr is the HTTP listen address: ingress, /v1/tunnel, /v1/info, /healthz, /readyz.
	// Default ":8080". Env HOOKRELAY_ADDR. Port 0 picks a free port (see Server.Addr).
	Addr string `yaml:"addr"`
	// QUICAddr is the UDP address of the QUIC tunnel; "" (default) = no QUIC. Env HOOKRELAY_QUIC_ADDR.
	QUICAddr string `yaml:"quic_addr"`
	// DataDir holds the Badger store. Default "/var/lib/hookrelay". Env HOOKRELAY_DATA_DIR.
	DataDir string `yaml:"data_dir"`
	// TLS, when set, serves https/wss on Addr and QUIC with this certificate. Relative paths
	// are relative to the config file's directory.
	TLS *TLSConfig `yaml:"tls"`
	// AdminToken is "sha256:" + hex of the admin token, required as "Authorization: Bearer
	// <token>" by every /admin/ route and by /metrics. "" (default) disables the admin API and
	// UI everywhere (they answer 404, and the log says why at start), since they show and
	// replay webhook bodies. /metrics without a token is served only on a loopback AdminAddr
	// (127.0.0.0/8, ::1, localhost): it holds counts and endpoint names, no payloads, and a
	// local Prometheus commonly scrapes without credentials. Env HOOKRELAY_ADMIN_TOKEN.
	AdminToken string `yaml:"admin_token"`
	// AdminAddr, when set, serves /admin/ and /metrics there (only there) instead of on Addr.
	// It uses the TLS certificate too, unless it is a loopback address. Env HOOKRELAY_ADMIN_ADDR.
	AdminAddr string `yaml:"admin_addr"`
	// Endpoints are the ingress endpoints; at least one.
	Endpoints []Endpoint `yaml:"endpoints"`

	// Window is how many webhooks a session may have unacked. Default 256.
	Window int `yaml:"window"`
	// LeaseTTL is a safety net: a webhook sent to a session and neither acked nor released
	// within it becomes ready again. Sessions release their webhooks when they end. Default 5m.
	LeaseTTL time.Duration `yaml:"lease_ttl"`
	// HandshakeTimeout bounds the time from tunnel connect to the agent's Hello. Default 10s.
	HandshakeTimeout time.Duration `yaml:"handshake_timeout"`
	// MaxAgentsPerToken bounds the live sessions one agent token may hold at once; past it a
	// new session gets Error{limit} and is closed. A session replacing one of the same agent
	// id does not count twice. Default 16.
	MaxAgentsPerToken int `yaml:"max_agents_per_token"`
	// MaxPendingTunnels bounds the tunnels (WebSocket and QUIC) connected but not yet past
	// their Hello. When it is reached, the oldest one waiting for over a second is closed to
	// make room; with none, a new WebSocket tunnel gets 503 + Retry-After and a QUIC one is
	// closed with Error code limit. Default 512.
	MaxPendingTunnels int `yaml:"max_pending_tunnels"`
	// MaxPendingTunnelsPerClient bounds them per client address (an IPv6 /64; trusted_proxies
	// apply to WebSocket); past it 429 + Retry-After, or a QUIC close with code limit.
	// Default 32.
	MaxPendingTunnelsPerClient int `yaml:"max_pending_tunnels_per_client"`
	// ReadHeaderTimeout bounds reading a request's headers (slow-loris). Default 10s.
	ReadHeaderTimeout time.Duration `yaml:"read_header_timeout"`
	// BodyTimeout bounds reading one ingress request's body (and writing its answer); a body
	// still arriving then gets 408 and the connection is closed. Default 2m.
	BodyTimeout time.Duration `yaml:"body_timeout"`
	// IdleTimeout closes idle keep-alive connections. Default 2m.
	IdleTimeout time.Duration `yaml:"idle_timeout"`
	// ShutdownTimeout bounds waiting for in-flight requests on shutdown. Default 10s.
	ShutdownTimeout time.Duration `yaml:"shutdown_timeout"`
	// IngressBuffer bounds the request body bytes held in memory at once across all ingress
	// requests; past it ingress answers 503 + Retry-After. A body's buffer grows with the
	// bytes received, never with the length the sender declared. Default 1GiB.
	IngressBuffer ByteSize `yaml:"ingress_buffer"`
	// PerClientRequests bounds the ingress requests one client address (an IPv6 /64) may
	// have in flight at once; past it 429 + Retry-After. Default 64.
	PerClientRequests int `yaml:"per_client_requests"`
	// PerClientBuffer bounds the request body bytes held in memory for one client address
	// (an IPv6 /64); past it 429 + Retry-After. At least every endpoint's max_body. Default 64MiB.
	PerClientBuffer ByteSize `yaml:"per_client_buffer"`
	// TrustedProxies are the peers (CIDRs or addresses) whose X-Forwarded-For or Forwarded
	// names the client (verify.ClientAddr); every per-client rule (the per_client_ caps,
	// ip_allow) uses that address. Default none: the socket's address is the client's.
	TrustedProxies []string `yaml:"trusted_proxies"`
	// KeepDone is how long delivered webhooks stay listable. Default 24h.
	KeepDone time.Duration `yaml:"keep_done"`
	// KeepDoneMax bounds how many delivered webhooks are kept. Default 10000.
	KeepDoneMax int `yaml:"keep_done_max"`
	// KeepDead and KeepDeadMax are the same for dead letters, counted apart so that delivered
	// traffic never evicts them. Defaults 168h (7 days) and 10000.
	KeepDead    time.Duration `yaml:"keep_dead"`
	KeepDeadMax int           `yaml:"keep_dead_max"`
	// RetentionInterval is how often retention is enforced (and once at start). Default 1m.
	RetentionInterval time.Duration `yaml:"retention_interval"`
	// Channels, when enabled, lets anyone make a stream-only smee endpoint at GET /new
	// (channels.go). Default off.
	Channels ChannelsConfig `yaml:"channels"`
	// SmeeKeepAlive is how often a smee stream with nothing to send gets a ping event (as
	// smee.io's every 30s). Default 30s.
	SmeeKeepAlive time.Duration `yaml:"smee_keepalive"`

	// OTel exports a trace span per ingress over OTLP/HTTP; absent: off.
	OTel *tracing.Config `yaml:"otel"`

	// Store chooses the queue: absent, the embedded Badger store in DataDir; store.nats, a
	// JetStream cluster (config_store.go).
	Store StoreConfig `yaml:"store"`
	// NodeID names this relay among a cluster's (admin agents list, logs). Default: hostname.
	NodeID string `yaml:"node_id"`

	// Version is reported by GET /v1/info; set by main, never read from YAML.
	Version string `yaml:"-"`

	// holdMax and holdYoung, when set, replace the bound on what an agent holds without an
	// outcome (holding.go); tests only.
	holdMax   int
	holdYoung time.Duration
}

// TLSConfig names a PEM certificate (chain) and its key.
type TLSConfig struct {
	Cert string `yaml:"cert"`
	Key  string `yaml:"key"`
}

// Endpoint is one ingress endpoint, reached at /h/{name}[/path?query].
type Endpoint struct {
	// Name is the URL segment: letters, digits, '-', '_' and '.'; required, unique.
	Name string `yaml:"name"`
	// Tokens are "sha256:" + hex hashes of the agent tokens allowed to receive this endpoint.
	Tokens []string `yaml:"tokens"`
	// Retention is how long an undelivered webhook waits for an agent. Default 72h.
	Retention time.Duration `yaml:"retention"`
	// OutcomeTimeout is how long an acked webhook waits for its outcome report once the agent
	// holding it has no session: then it is offered again (to its group), so that an agent
	// that died for good holds nothing forever. Default 24h.
	OutcomeTimeout time.Duration `yaml:"outcome_timeout"`
	// Quota bounds the stored bytes of pending webhooks; past it ingress answers 429. 0 (default) = none.
	Quota ByteSize `yaml:"quota"`
	// Rate is requests per second accepted; past it 429. 0 (default) = unlimited.
	Rate float64 `yaml:"rate"`
	// Burst is how many requests may exceed Rate at once. Default max(1, ceil(rate)).
	Burst int `yaml:"burst"`
	// MaxBody is the largest request body accepted; past it 413. Default 25MiB.
	MaxBody ByteSize `yaml:"max_body"`
	// Sync returns the target's answer to the sender (config_sync.go, sync.go). Default off.
	Sync SyncConfig `yaml:"sync"`
	// Ordered serves each group of the endpoint through one agent session at a time, one
	// webhook at a time, in id order (the order of the 202s). Default false: windowed, any order.
	Ordered bool `yaml:"ordered"`
	// Groups are the endpoint's consumer groups: each gets every webhook accepted after it was
	// declared; within one, agents share the work. Default [default].
	Groups []string `yaml:"groups"`
	// Verify, when set, is checked before storing (relay/verify).
	Verify *verify.Config `yaml:"verify"`
	// Handshake, when set, answers providers' URL handshakes at the relay (config_handshake.go).
	Handshake *HandshakeConfig `yaml:"handshake"`
	// Smee streams the endpoint's webhooks to smee clients (smee.go); without Tokens the
	// endpoint is stream-only. The name must have at least 20 characters. Default false.
	Smee bool `yaml:"smee"`
}

// Defaults.
const (
	DefaultAddr              = ":8080"
	DefaultDataDir           = "/var/lib/hookrelay"
	DefaultWindow            = 256
	DefaultRetention         = 72 * time.Hour
	DefaultOutcomeTimeout    = 24 * time.Hour
	DefaultMaxBody           = 25 << 20
	DefaultIngressBuffer     = 1 << 30
	DefaultPerClientRequests = 64
	DefaultPerClientBuffer   = 64 << 20
	defaultLeaseTTL          = 5 * time.Minute
	defaultClusterLeaseTTL   = 30 * time.Second
	defaultHandshakeTimeout  = 10 * time.Second
	DefaultMaxAgentsPerToken = 16
	// DefaultMaxPendingTunnels and DefaultMaxPendingTunnelsPerClient bound unauthenticated
	// tunnels: each holds at most a few tens of KiB while it waits for its Hello.
	DefaultMaxPendingTunnels          = 512
	DefaultMaxPendingTunnelsPerClient = 32
	defaultReadHeaderTimeout          = 10 * time.Second
	defaultBodyTimeout                = 2 * time.Minute
	defaultIdleTimeout                = 2 * time.Minute
	defaultShutdownTimeout            = 10 * time.Second
	defaultKeepDone                   = 24 * time.Hour
	defaultKeepDoneMax                = 10000
	defaultKeepDead                   = 7 * 24 * time.Hour
	defaultKeepDeadMax                = 10000
	defaultRetentionInterval          = time.Minute
	maxWindow                         = 1 << 16
)

// envKeys maps environment variables to the top-level keys they set.
var envKeys = []struct {
	name string
	set  func(*Config, string)
}{
	{"HOOKRELAY_ADDR", func(c *Config, v string) { c.Addr = v }},
	{"HOOKRELAY_QUIC_ADDR", func(c *Config, v string) { c.QUICAddr = v }},
	{"HOOKRELAY_DATA_DIR", func(c *Config, v string) { c.DataDir = v }},
	{"HOOKRELAY_ADMIN_ADDR", func(c *Config, v string) { c.AdminAddr = v }},
	{"HOOKRELAY_ADMIN_TOKEN", func(c *Config, v string) { c.AdminToken = v }},
}

// LoadConfig reads the YAML file at path strictly (unknown keys are errors), resolves TLS
// paths against the file's directory, applies HOOKRELAY_* environment variables over it and
// fills defaults. It does not validate, so that flags can still override: call Validate after
// them (New does too).
func LoadConfig(path string) (*Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read config: %w", err)
	}
	c, err := decodeConfig(data, filepath.Dir(path))
	if err != nil {
		return nil, fmt.Errorf("config %s: %w", path, err)
	}
	c.resolvePaths(filepath.Dir(path))
	c.resolveMTLSPaths(filepath.Dir(path))
	c.applyEnv(os.Getenv)
	c.applyDefaults()
	return c, nil
}

// parseConfig decodes YAML (no HOOKRELAY_* environment; KEY_env secrets are read), fills
// defaults and validates.
func parseConfig(data []byte) (*Config, error) {
	c, err := decodeConfig(data, "")
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	c.applyDefaults()
	if err := c.Validate(); err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	return c, nil
}

// secretKeys are the keys whose value may instead come from KEY_file or KEY_env (at any depth,
// see secretref); secretLists are those of them that hold lists.
var (
	secretKeys  = []string{"secret", "secrets", "password_hash", "admin_token", "tokens", "verify_token", "consumer_secret"}
	secretLists = []string{"secrets", "tokens"}
)

// decodeConfig reads KEY_file / KEY_env secrets (relative paths from dir) and decodes
// strictly: unknown keys and a second YAML document are errors.
func decodeConfig(data []byte, dir string) (*Config, error) {
	data, err := secretref.Resolve(data, secretKeys, secretLists, dir, nil)
	if err != nil {
		return nil, err
	}
	var c Config
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(&c); err != nil && !errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("parse yaml: %w", err)
	}
	var extra any
	if err := dec.Decode(&extra); !errors.Is(err, io.EOF) {
		return nil, errors.New("parse yaml: more than one document: keep one")
	}
	return &c, nil
}

func (c *Config) applyEnv(getenv func(string) string) {
	for _, k := range envKeys {
		if v := getenv(k.name); v != "" {
			k.set(c, v)
		}
	}
}

func (c *Config) resolvePaths(dir string) {
	c.resolveStorePaths(dir)
	if c.TLS == nil {
		return
	}
	for _, p := range []*string{&c.TLS.Cert, &c.TLS.Key} {
		if *p != "" && !filepath.IsAbs(*p) {
			*p = filepath.Join(dir, *p)
		}
	}
}

// applyDefaults fills every zero value that has a default. Idempotent.
func (c *Config) applyDefaults() {
	setStr(&c.Addr, DefaultAddr)
	setStr(&c.DataDir, DefaultDataDir)
	setInt(&c.Window, DefaultWindow)
	if c.Clustered() {
		// A relay that dies holds its sessions' leases; the other relays offer those
		// webhooks again only when the leases run out, so they must run out soon.
		setDur(&c.LeaseTTL, defaultClusterLeaseTTL)
	}
	setDur(&c.LeaseTTL, defaultLeaseTTL)
	setDur(&c.HandshakeTimeout, defaultHandshakeTimeout)
	setInt(&c.MaxAgentsPerToken, DefaultMaxAgentsPerToken)
	setInt(&c.MaxPendingTunnels, DefaultMaxPendingTunnels)
	setInt(&c.MaxPendingTunnelsPerClient, DefaultMaxPendingTunnelsPerClient)
	setDur(&c.ReadHeaderTimeout, defaultReadHeaderTimeout)
	setDur(&c.BodyTimeout, defaultBodyTimeout)
	setDur(&c.IdleTimeout, defaultIdleTimeout)
	setDur(&c.ShutdownTimeout, defaultShutdownTimeout)
	setDur(&c.KeepDone, defaultKeepDone)
	setInt(&c.KeepDoneMax, defaultKeepDoneMax)
	setDur(&c.KeepDead, defaultKeepDead)
	setInt(&c.KeepDeadMax, defaultKeepDeadMax)
	setDur(&c.RetentionInterval, defaultRetentionInterval)
	c.applyStoreDefaults()
	if c.IngressBuffer == 0 {
		c.IngressBuffer = DefaultIngressBuffer
	}
	setInt(&c.PerClientRequests, DefaultPerClientRequests)
	if c.PerClientBuffer == 0 {
		c.PerClientBuffer = DefaultPerClientBuffer
	}
	c.applySmeeDefaults()
	for i := range c.Endpoints {
		e := &c.Endpoints[i]
		setDur(&e.Retention, DefaultRetention)
		setDur(&e.OutcomeTimeout, DefaultOutcomeTimeout)
		if len(e.Groups) == 0 {
			e.Groups = []string{DefaultGroup}
		}
		if e.MaxBody == 0 {
			e.MaxBody = DefaultMaxBody
		}
		if e.Burst == 0 && e.Rate > 0 {
			e.Burst = max(1, int(e.Rate+0.999999))
		}
	}
}

func setStr(p *string, d string) {
	if *p == "" {
		*p = d
	}
}

func setInt(p *int, d int) {
	if *p == 0 {
		*p = d
	}
}

func setDur(p *time.Duration, d time.Duration) {
	if *p == 0 {
		*p = d
	}
}

// Validate fills defaults and checks every key, returning all problems at once; each names
// the key, what was wrong and what is allowed.
func (c *Config) Validate() error {
	c.applyDefaults()
	var errs []error
	bad := func(key, format string, args ...any) {
		errs = append(errs, fmt.Errorf("%s: "+format, append([]any{key}, args...)...))
	}
	if c.OTel != nil {
		if err := c.OTel.Validate("otel"); err != nil {
			errs = append(errs, err)
		}
	}
	checkAddr := func(key, v string, optional bool) {
		if v == "" && optional {
			return
		}
		if err := validAddr(v); err != nil {
			bad(key, "%q is not a listen address (%v): use host:port, e.g. 127.0.0.1:8080 or :8080", v, err)
		}
	}
	checkAddr("addr", c.Addr, false)
	c.validateStore(bad)
	checkAddr("quic_addr", c.QUICAddr, true)
	checkAddr("admin_addr", c.AdminAddr, true)
	if c.AdminToken != "" && !validHash(c.AdminToken) {
		bad("admin_token", "not a token hash: use \"sha256:\" + 64 lowercase hex digits (hookrelay token prints one)")
	}
	if c.TLS != nil && (c.TLS.Cert == "") != (c.TLS.Key == "") {
		bad("tls", "cert and key go together: set both or neither")
	}
	if c.Window < 1 || c.Window > maxWindow {
		bad("window", "%d is out of range: use 1 to %d", c.Window, maxWindow)
	}
	for _, d := range []struct {
		key string
		v   time.Duration
	}{
		{"lease_ttl", c.LeaseTTL}, {"handshake_timeout", c.HandshakeTimeout},
		{"read_header_timeout", c.ReadHeaderTimeout}, {"body_timeout", c.BodyTimeout},
		{"idle_timeout", c.IdleTimeout}, {"shutdown_timeout", c.ShutdownTimeout},
		{"keep_done", c.KeepDone}, {"keep_dead", c.KeepDead}, {"retention_interval", c.RetentionInterval},
	} {
		if d.v < 0 {
			bad(d.key, "%v is negative: use a positive duration like 30s, 5m or 24h", d.v)
		}
	}
	if c.MaxAgentsPerToken < 0 {
		bad("max_agents_per_token", "%d is negative: use a positive count (default %d)", c.MaxAgentsPerToken, DefaultMaxAgentsPerToken)
	}
	if c.KeepDeadMax < 0 {
		bad("keep_dead_max", "%d is negative: use a positive count", c.KeepDeadMax)
	}
	if c.KeepDoneMax < 0 {
		bad("keep_done_max", "%d is negative: use a positive count", c.KeepDoneMax)
	}
	if c.IngressBuffer < 0 {
		bad("ingress_buffer", "%d is negative: use a size like 512MiB", c.IngressBuffer)
	}
	if c.MaxPendingTunnels < 0 {
		bad("max_pending_tunnels", "%d is negative: use a positive count (default %d)", c.MaxPendingTunnels, DefaultMaxPendingTunnels)
	}
	if c.MaxPendingTunnelsPerClient < 0 {
		bad("max_pending_tunnels_per_client", "%d is negative: use a positive count (default %d)",
			c.MaxPendingTunnelsPerClient, DefaultMaxPendingTunnelsPerClient)
	}
	if c.PerClientRequests < 0 {
		bad("per_client_requests", "%d is negative: use a positive count (default %d)", c.PerClientRequests, DefaultPerClientRequests)
	}
	if c.PerClientBuffer < 0 {
		bad("per_client_buffer", "%d is negative: use a size like 64MiB", c.PerClientBuffer)
	}
	if _, err := verify.ParsePrefixes("trusted_proxies", c.TrustedProxies); err != nil {
		errs = append(errs, err)
	}
	if len(c.Endpoints) == 0 {
		bad("endpoints", "none configured: add at least one, e.g. - name: github")
	}
	seen := map[string]int{}
	for i := range c.Endpoints {
		errs = append(errs, c.Endpoints[i].validate(fmt.Sprintf("endpoints[%d]", i), seen, i)...)
	}
	errs = append(errs, c.validateMTLS()...)
	errs = append(errs, c.validateSmee()...)
	for i := range c.Endpoints {
		if c.Endpoints[i].MaxBody > protocol.DefaultMaxBody {
			bad(fmt.Sprintf("endpoints[%d].max_body", i), "%s is over %s, the largest body the tunnel carries to agents",
				c.Endpoints[i].MaxBody, ByteSize(protocol.DefaultMaxBody))
		}
		if c.IngressBuffer > 0 && c.Endpoints[i].MaxBody > c.IngressBuffer {
			bad(fmt.Sprintf("endpoints[%d].max_body", i), "%s is over ingress_buffer (%s): lower it or raise ingress_buffer",
				c.Endpoints[i].MaxBody, c.IngressBuffer)
		}
		if c.PerClientBuffer > 0 && c.Endpoints[i].MaxBody > c.PerClientBuffer {
			bad(fmt.Sprintf("endpoints[%d].max_body", i), "%s is over per_client_buffer (%s): lower it or raise per_client_buffer",
				c.Endpoints[i].MaxBody, c.PerClientBuffer)
		}
	}
	return errors.Join(errs...)
}
