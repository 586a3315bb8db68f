package relay

import (
	"fmt"
	"log/slog"

	"github.com/hookrelay/hookrelay/persist"
)

// setup compiles the config, loads the certificate, opens the queue (the embedded Badger
// store), remembers recent Standard Webhooks message ids and builds the handlers (New's work
// after validation).
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
	q, err := OpenBadgerQueue(persist.Options{
		Dir:         cfg.DataDir,
		Logger:      s.log.With("component", "store"),
		KeepDone:    cfg.KeepDone,
		KeepDoneMax: cfg.KeepDoneMax,
		KeepDead:    cfg.KeepDead,
		KeepDeadMax: cfg.KeepDeadMax,
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
	s.queue = q
	s.seedDedup(lv)
	h, err := s.newAdmin(cfg.AdminToken)
	if err != nil {
		q.Close()
		return err
	}
	if h != nil {
		s.admin.Store(h)
	}
	s.hub = newHub(q, s.metrics, &s.live, s.log)
	s.smee = newSmeeHub(cfg.DataDir, s.log.With("component", "smee"))
	s.channels = newChannels(cfg.DataDir, cfg.Channels, s.log.With("component", "channels"))
	s.smeeM = newSmeeMetrics(s.metrics.reg, s.channels.count)
	s.handler = s.routes()
	s.metrics.register(s)
	return nil
}

// warnEndpoints logs endpoints that cannot work as configured.
func warnEndpoints(log *slog.Logger, lv *live) {
	for _, e := range lv.order {
		if len(e.cfg.Tokens) == 0 && !e.cfg.Smee {
			log.Warn("endpoint has no tokens: no agent can receive it", "endpoint", e.name)
		}
		if e.cfg.Sync {
			log.Warn("sync mode is not built yet: webhooks are answered 202", "endpoint", e.name)
		}
	}
}
