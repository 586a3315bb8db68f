// Package relay is the public side of hookrelay: it accepts webhooks at /h/{endpoint}, stores
// them durably, and pushes them over tunnels to the agents allowed to receive them.
package relay

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hookrelay/hookrelay/internal/admin"
	"github.com/hookrelay/hookrelay/internal/tracing"
	"github.com/hookrelay/hookrelay/persist"
	"github.com/hookrelay/hookrelay/protocol"
	"github.com/hookrelay/hookrelay/relay/verify"
)

// Server states, in order. Ingress answers 503 outside stateServing.
const (
	stateStarting int32 = iota
	stateServing
	stateStopping
)

// Server is one relay process: the HTTP listener, the store and the hub of agent sessions.
// It owns the store (opened by New, closed when Run returns or by Close).
type Server struct {
	// static after New. cfg is the config New was given; Reload never changes the keys that
	// need a restart (addr, data_dir, tls, quic_addr, …), so they are read there. Everything
	// else is read from live.
	cfg          *Config
	log          *slog.Logger
	queue        Queue
	hub          *hub
	handler      http.Handler
	adminHandler http.Handler // served on admin_addr; nil when it is not set
	metrics      *metrics
	series       *admin.Sampler // the admin UI's charts
	dedup        *dedup
	syncs        *syncWaits      // ingress requests waiting for a target's answer (sync.go)
	tracer       *tracing.Tracer // nil: otel off
	metricsOpen  bool            // /metrics without admin_token: admin_addr is loopback

	live            atomic.Pointer[live]            // swapped by Reload
	cert            atomic.Pointer[tls.Certificate] // configured tls cert; swapped by Reload
	admin           atomic.Pointer[admin.Handler]   // nil: admin disabled (no admin_token)
	adminFailedBase atomic.Uint64                   // failed logins of replaced admin handlers
	metricsFailed   atomic.Uint64                   // wrong tokens on /metrics
	reloadMu        sync.Mutex                      // one Reload at a time

	state       atomic.Int32
	storeClosed atomic.Bool
	ingressMem  atomic.Int64 // body bytes reserved by ingress requests in flight
	clients     clients      // per client address: requests and body bytes in flight
	smee        *smeeHub     // smee streams (smee.go)
	smeeM       *smeeMetrics
	channels    *channels // endpoints made at /new (channels.go)

	// guarded by mu
	mu          sync.Mutex
	addr        string // set once listening
	adminAddr   string // set once listening on admin_addr
	quicAddr    string // reported by /v1/info
	fingerprint string // reported by /v1/info
	running     bool
	closed      bool
	cancelRun   context.CancelFunc

	ready     chan struct{} // closed once listening
	runDone   chan struct{} // closed when Run returns
	closeOnce sync.Once
	closeErr  error
}

// New validates cfg, opens the store in cfg.DataDir and prepares the handlers. It listens on
// nothing until Run. A nil log means slog.Default().
func New(cfg *Config, log *slog.Logger) (*Server, error) {
	if log == nil {
		log = slog.Default()
	}
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	s := &Server{
		cfg:     cfg,
		log:     log,
		metrics: newMetrics(),
		dedup:   newDedup(),
		syncs:   newSyncWaits(),
		ready:   make(chan struct{}),
		runDone: make(chan struct{}),
	}
	s.series = s.newSeries()
	if err := s.setup(); err != nil {
		return nil, err
	}
	tr, err := tracing.New(cfg.OTel, "hookrelay", cfg.Version)
	if err != nil {
		s.queue.Close()
		return nil, err
	}
	s.tracer = tr
	return s, nil
}

// routes builds the public handler. /h/ is routed before the mux: ServeMux would clean (and
// redirect) paths with "..", and ingress must see the path exactly as sent.
func (s *Server) routes() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/tunnel", s.handleTunnel)
	mux.HandleFunc("GET /v1/info", s.handleInfo)
	mux.HandleFunc("GET /healthz", s.handleHealthz)
	mux.HandleFunc("GET /readyz", s.handleReadyz)
	mux.HandleFunc("GET /new", s.handleNewChannel) // and HEAD
	if s.cfg.AdminAddr == "" {
		s.adminRoutes(mux)
	} else {
		amux := http.NewServeMux()
		s.adminRoutes(amux)
		s.adminHandler = amux
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if p := r.URL.EscapedPath(); p == "/h" || strings.HasPrefix(p, "/h/") {
			s.handleIngress(w, r)
			return
		}
		mux.ServeHTTP(w, r)
	})
}

// Handler returns the public HTTP handler (ingress, tunnel, info, health), for tests and for
// serving it on another listener.
func (s *Server) Handler() http.Handler { return s.handler }

