package relay

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/hookrelay/hookrelay/persist"
	"github.com/hookrelay/hookrelay/relay/jsqueue"
)

// setup compiles the config, loads the certificate, opens the queue (the embedded Badger
// store), remembers recent Standard Webhooks message ids and builds the handlers (New's work
// after validation).
func (s *Server) setup() error {
	cfg := s.cfg
	if cfg.Clustered() {
		s.log = s.log.With("node_id", cfg.NodeID)
	}
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
	q, err := s.openQueue()
	if err != nil {
		return err
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
	s.hub.syncs = s.syncs
	s.smee = newSmeeHub(cfg.DataDir, s.log.With("component", "smee"))
	s.channels = newChannels(cfg.DataDir, cfg.Channels, s.log.With("component", "channels"))
	s.smeeM = newSmeeMetrics(s.metrics.reg, s.channels.count)
	s.handler = s.routes()
	s.metrics.register(s)
	return nil
}

// openQueue opens the embedded Badger store in data_dir, or in cluster mode (store.nats) the
// cluster's JetStream queue.
func (s *Server) openQueue() (Queue, error) {
	cfg := s.cfg
	quota := func(queue string) int64 {
		if e := s.live.Load().eps[queue]; e != nil {
			return int64(e.cfg.Quota)
		}
		return 0
	}
	if n := cfg.Store.NATS; n != nil {
		o := jsqueue.Options{URLs: n.URLs, Replicas: n.Replicas, Creds: n.Creds, NodeID: cfg.NodeID,
			Groups: s.live.Load().allGroups(), GroupsOf: s.groupsOf, Logger: s.log.With("component", "store"), Quota: quota,
			KeepDone: cfg.KeepDone, KeepDead: cfg.KeepDead, GCInterval: cfg.RetentionInterval,
			KeepDoneMax: cfg.KeepDoneMax, KeepDeadMax: cfg.KeepDeadMax}
		if n.TLS != nil {
			o.TLSCA, o.TLSCert, o.TLSKey = n.TLS.CA, n.TLS.Cert, n.TLS.Key
		}
		ctx, cancel := context.WithTimeout(context.Background(), natsOpenTimeout)
		defer cancel()
		q, err := jsqueue.Open(ctx, o)
		if err != nil {
			return nil, fmt.Errorf("open store.nats: %w", err)
		}
		return q, nil
	}
	q, err := OpenBadgerQueueGroups(persist.Options{
		Dir:         cfg.DataDir,
		Logger:      s.log.With("component", "store"),
		KeepDone:    cfg.KeepDone,
		KeepDoneMax: cfg.KeepDoneMax,
		KeepDead:    cfg.KeepDead,
		KeepDeadMax: cfg.KeepDeadMax,
		Quota:       quota,
		OnCommit:    s.metrics.onCommit,
	}, s.groupsOf)
	if err != nil {
		return nil, fmt.Errorf("open store: %w", err)
	}
	return q, nil
}

// groupsOf is the GroupsFunc of the config in force: an endpoint's groups, or ("") all.
func (s *Server) groupsOf(endpoint string) []string {
	lv := s.live.Load()
	if endpoint == "" {
		return lv.allGroups()
	}
	if e := lv.eps[endpoint]; e != nil {
		return groupsOf(&e.cfg)
	}
	return []string{DefaultGroup} // a smee channel's
}

// natsOpenTimeout bounds connecting to NATS and catching up with the cluster's queue at start.
const natsOpenTimeout = 60 * time.Second

// warnEndpoints logs endpoints that cannot work as configured.
func warnEndpoints(log *slog.Logger, lv *live) {
	for _, e := range lv.order {
		if len(e.cfg.Tokens) == 0 && !e.cfg.Smee {
			log.Warn("endpoint has no tokens: no agent can receive it", "endpoint", e.name)
		}
	}
}
