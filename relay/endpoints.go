package relay

import (
	"crypto/sha256"
	"crypto/subtle"
	"fmt"
	"net/netip"
	"slices"
	"strings"

	"golang.org/x/time/rate"

	"github.com/hookrelay/hookrelay/protocol"
	"github.com/hookrelay/hookrelay/relay/verify"
)

// live is the part of the configuration Reload swaps as a whole: the endpoints with their
// verifiers and limiters, and the settings read per request or per session. Readers load it
// once per request or handshake, so each sees one consistent config.
type live struct {
	cfg     *Config
	eps     map[string]*endpoint
	order   []*endpoint    // config order
	trusted []netip.Prefix // cfg.TrustedProxies
}

// endpoint is an Endpoint ready for use: decoded token hashes, its verifier and rate limiter.
type endpoint struct {
	name     string
	cfg      Endpoint
	tokens   [][sha256.Size]byte
	verifier *verify.Verifier
	limiter  *rate.Limiter // nil when cfg.Rate == 0
	// handshakes answers providers' URL handshakes (handshake.go); nil when none is configured.
	handshakes *handshakes
}

// newLive compiles a validated cfg. An endpoint whose rate and burst did not change keeps its
// limiter from old (nil at start), so a reload does not refill the buckets.
func newLive(cfg *Config, old *live) (*live, error) {
	trusted, err := verify.ParsePrefixes("trusted_proxies", cfg.TrustedProxies)
	if err != nil {
		return nil, err
	}
	lv := &live{cfg: cfg, eps: make(map[string]*endpoint, len(cfg.Endpoints)), trusted: trusted}
	for i := range cfg.Endpoints {
		var prev *endpoint
		if old != nil {
			prev = old.eps[cfg.Endpoints[i].Name]
		}
		e, err := newEndpoint(cfg.Endpoints[i], prev, trusted)
		if err != nil {
			return nil, fmt.Errorf("endpoints[%d]: %w", i, err)
		}
		lv.eps[e.name] = e
		lv.order = append(lv.order, e)
	}
	return lv, nil
}

// newEndpoint compiles c; trusted are the relay's trusted_proxies, which its ip_allow honours.
func newEndpoint(c Endpoint, prev *endpoint, trusted []netip.Prefix) (*endpoint, error) {
	e := &endpoint{name: c.Name, cfg: c, handshakes: newHandshakes(c.Handshake)}
	for i, t := range c.Tokens {
		h, err := protocol.ParseSHA256(t)
		if err != nil {
			return nil, fmt.Errorf("tokens[%d]: %w", i, err)
		}
		e.tokens = append(e.tokens, h)
	}
	v, err := verify.NewTrusting(c.Verify, trusted)
	if err != nil {
		return nil, fmt.Errorf("verify: %w", err)
	}
	e.verifier = v
	switch {
	case c.Rate <= 0:
	case prev != nil && prev.limiter != nil && prev.cfg.Rate == c.Rate && prev.cfg.Burst == c.Burst:
		e.limiter = prev.limiter
	default:
		e.limiter = rate.NewLimiter(rate.Limit(c.Rate), max(1, c.Burst))
	}
	return e, nil
}

// authorize returns the endpoints granted to a token (by its SHA-256): those requested (all,
// when none is requested) that list the token. The hash is compared in constant time with
// every configured hash. When none is granted, reason says why; it never holds the token.
func (lv *live) authorize(sum [sha256.Size]byte, requested []string) (granted []string, reason string) {
	allowed := map[string]bool{}
	var order []string
	for _, e := range lv.order {
		for _, th := range e.tokens {
			if subtle.ConstantTimeCompare(sum[:], th[:]) == 1 && !allowed[e.name] {
				allowed[e.name] = true
				order = append(order, e.name)
			}
		}
	}
	if len(allowed) == 0 {
		return nil, "invalid token"
	}
	if len(requested) == 0 {
		return order, ""
	}
	for _, name := range requested {
		if allowed[name] && !slices.Contains(granted, name) {
			granted = append(granted, name)
		}
	}
	if len(granted) == 0 {
		return nil, "token not allowed for endpoints " + strings.Join(requested, ", ")
	}
	return granted, ""
}

// undeclared names the first of endpoints that does not declare group (its reason for the
// agent), or "" when all do.
func (lv *live) undeclared(group string, endpoints []string) string {
	for _, name := range endpoints {
		e := lv.eps[name]
		if e == nil {
			continue
		}
		if gs := groupsOf(&e.cfg); !slices.Contains(gs, group) {
			return fmt.Sprintf("group %q is not declared on endpoint %q (its groups: %s): add it to the endpoint's groups, or set the agent's group to one of them",
				group, name, strings.Join(gs, ", "))
		}
	}
	return ""
}

// allGroups is every group some endpoint declares, default first.
func (lv *live) allGroups() []string {
	gs := []string{DefaultGroup}
	for _, e := range lv.order {
		for _, g := range groupsOf(&e.cfg) {
			if !slices.Contains(gs, g) {
				gs = append(gs, g)
			}
		}
	}
	return gs
}