// Store returns the server's queue of webhooks (for tests and tools).
func (s *Server) Store() Queue { return s.queue }

// Config returns the configuration in force (the last one Reload applied). Do not modify it.
func (s *Server) Config() *Config { return s.live.Load().cfg }

// Addr returns the address the HTTP listener is bound to, or "" before Run listens.
func (s *Server) Addr() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.addr
}

// Ready returns a channel closed once Run is listening and serving.
func (s *Server) Ready() <-chan struct{} { return s.ready }

// SetTunnelInfo sets what GET /v1/info reports for QUIC: its address ("" = none; an empty host
// means the URL's host) and the certificate fingerprint ("sha256:…").
func (s *Server) SetTunnelInfo(quicAddr, fingerprint string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.quicAddr, s.fingerprint = quicAddr, fingerprint
}

// Run listens on cfg.Addr and serves until ctx is cancelled or Close is called, then shuts
// down: new requests get 503, sessions get GoAway and their in-flight webhooks are released,
// in-flight requests finish, and the store is closed. A clean shutdown returns nil.
func (s *Server) Run(ctx context.Context) error {
	s.mu.Lock()
	if s.running || s.closed {
		s.mu.Unlock()
		return errors.New("relay: run called twice or after close")
	}
	s.running = true
	ctx, cancel := context.WithCancel(ctx)
	s.cancelRun = cancel
	s.mu.Unlock()
	defer close(s.runDone)
	defer cancel()

	ln, err := net.Listen("tcp", s.cfg.Addr)
	if err != nil {
		s.closeStore()
		return fmt.Errorf("listen %s: %w", s.cfg.Addr, err)
	}
	adminLn, err := s.listenAdmin()
	if err != nil {
		ln.Close()
		s.closeStore()
		return fmt.Errorf("listen admin_addr %s: %w", s.cfg.AdminAddr, err)
	}
	quicLn, err := s.listenQUIC()
	if err != nil {
		ln.Close()
		if adminLn != nil {
			adminLn.Close()
		}
		s.closeStore()
		return err
	}
	srv := s.httpServer(s.handler)
	srv.TLSConfig = s.ingressTLS()
	adminSrv := s.httpServer(s.adminHandler)

	var wg sync.WaitGroup
	serveErr := make(chan error, 2)
	wg.Go(func() { s.serveHTTP(srv, ln, s.cfg.TLS != nil, serveErr) })
	if adminLn != nil {
		wg.Go(func() { s.serveHTTP(adminSrv, adminLn, s.cfg.TLS != nil && !isLoopback(s.cfg.AdminAddr), serveErr) })
	}
	wg.Go(func() { s.retentionLoop(ctx) })
	wg.Go(func() { s.channelsLoop(ctx) })
	wg.Go(func() { s.series.Run(ctx) })
	if quicLn != nil {
		wg.Go(func() { s.serveQUIC(ctx, quicLn) })
	}

	s.mu.Lock()
	s.addr = ln.Addr().String()
	s.mu.Unlock()
	s.state.Store(stateServing)
	close(s.ready)
	s.log.Info("relay listening", "addr", ln.Addr().String(), "tls", s.cfg.TLS != nil, "endpoints", len(s.live.Load().order))
	s.logAdmin(adminLn)

	var runErr error
	select {
	case <-ctx.Done():
	case runErr = <-serveErr:
		runErr = fmt.Errorf("serve: %w", runErr)
	}
	s.shutdown(srv, adminSrv)
	cancel()
	wg.Wait()
	if err := s.closeStore(); err != nil && runErr == nil {
		runErr = err
	}
	return runErr
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
		if srv.TLSConfig == nil {
			srv.TLSConfig = s.serverTLS()
		}
		err = srv.ServeTLS(ln, "", "")
	} else {
		err = srv.Serve(ln)
	}
	if !errors.Is(err, http.ErrServerClosed) {
		errc <- err
	}
}

// shutdown stops accepting, says GoAway to every session (releasing their webhooks) and
// waits for in-flight requests up to ShutdownTimeout.
func (s *Server) shutdown(srv, adminSrv *http.Server) {
	s.state.Store(stateStopping)
	s.log.Info("relay shutting down")
	s.hub.shutdown()
	s.smee.shutdown()
	ctx, cancel := context.WithTimeout(context.Background(), s.live.Load().cfg.ShutdownTimeout)
	defer cancel()
	for _, srv := range []*http.Server{srv, adminSrv} {
		if err := srv.Shutdown(ctx); err != nil {
			s.log.Warn("in-flight requests cut at shutdown", "err", err)
			srv.Close()
		}
	}
}

