package relay

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/hookrelay/hookrelay/persist"
)

// setup compiles the config, loads the certificate, opens the store, remembers recent
// Standard Webhooks message ids and builds the handlers (New's work after validation).
func (s *Server) setup() error {
	cfg := s.cfg
	lv, err := newLive(cfg, nil)
	if err != nil {
		return err
	}
	s.live.Store(lv)
	warnEndpoints(s.log, lv)
	if cfg.TLS != nil {
		cert, fp, err := loadCertificate(cfg.TLS)
		if err != nil {
			return err
		}
		s.cert.Store(cert)
		s.fingerprint = fp
	}
	s.metricsOpen = cfg.AdminToken == "" && cfg.AdminAddr != "" && isLoopback(cfg.AdminAddr)
	store, err := persist.Open(persist.Options{
		Dir:         cfg.DataDir,
		Logger:      s.log.With("component", "store"),
		KeepDone:    cfg.KeepDone,
		KeepDoneMax: cfg.KeepDoneMax,
		Quota: func(queue string) int64 {
			if e := s.live.Load().eps[queue]; e != nil {
				return int64(e.cfg.Quota)
			}
			return 0
		},
		OnCommit: s.metrics.onCommit,
	})
	if err != nil {
		return fmt.Errorf("open store: %w", err)
	}
	s.store = store
	s.seedDedup(lv)
	h, err := s.newAdmin(cfg.AdminToken)
	if err != nil {
		store.Close()
		return err
	}
	if h != nil {
		s.admin.Store(h)
	}
	s.hub = newHub(s)
	s.handler = s.routes()
	s.metrics.register(s)
	return nil
}

// warnEndpoints logs endpoints that cannot work as configured.
func warnEndpoints(log *slog.Logger, lv *live) {
	for _, e := range lv.order {
		if len(e.cfg.Tokens) == 0 {
			log.Warn("endpoint has no tokens: no agent can receive it", "endpoint", e.name)
		}
		if e.cfg.Sync {
			log.Warn("sync mode is not built yet: webhooks are answered 202", "endpoint", e.name)
		}
	}
}

// seedDedup remembers the message ids accepted inside the replay window of every endpoint
// that verifies Standard Webhooks, from the records in the store.
func (s *Server) seedDedup(lv *live) {
	now := time.Now()
	for _, e := range lv.order {
		win := e.verifier.ReplayWindow()
		if win <= 0 {
			continue
		}
		n, err := s.dedup.seed(s.store, e.name, win, now)
		if err != nil {
			s.log.Warn("could not read recent message ids: replays inside the window may be stored twice",
				"endpoint", e.name, "err", err)
			continue
		}
		if n > 0 {
			s.log.Info("remembered recent Standard Webhooks message ids", "endpoint", e.name, "count", n, "window", win)
		}
	}
}

// httpServer is an http.Server with the relay's limits: ReadHeaderTimeout cuts a client
// that sends its headers slowly (slow-loris); MaxHeaderBytes bounds them. There is no
// server-wide ReadTimeout/WriteTimeout: they would also cut long-lived tunnels, so ingress
// sets per-request deadlines of BodyTimeout instead.
func (s *Server) httpServer(h http.Handler) *http.Server {
	srv := &http.Server{
		Handler:           h,
		ReadHeaderTimeout: s.cfg.ReadHeaderTimeout,
		IdleTimeout:       s.cfg.IdleTimeout,
		MaxHeaderBytes:    maxHeaderBytes,
		ErrorLog:          slog.NewLogLogger(s.log.Handler(), slog.LevelDebug),
		// No BaseContext from Run's ctx: in-flight ingress requests must finish storing at
		// shutdown.
	}
	srv.RegisterOnShutdown(s.closeAdmin)
	return srv
}

// serveHTTP serves srv on ln (with the configured certificate when useTLS) until it is shut
// down; another end is sent on errc.
func (s *Server) serveHTTP(srv *http.Server, ln net.Listener, useTLS bool, errc chan<- error) {
	var err error
	if useTLS {
		srv.TLSConfig = s.serverTLS()
		err = srv.ServeTLS(ln, "", "")
	} else {
		err = srv.Serve(ln)
	}
	if !errors.Is(err, http.ErrServerClosed) {
		errc <- err
	}
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
