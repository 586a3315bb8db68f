package admin

import (
	"net"
	"net/http"
	"net/url"
	"strings"
)

// guard refuses, with 403 and a reason, what a hostile web page can make a browser send:
//
//   - a state change (any method but GET, HEAD, OPTIONS) from another origin: Sec-Fetch-Site
//     other than same-origin/none, or (without Sec-Fetch-Site) an Origin that is not this
//     address's own. This is net/http's CrossOriginProtection rule, with a reason and a count. A page can POST
//     to any address with mode "no-cors" without reading the answer; curl and scripts send
//     neither header and pass.
//   - without a token, a Host that is not loopback (localhost, 127.0.0.0/8, ::1) or the address
//     the connection reached: DNS rebinding points the attacker's name at 127.0.0.1 so that
//     its page reads the API "same-origin", but the browser still sends the attacker's name
//     as Host. With a token there is nothing to gain that way: the page has no token, and the
//     session cookie belongs to the real name.
//
// It runs before authorize, so a refused request never touches a session. /healthz, /readyz
// and /metrics are served outside this handler and stay open to any Host (probes and scrapers
// use whatever name they were given). It reports whether the request may go on.
func (h *Handler) guard(w http.ResponseWriter, r *http.Request) bool {
	if h.tokenHash == nil && !hostAllowed(r) {
		h.refuse(w, r, "refused: Host "+quoteHost(r.Host)+
			" is not a loopback name or address (a DNS-rebinding page?); open the admin UI at http://127.0.0.1:PORT/admin/")
		return false
	}
	switch r.Method {
	case http.MethodGet, http.MethodHead, http.MethodOptions:
		return true
	}
	switch site := r.Header.Get("Sec-Fetch-Site"); site {
	case "same-origin", "none":
		// The browser vouches for the origin (scripts cannot set Sec-Fetch-*), which also holds
		// behind a proxy that rewrites Host.
		return true
	case "":
		// Old browsers, and plain http to a non-loopback address, send no Sec-Fetch-Site:
		// fall back to Origin, which every browser sends on a cross-origin state change.
		if origin := r.Header.Get("Origin"); origin != "" && !sameOrigin(origin, r.Host) {
			h.refuse(w, r, "refused: a cross-site request (Origin "+origin+" is not this admin address's origin) may not change state here")
			return false
		}
	default:
		h.refuse(w, r, "refused: a cross-site request (Sec-Fetch-Site: "+site+") may not change state here")
		return false
	}
	return true
}

// Refused counts requests the guard turned away (cross-site state changes, foreign Host
// headers). The owner can export it as a metric.
func (h *Handler) Refused() uint64 { return h.refused.Load() }

func (h *Handler) refuse(w http.ResponseWriter, r *http.Request, msg string) {
	h.refused.Add(1)
	h.log.Warn("admin request refused", "remote", r.RemoteAddr, "method", r.Method, "path", r.URL.Path,
		"host", r.Host, "origin", r.Header.Get("Origin"), "sec_fetch_site", r.Header.Get("Sec-Fetch-Site"))
	writeError(w, http.StatusForbidden, msg)
}

// sameOrigin reports whether an Origin header names host (the request's Host, host[:port]).
// The scheme is not compared: Host does not carry it, and a page on the same host and port
// is this server.
func sameOrigin(origin, host string) bool {
	u, err := url.Parse(origin)
	if err != nil || u.Host == "" || (u.Scheme != "http" && u.Scheme != "https") {
		return false // includes "null" (sandboxed frames, file: pages)
	}
	return strings.EqualFold(u.Host, host)
}

// hostAllowed reports whether r's Host names a loopback host (localhost or a loopback address,
// any port) or the IP address the connection reached. An empty Host (HTTP/1.0) is allowed: no
// browser sends one.
func hostAllowed(r *http.Request) bool {
	host := hostOnly(r.Host)
	if host == "" || strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	if ip == nil {
		return false // a name other than localhost: what DNS rebinding sends
	}
	if ip.IsLoopback() {
		return true
	}
	if la, ok := r.Context().Value(http.LocalAddrContextKey).(net.Addr); ok {
		if tcp, ok := la.(*net.TCPAddr); ok && tcp.IP.Equal(ip) {
			return true
		}
	}
	return false
}

// hostOnly strips the port and IPv6 brackets from a Host header.
func hostOnly(hostport string) string {
	if h, _, err := net.SplitHostPort(hostport); err == nil {
		return h
	}
	return strings.TrimSuffix(strings.TrimPrefix(hostport, "["), "]")
}

// quoteHost quotes a Host header for an error message, cut short: it is attacker-chosen.
func quoteHost(h string) string {
	if len(h) > 100 {
		h = h[:100] + "…"
	}
	return `"` + h + `"`
}

// CheckTokenHash reports whether s is a token hash as Config.TokenHash takes it ("sha256:" +
// 64 hex digits), so that a config can refuse a bad one with the key's name.
func CheckTokenHash(s string) error {
	_, err := parseTokenHash(s)
	return err
}

// RequireToken serves next only to requests with "Authorization: Bearer <token>" of the
// handler's token (a wrong one counts as a failed login), answering 401 otherwise; without a
// token it is next itself. The agent guards its /metrics with it.
func (h *Handler) RequireToken(next http.Handler) http.Handler {
	if h.tokenHash == nil {
		return next
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		scheme, tok, _ := strings.Cut(r.Header.Get("Authorization"), " ")
		if strings.EqualFold(scheme, "Bearer") && h.checkToken(strings.TrimSpace(tok)) {
			next.ServeHTTP(w, r)
			return
		}
		if r.Header.Get("Authorization") != "" {
			h.failed.Add(1)
			h.log.Warn("wrong admin token", "remote", r.RemoteAddr, "path", r.URL.Path)
		}
		w.Header().Set("WWW-Authenticate", `Bearer realm="hookrelay admin"`)
		writeError(w, http.StatusUnauthorized, "admin token required: Authorization: Bearer <token>")
	})
}
