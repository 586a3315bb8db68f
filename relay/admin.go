package relay

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"

	"github.com/hookrelay/hookrelay/internal/admin"
	"github.com/hookrelay/hookrelay/persist"
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
		Store:     adminStore{s.queue},
		Agents:    s.agentsInfo,
		Status:    s.adminStatus,
		Series:    s.series,
		TokenHash: tokenHash,
		OnReplay:  s.onReplay,
		Log:       s.log,
	})
}

// adminStore is the queue as the admin API sees it: every consumer group at once, and every
// record with its body.
type adminStore struct{ q Queue }

func (a adminStore) List(f persist.Filter) ([]*persist.Record, error) {
	return a.q.List(context.Background(), f)
}

func (a adminStore) Get(id string) (*persist.Record, error) {
	ctx := context.Background()
	r, err := a.q.Get(ctx, id)
	if err != nil || r.Body != nil || r.BodyLen == 0 {
		return r, err
	}
	rc, err := a.q.Body(ctx, id)
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	if r.Body, err = io.ReadAll(rc); err != nil {
		return nil, fmt.Errorf("read body of %s: %w", id, err)
	}
	return r, nil
}

func (a adminStore) Replay(id string) error { return a.q.Replay(context.Background(), "", id) }

func (a adminStore) ReplayDead(queue string) (int, error) {
	return a.q.ReplayDead(context.Background(), "", queue)
}

func (a adminStore) Delete(id string) error { return a.q.Delete(context.Background(), "", id) }

func (a adminStore) ReplayGroup(group, id string) error {
	return a.q.Replay(context.Background(), group, id)
}

func (a adminStore) ReplayDeadGroup(group, queue string) (int, error) {
	return a.q.ReplayDead(context.Background(), group, queue)
}

func (a adminStore) DeleteGroup(group, id string) error {
	return a.q.Delete(context.Background(), group, id)
}

func (a adminStore) Stats() []persist.QueueStats {
	st, _ := a.q.Stats(context.Background()) // none on error: the status shows no queues
	return st
}

// swapAdmin installs h (nil: disabled), closing the one it replaces and keeping its counts of
// failed logins and refused requests.
func (s *Server) swapAdmin(h *admin.Handler) {
	if old := s.admin.Swap(h); old != nil {
		s.adminFailedBase.Add(old.FailedLogins())
		s.metrics.adminRefusedBase.Add(old.Refused())
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

// adminRefused counts admin requests refused as cross-site or with a foreign Host, by the
// current and the replaced admin handlers.
func (s *Server) adminRefused() uint64 {
	n := s.metrics.adminRefusedBase.Load()
	if h := s.admin.Load(); h != nil {
		n += h.Refused()
	}
	return n
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

// logAdmin says at start where /admin/ and /metrics are served, or why they are not.
func (s *Server) logAdmin(adminLn net.Listener) {
	where := "addr"
	if adminLn != nil {
		where = adminLn.Addr().String()
	}
	switch {
	case s.cfg.AdminToken != "":
		s.log.Info("admin API and metrics served (admin token required)", "on", where)
	case s.metricsOpen:
		s.log.Warn("admin API disabled: admin_token is not set; /metrics served without a token on loopback", "on", where)
	default:
		s.log.Warn("admin API and /metrics disabled: admin_token is not set (hookrelay token prints one)")
	}
}

// agentsInfo lists the connected agents; in cluster mode each names this relay (node_id),
// since the cluster's relays share one admin API behind a load balancer.
func (s *Server) agentsInfo() []admin.AgentInfo {
	list := s.hub.agents()
	if s.cfg.Clustered() {
		for i := range list {
			list[i].Node = s.cfg.NodeID
		}
	}
	return list
}
