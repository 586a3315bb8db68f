package verify

import (
	"fmt"
	"net/http"
	"net/netip"
	"strings"
	"time"
)

// ipAllow admits only client addresses inside its prefixes.
type ipAllow struct {
	allow   []netip.Prefix
	trusted []netip.Prefix
}

func newIPAllow(c *IPAllow) (*ipAllow, error) {
	if len(c.CIDRs) == 0 {
		return nil, fmt.Errorf("verify.ip_allow.cidrs: required: list the allowed networks, e.g. [192.0.2.0/24, 2001:db8::/32]")
	}
	allow, err := parsePrefixes("verify.ip_allow.cidrs", c.CIDRs)
	if err != nil {
		return nil, err
	}
	trusted, err := parsePrefixes("verify.ip_allow.trusted_proxies", c.TrustedProxies)
	if err != nil {
		return nil, err
	}
	return &ipAllow{allow: allow, trusted: trusted}, nil
}

// parsePrefixes parses CIDRs; a bare address is its own /32 or /128, and an IPv4-mapped IPv6
// prefix becomes the IPv4 one, since client addresses are unmapped before matching.
func parsePrefixes(key string, list []string) ([]netip.Prefix, error) {
	out := make([]netip.Prefix, 0, len(list))
	for i, s := range list {
		s = strings.TrimSpace(s)
		p, err := netip.ParsePrefix(s)
		if err != nil {
			a, aerr := netip.ParseAddr(s)
			if aerr != nil || a.Zone() != "" {
				return nil, fmt.Errorf("%s[%d]: %q is not a CIDR: use e.g. 192.0.2.0/24, 2001:db8::/32 or one address", key, i, s)
			}
			p = netip.PrefixFrom(a, a.BitLen())
		}
		if a := p.Addr(); a.Is4In6() {
			if p.Bits() < 96 {
				return nil, fmt.Errorf("%s[%d]: %q mixes IPv4-mapped and IPv6 addresses: use the IPv4 form", key, i, s)
			}
			p = netip.PrefixFrom(a.Unmap(), p.Bits()-96)
		}
		out = append(out, p.Masked())
	}
	return out, nil
}

func contains(prefixes []netip.Prefix, a netip.Addr) bool {
	for _, p := range prefixes {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// parseHostAddr parses "ip", "ip:port" or "[ip]:port", drops any zone and unmaps IPv4-mapped
// IPv6 addresses.
func parseHostAddr(s string) (netip.Addr, bool) {
	s = strings.TrimSpace(s)
	a, err := netip.ParseAddr(s)
	if err != nil {
		ap, perr := netip.ParseAddrPort(s)
		if perr != nil {
			// "[::1]" without a port, as some proxies write it.
			inner, ok := strings.CutPrefix(s, "[")
			inner, ok2 := strings.CutSuffix(inner, "]")
			if !ok || !ok2 {
				return netip.Addr{}, false
			}
			if a, err = netip.ParseAddr(inner); err != nil {
				return netip.Addr{}, false
			}
		} else {
			a = ap.Addr()
		}
	}
	return a.WithZone("").Unmap(), true
}

// clientAddr is the socket's address, unless that is a trusted proxy: then the right-most
// X-Forwarded-For entry that is not a trusted proxy (the left-most entry if all are). Entries
// left of the first untrusted one are the sender's own claims and are ignored.
func (p *ipAllow) clientAddr(r *http.Request) (netip.Addr, string) {
	a, ok := parseHostAddr(r.RemoteAddr)
	if !ok {
		return netip.Addr{}, "client address unknown"
	}
	if !contains(p.trusted, a) {
		return a, ""
	}
	var hops []string
	for _, v := range r.Header.Values("X-Forwarded-For") {
		for h := range strings.SplitSeq(v, ",") {
			hops = append(hops, h)
		}
	}
	for i := len(hops) - 1; i >= 0; i-- {
		if strings.TrimSpace(hops[i]) == "" {
			continue
		}
		h, ok := parseHostAddr(hops[i])
		if !ok {
			return netip.Addr{}, "malformed X-Forwarded-For header"
		}
		a = h
		if !contains(p.trusted, a) {
			break
		}
	}
	return a, ""
}

func (p *ipAllow) check(r *http.Request, _ []byte, _ time.Time) *Failure {
	a, reason := p.clientAddr(r)
	if reason == "" && !contains(p.allow, a) {
		reason = "address " + a.String() + " not allowed"
	}
	if reason != "" {
		return &Failure{Status: http.StatusForbidden, Scheme: SchemeIPAllow, Reason: reason}
	}
	return nil
}
