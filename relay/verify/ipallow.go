package verify

import (
	"fmt"
	"net/http"
	"net/netip"
	"time"
)

// ipAllow admits only client addresses inside its prefixes.
type ipAllow struct {
	allow   []netip.Prefix
	trusted []netip.Prefix
}

// newIPAllow compiles c; relayTrusted (the relay's top-level trusted_proxies) is trusted
// besides c's own.
func newIPAllow(c *IPAllow, relayTrusted []netip.Prefix) (*ipAllow, error) {
	if len(c.CIDRs) == 0 {
		return nil, fmt.Errorf("verify.ip_allow.cidrs: required: list the allowed networks, e.g. [192.0.2.0/24, 2001:db8::/32]")
	}
	allow, err := ParsePrefixes("verify.ip_allow.cidrs", c.CIDRs)
	if err != nil {
		return nil, err
	}
	trusted, err := ParsePrefixes("verify.ip_allow.trusted_proxies", c.TrustedProxies)
	if err != nil {
		return nil, err
	}
	return &ipAllow{allow: allow, trusted: append(trusted, relayTrusted...)}, nil
}

func (p *ipAllow) check(r *http.Request, _ []byte, _ time.Time) *Failure {
	a, reason := ClientAddr(r, p.trusted)
	if reason == "" && !contains(p.allow, a) {
		reason = "address " + a.String() + " not allowed"
	}
	if reason != "" {
		return &Failure{Status: http.StatusForbidden, Scheme: SchemeIPAllow, Reason: reason}
	}
	return nil
}
