package verify

import (
	"fmt"
	"net/http"
	"net/netip"
	"strings"
)

// ParsePrefixes parses CIDRs for the config key key; a bare address is its own /32 or /128,
// and an IPv4-mapped IPv6 prefix becomes the IPv4 one, since client addresses are unmapped
// before matching. Errors name key[i] and say what is allowed.
func ParsePrefixes(key string, list []string) ([]netip.Prefix, error) {
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

// ClientAddr is the one place the relay decides who sent a request. It is the socket's
// address, unless that is inside trusted (the operator's proxies): then the right-most
// forwarded hop that is not a trusted proxy (the left-most hop if all are). Hops left of
// the first untrusted one are the sender's own claims and are ignored.
//
// The hops come from X-Forwarded-For when a trusted proxy sent one, else from Forwarded
// (RFC 7239, its for= parameters). A proxy that writes only Forwarded must therefore drop a
// sender's X-Forwarded-For. reason is "" on success; else the address is invalid and reason
// says why (an unparsable socket address, or a malformed header from a trusted proxy).
func ClientAddr(r *http.Request, trusted []netip.Prefix) (a netip.Addr, reason string) {
	a, ok := parseHostAddr(r.RemoteAddr)
	if !ok {
		return netip.Addr{}, "client address unknown"
	}
	if !contains(trusted, a) {
		return a, ""
	}
	hops, header := forwardedHops(r.Header)
	for i := len(hops) - 1; i >= 0; i-- {
		if strings.TrimSpace(hops[i]) == "" {
			continue
		}
		h, ok := parseHostAddr(hops[i])
		if !ok {
			return netip.Addr{}, "malformed " + header + " header"
		}
		a = h
		if !contains(trusted, a) {
			break
		}
	}
	return a, ""
}

// forwardedHops lists the hops a request names, oldest first: X-Forwarded-For's entries, or
// when there is none, the for= values of Forwarded (quotes removed; a hop without for=, or
// "unknown" and obfuscated identifiers, give an entry that does not parse).
func forwardedHops(h http.Header) (hops []string, header string) {
	if xff := h.Values("X-Forwarded-For"); len(xff) > 0 {
		for _, v := range xff {
			for hop := range strings.SplitSeq(v, ",") {
				hops = append(hops, hop)
			}
		}
		return hops, "X-Forwarded-For"
	}
	for _, v := range h.Values("Forwarded") {
		for elem := range strings.SplitSeq(v, ",") {
			if strings.TrimSpace(elem) == "" {
				continue
			}
			hop := "?"
			for pair := range strings.SplitSeq(elem, ";") {
				k, val, _ := strings.Cut(strings.TrimSpace(pair), "=")
				if strings.EqualFold(k, "for") {
					hop = strings.Trim(strings.TrimSpace(val), `"`)
				}
			}
			hops = append(hops, hop)
		}
	}
	return hops, "Forwarded"
}
