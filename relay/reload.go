package relay

import (
	"crypto/tls"
	"fmt"
	mrand "math/rand/v2"
	"reflect"
	"slices"
	"time"

	"github.com/hookrelay/hookrelay/internal/admin"
	"github.com/hookrelay/hookrelay/protocol"
)

// Reload applies cfg (SIGHUP) without dropping healthy sessions: endpoints and their tokens,
// verify, rate, quota, max_body and retention; admin_token; window, lease_ttl,
// handshake_timeout, body_timeout, ingress_buffer, shutdown_timeout and max_agents_per_token
// (new sessions and requests get them); and the tls certificate, re-read from its files (a
// renewed certificate; /v1/info then reports its fingerprint).
//
// cfg is validated first, and every part that can fail (verifiers, certificate, admin) is
// built before anything changes: a config that fails is refused with a log line saying
// why, and the running one stays in force. Keys that need a restart (addr, quic_addr,
// data_dir, admin_addr, turning tls on or off, read_header_timeout, idle_timeout, keep_done,
// keep_done_max, retention_interval) keep their running values, with a warning naming them.
//
// Live sessions are checked against the new tokens at once: a session whose token no longer
// grants any endpoint it holds is closed with Error{unauthorized, "token revoked"}; one whose
// grants changed otherwise (an endpoint lost or gained) gets GoAway and reconnects within a
// second or two to receive exactly what it is now granted — simpler than changing a running
// dispatcher's endpoints, and its unacked webhooks are released for the next session. So
// does a session holding an endpoint whose ordered key changed: ordered takes effect at once,
// through the new sessions (webhooks the old one had out in its window may still reach the
// agent in any order around the switch). Other sessions are untouched. Webhooks keep waiting in the store for an agent allowed to take them.
func (s *Server) Reload(cfg *Config) error {
	s.reloadMu.Lock()
	defer s.reloadMu.Unlock()
	if err := s.reload(cfg); err != nil {
		s.metrics.reloads.WithLabelValues("refused").Inc()
		s.log.Error("config reload refused: the running config stays in force", "err", err)
		return fmt.Errorf("reload: %w", err)
	}
	s.metrics.reloads.WithLabelValues("applied").Inc()
	return nil
}

func (s *Server) reload(cfg *Config) error {
	if err := cfg.Validate(); err != nil {
		return err
	}
	old := s.live.Load()
	if kept := keepRestartKeys(old.cfg, cfg); len(kept) > 0 {
		s.log.Warn("config reload: these keys need a restart; their running values stay", "keys", kept)
	}
	lv, err := newLive(cfg, old)
	if err != nil {
		return err
	}
	var cert *tls.Certificate
	var fp string
	if cfg.TLS != nil {
		if cert, fp, err = loadCertificate(cfg.TLS); err != nil {
			return err
		}
	}
	var newAdmin *admin.Handler
	adminChanged := cfg.AdminToken != old.cfg.AdminToken
	if adminChanged {
		if newAdmin, err = s.newAdmin(cfg.AdminToken); err != nil {
			return err
		}
	}

	// Nothing can fail from here on.
	if cert != nil {
		if prev := s.cert.Swap(cert); prev == nil || !slices.Equal(prev.Certificate[0], cert.Certificate[0]) {
			s.mu.Lock()
			s.fingerprint = fp
			s.mu.Unlock()
			s.log.Info("tls certificate reloaded", "fingerprint", fp)
		}
	}
	if adminChanged {
		s.swapAdmin(newAdmin)
		s.log.Info("admin token changed: UI sessions must log in again", "admin_enabled", newAdmin != nil)
	}
	revoked, regranted := s.hub.swapLive(lv)
	s.seedDedup(lv)
	warnEndpoints(s.log, lv)
	s.log.Info("config reloaded", "endpoints", len(lv.order), "sessions_revoked", revoked,
		"sessions_regranted", regranted)
	return nil
}

// keepRestartKeys copies into next the running values of the keys a reload cannot change,
// and returns the names of those that differed.
func keepRestartKeys(cur, next *Config) []string {
	var kept []string
	keep := func(key string, dst, src any) {
		d, v := reflect.ValueOf(dst).Elem(), reflect.ValueOf(src).Elem()
		if !reflect.DeepEqual(d.Interface(), v.Interface()) {
			kept = append(kept, key)
			d.Set(v)
		}
	}
	keep("addr", &next.Addr, &cur.Addr)
	keep("quic_addr", &next.QUICAddr, &cur.QUICAddr)
	keep("data_dir", &next.DataDir, &cur.DataDir)
	keep("admin_addr", &next.AdminAddr, &cur.AdminAddr)
	if (next.TLS == nil) != (cur.TLS == nil) {
		kept = append(kept, "tls")
		next.TLS = cur.TLS
	}
	keep("read_header_timeout", &next.ReadHeaderTimeout, &cur.ReadHeaderTimeout)
	keep("idle_timeout", &next.IdleTimeout, &cur.IdleTimeout)
	keep("keep_done", &next.KeepDone, &cur.KeepDone)
	keep("keep_done_max", &next.KeepDoneMax, &cur.KeepDoneMax)
	keep("keep_dead", &next.KeepDead, &cur.KeepDead)
	keep("keep_dead_max", &next.KeepDeadMax, &cur.KeepDeadMax)
	keep("retention_interval", &next.RetentionInterval, &cur.RetentionInterval)
	if next.Version == "" {
		next.Version = cur.Version
	}
	return kept
}

// swapLive installs lv and re-checks every session against it, under mu so that no
// handshake is admitted against the old config meanwhile. It returns how many sessions were
// closed as revoked and how many were asked to reconnect for new grants.
func (h *hub) swapLive(lv *live) (revoked, regranted int) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.live.Store(lv)
	for s := range h.sessions {
		granted, _ := lv.authorize(s.tokenSum, s.requested)
		switch {
		case len(granted) == 0:
			revoked++
			s.log.Warn("token revoked by a config reload: session closed")
			s.stop(protocol.ReasonRevoked, &protocol.Error{Code: protocol.CodeUnauthorized, Reason: "token revoked"})
		case lv.undeclared(s.group, granted) != "":
			revoked++
			reason := lv.undeclared(s.group, granted)
			s.log.Warn("group no longer declared after a config reload: session closed", "reason", reason)
			s.stop(protocol.ReasonRevoked, &protocol.Error{Code: protocol.CodeUnauthorized, Reason: clip(reason, 400)})
		case !sameSet(granted, s.endpoints):
			regranted++
			s.log.Info("endpoints granted changed by a config reload: agent asked to reconnect",
				"was", s.endpoints, "now", granted)
			s.stop(protocol.ReasonGrantsChanged, &protocol.GoAway{
				Reason:         "endpoints granted to this agent changed: reconnect",
				ReconnectAfter: 500*time.Millisecond + mrand.N(time.Second),
			})
		case !sameOrdered(lv.cfg, s):
			regranted++
			s.log.Info("ordered endpoints changed by a config reload: agent asked to reconnect")
			s.stop(protocol.ReasonGrantsChanged, &protocol.GoAway{
				Reason:         "ordered endpoints changed: reconnect",
				ReconnectAfter: 500*time.Millisecond + mrand.N(time.Second),
			})
		}
	}
	return revoked, regranted
}

// sameOrdered reports whether cfg orders the same of s's endpoints as s does.
func sameOrdered(cfg *Config, s *session) bool {
	_, ordered := splitOrdered(cfg, s.endpoints)
	return sameSet(ordered, s.ordered)
}

func sameSet(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for _, x := range a {
		if !slices.Contains(b, x) {
			return false
		}
	}
	return true
}