func (s *Server) closeStore() error {
	s.closeOnce.Do(func() {
		s.storeClosed.Store(true)
		if err := s.queue.Close(); err != nil {
			s.closeErr = fmt.Errorf("close store: %w", err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := s.tracer.Close(ctx); err != nil {
			s.log.Warn("otel: spans not exported on close", "err", err)
		}
	})
	return s.closeErr
}

// Close stops Run if it is running, waits for it, and closes the store. Idempotent.
func (s *Server) Close() error {
	s.mu.Lock()
	s.closed = true
	cancel, running := s.cancelRun, s.running
	s.mu.Unlock()
	if running {
		cancel()
		<-s.runDone
	}
	return s.closeStore()
}

// serving reports whether the server accepts work: listening, not stopping, store open.
func (s *Server) serving() bool {
	return s.state.Load() == stateServing && !s.storeClosed.Load()
}

func (s *Server) handleInfo(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	info := map[string]string{"version": s.live.Load().cfg.Version, "quic_addr": s.quicAddr, "fingerprint": s.fingerprint}
	s.mu.Unlock()
	if info["version"] == "" {
		info["version"] = "dev"
	}
	writeJSON(w, http.StatusOK, info)
}

func (s *Server) handleHealthz(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Write([]byte("ok\n"))
}

func (s *Server) handleReadyz(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	if !s.serving() {
		w.Header().Set("Retry-After", "5")
		w.WriteHeader(http.StatusServiceUnavailable)
		w.Write([]byte("not ready\n"))
		return
	}
	w.Write([]byte("ready\n"))
}

// handleTunnel upgrades to a WebSocket tunnel and starts the agent session on it.
func (s *Server) handleTunnel(w http.ResponseWriter, r *http.Request) {
	if !s.serving() {
		w.Header().Set("Retry-After", "5")
		writeError(w, http.StatusServiceUnavailable, "relay is not serving: retry later")
		return
	}
	lv := s.live.Load()
	client, reason := verify.ClientAddr(r, lv.trusted)
	if reason != "" { // a trusted proxy sent a malformed header: count the proxy itself
		client, _ = verify.ClientAddr(r, nil)
	}
	slot, no := s.hub.preauth.enter(client, lv.cfg)
	if no != nil {
		s.log.Info("tunnel refused", "transport", "websocket", "remote", r.RemoteAddr, "reason", no.reason)
		retryLater(w, no.status, preauthRetry, no.msg)
		return
	}
	t, err := protocol.AcceptWebSocket(w, r, protocol.WSConfig{MaxFrame: protocol.DefaultMaxFrame})
	if err != nil {
		slot.leave()
		s.log.Debug("tunnel upgrade failed", "remote", r.RemoteAddr, "err", err)
		return
	}
	slot.attach(t)
	s.hub.serveAsync(t, slot)
}

// ServeTunnel runs an agent session on an accepted tunnel (WebSocket or QUIC): handshake,
// dispatch, until the tunnel ends, ctx is cancelled or the server shuts down. It closes t and
// returns when the session is over.
func (s *Server) ServeTunnel(ctx context.Context, t protocol.Tunnel) {
	s.hub.serve(ctx, t, nil)
}

// Agents lists the connected agent sessions.
func (s *Server) Agents() []admin.AgentInfo { return s.hub.agents() }

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	json.NewEncoder(w).Encode(v)
}

func writeError(w http.ResponseWriter, code int, msg string) {
	writeJSON(w, code, map[string]string{"error": msg})
}

// retentionLoop expires webhooks older than their endpoint's retention, and offers again the
// acked ones whose agent stayed away past outcome_timeout (outcome.go), at start and then
// every RetentionInterval, until ctx ends.
func (s *Server) retentionLoop(ctx context.Context) {
	t := time.NewTicker(s.cfg.RetentionInterval)
	defer t.Stop()
	for {
		s.finishStreamOnly(ctx, slices.Concat(s.live.Load().order, s.channels.endpoints()))
		for _, e := range s.live.Load().order {
			if err := s.reoffer(ctx, e.name, e.cfg.OutcomeTimeout); err != nil && ctx.Err() == nil &&
				!errors.Is(err, persist.ErrClosed) {
				s.log.Warn("outcome timeout sweep failed", "endpoint", e.name, "err", err)
			}
			n, err := s.queue.Expire(ctx, e.name, e.cfg.Retention)
			switch {
			case errors.Is(err, persist.ErrClosed), ctx.Err() != nil:
				return
			case err != nil:
				s.log.Warn("retention sweep failed", "endpoint", e.name, "err", err)
			case n > 0:
				s.log.Info("webhooks expired by retention", "endpoint", e.name, "count", n, "retention", e.cfg.Retention)
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}
