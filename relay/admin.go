package relay

import (
	"crypto/sha256"
	"crypto/subtle"
	"net"
	"net/http"
	"strings"

	"github.com/hookrelay/hookrelay/internal/admin"
	"github.com/hookrelay/hookrelay/protocol"
)

// adminRoutes adds /admin/ (API and UI) and /metrics to mux: the public one, or the one on
// admin_addr when it is set.
func (s *Server) adminRoutes(mux *http.ServeMux) {
	mux.HandleFunc("/admin/", s.serveAdmin)
	mux.HandleFunc("GET /metrics", s.serveMetrics)
}

// newAdmin builds the admin handler for tokenHash; nil (admin disabled) when it is "".
func (s *Server) newAdmin(tokenHash string) (*admin.Handler, error) {
	if tokenHash == "" {
		return nil, nil
	}
	return admin.New(admin.Config{
		Side:      admin.Relay,
		Store:     s.store,
		Agents:    s.adminAgents,
		Status:    s.adminStatus,
		TokenHash: tokenHash,
		OnReplay:  s.onReplay,
		Log:       s.log,
	})
}

// swapAdmin installs h (nil: disabled), closing the one it replaces and keeping its count of
// failed logins.
func (s *Server) swapAdmin(h *admin.Handler) {
	if old := s.admin.Swap(h); old != nil {
		s.adminFailedBase.Add(old.FailedLogins())
		old.Close()
	}
}

// closeAdmin ends the admin handler's event streams, so that a shutdown need not wait for them.
func (s *Server) closeAdmin() {
	if h := s.admin.Load(); h != nil {
		h.Close()
	}
}

func (s *Server) serveAdmin(w http.ResponseWriter, r *http.Request) {
	h := s.admin.Load()
	if h == nil {
		writeError(w, http.StatusNotFound, "admin API disabled: set admin_token (hookrelay token prints one)")
		return
	}
	h.ServeHTTP(w, r)
}

// serveMetrics serves /metrics to "Authorization: Bearer <admin token>"; without admin_token
// only on a loopback admin_addr (see Config.AdminToken).
func (s *Server) serveMetrics(w http.ResponseWriter, r *http.Request) {
	tokenHash := s.live.Load().cfg.AdminToken
	switch {
	case tokenHash == "" && !s.metricsOpen:
		writeError(w, http.StatusNotFound, "metrics disabled: set admin_token, or admin_addr on loopback")
		return
	case tokenHash != "" && !bearerMatches(r, tokenHash):
		if r.Header.Get("Authorization") != "" {
			s.metricsFailed.Add(1)
			s.log.Warn("wrong admin token", "remote", r.RemoteAddr, "path", r.URL.Path)
		}
		w.Header().Set("WWW-Authenticate", `Bearer realm="hookrelay metrics"`)
		writeError(w, http.StatusUnauthorized, "admin token required: Authorization: Bearer <token>")
		return
	}
	s.metrics.handler().ServeHTTP(w, r)
}

// bearerMatches reports whether r carries "Authorization: Bearer <token>" whose SHA-256 is
// tokenHash ("sha256:" + hex), compared in constant time.
func bearerMatches(r *http.Request, tokenHash string) bool {
	scheme, tok, _ := strings.Cut(r.Header.Get("Authorization"), " ")
	if !strings.EqualFold(scheme, "Bearer") {
		return false
	}
	want, err := protocol.ParseSHA256(tokenHash)
	if err != nil {
		return false
	}
	sum := sha256.Sum256([]byte(strings.TrimSpace(tok)))
	return subtle.ConstantTimeCompare(sum[:], want[:]) == 1
}

// adminFailures counts wrong admin tokens: the admin handlers' (current and replaced) and
// /metrics'.
func (s *Server) adminFailures() uint64 {
	n := s.adminFailedBase.Load() + s.metricsFailed.Load()
	if h := s.admin.Load(); h != nil {
		n += h.FailedLogins()
	}
	return n
}

func (s *Server) adminAgents() []admin.AgentInfo {
	list := s.hub.agents()
	out := make([]admin.AgentInfo, len(list))
	for i, a := range list {
		out[i] = admin.AgentInfo{AgentID: a.AgentID, Endpoints: a.Endpoints, Transport: a.Transport,
			ConnectedAt: a.ConnectedAt, InFlight: a.InFlight}
	}
	return out
}

func (s *Server) adminStatus() any {
	lv := s.live.Load()
	names := make([]string, len(lv.order))
	for i, e := range lv.order {
		names[i] = e.name
	}
	s.mu.Lock()
	quicAddr := s.quicAddr
	s.mu.Unlock()
	v := lv.cfg.Version
	if v == "" {
		v = "dev"
	}
	return map[string]any{
		"version":   v,
		"addr":      s.Addr(),
		"quic_addr": quicAddr,
		"tls":       lv.cfg.TLS != nil,
		"endpoints": names,
		"agents":    len(s.hub.agents()),
	}
}

// onReplay wakes every session's dispatcher after an admin replay, so the replayed webhooks
// go out at once (their frames carry the replay mark from the record).
func (s *Server) onReplay(string) { s.hub.wakeAll() }

// listenAdmin listens on admin_addr when it is set (nil otherwise). Run serves it with TLS
// when tls is configured and the address is not loopback.
func (s *Server) listenAdmin() (net.Listener, error) {
	if s.cfg.AdminAddr == "" {
		return nil, nil
	}
	ln, err := net.Listen("tcp", s.cfg.AdminAddr)
	if err != nil {
		return nil, err
	}
	s.mu.Lock()
	s.adminAddr = ln.Addr().String()
	s.mu.Unlock()
	return ln, nil
}

// AdminAddr returns the address the admin listener is bound to: "" before Run listens, or
// when admin_addr is not set (then /admin/ and /metrics are on Addr).
func (s *Server) AdminAddr() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.adminAddr
}
