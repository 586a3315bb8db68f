// Package relay is the public side of hookrelay: it accepts webhooks at /h/{endpoint}, stores
// them durably, and pushes them over tunnels to the agents allowed to receive them.
package relay

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hookrelay/hookrelay/persist"
	"github.com/hookrelay/hookrelay/protocol"
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
	// static after New
	cfg     *Config
	log     *slog.Logger
	store   *persist.Store
	eps     map[string]*endpoint
	hub     *hub
	handler http.Handler

	state       atomic.Int32
	storeClosed atomic.Bool
	ingressMem  atomic.Int64 // body bytes reserved by ingress requests in flight

	// guarded by mu
	mu          sync.Mutex
	addr        string // set once listening
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
	eps := make(map[string]*endpoint, len(cfg.Endpoints))
	for i := range cfg.Endpoints {
		e, err := newEndpoint(cfg.Endpoints[i])
		if err != nil {
			return nil, fmt.Errorf("endpoints[%d]: %w", i, err)
		}
		eps[e.name] = e
		if len(e.cfg.Tokens) == 0 {
			log.Warn("endpoint has no tokens: no agent can receive it", "endpoint", e.name)
		}
		if e.cfg.Sync {
			log.Warn("sync mode is not built yet: webhooks are answered 202", "endpoint", e.name)
		}
	}
	store, err := persist.Open(persist.Options{
		Dir:         cfg.DataDir,
		Logger:      log.With("component", "store"),
		KeepDone:    cfg.KeepDone,
		KeepDoneMax: cfg.KeepDoneMax,
		Quota: func(queue string) int64 {
			if e := eps[queue]; e != nil {
				return int64(e.cfg.Quota)
			}
			return 0
		},
	})
	if err != nil {
		return nil, fmt.Errorf("open store: %w", err)
	}
	s := &Server{
		cfg:     cfg,
		log:     log,
		store:   store,
		eps:     eps,
		ready:   make(chan struct{}),
		runDone: make(chan struct{}),
	}
	s.hub = newHub(s)
	s.handler = s.routes()
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

// Store returns the server's store, for the admin API and metrics.
func (s *Server) Store() *persist.Store { return s.store }

// Config returns the validated configuration. Do not modify it.
func (s *Server) Config() *Config { return s.cfg }

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
	srv := &http.Server{
		Handler:           s.handler,
		ReadHeaderTimeout: s.cfg.ReadHeaderTimeout,
		// No server-wide ReadTimeout/WriteTimeout: they would also cut long-lived tunnels.
		// Ingress sets per-request deadlines of BodyTimeout instead.
		IdleTimeout:    s.cfg.IdleTimeout,
		MaxHeaderBytes: maxHeaderBytes,
		ErrorLog:       slog.NewLogLogger(s.log.Handler(), slog.LevelDebug),
		// No BaseContext from ctx: in-flight ingress requests must finish storing at shutdown.
	}

	var wg sync.WaitGroup
	serveErr := make(chan error, 1)
	wg.Go(func() {
		var err error
		if s.cfg.TLS != nil && s.cfg.TLS.Cert != "" {
			err = srv.ServeTLS(ln, s.cfg.TLS.Cert, s.cfg.TLS.Key)
		} else {
			err = srv.Serve(ln)
		}
		if !errors.Is(err, http.ErrServerClosed) {
			serveErr <- err
		}
	})
	wg.Go(func() { s.retentionLoop(ctx) })

	s.mu.Lock()
	s.addr = ln.Addr().String()
	s.mu.Unlock()
	s.state.Store(stateServing)
	close(s.ready)
	s.log.Info("relay listening", "addr", ln.Addr().String(), "tls", s.cfg.TLS != nil, "endpoints", len(s.eps))

	var runErr error
	select {
	case <-ctx.Done():
	case runErr = <-serveErr:
		runErr = fmt.Errorf("serve: %w", runErr)
	}
	s.shutdown(srv)
	cancel()
	wg.Wait()
	if err := s.closeStore(); err != nil && runErr == nil {
		runErr = err
	}
	return runErr
}

// shutdown stops accepting, says GoAway to every session (releasing their webhooks) and
// waits for in-flight requests up to ShutdownTimeout.
func (s *Server) shutdown(srv *http.Server) {
	s.state.Store(stateStopping)
	s.log.Info("relay shutting down")
	s.hub.shutdown()
	ctx, cancel := context.WithTimeout(context.Background(), s.cfg.ShutdownTimeout)
	defer cancel()
	if err := srv.Shutdown(ctx); err != nil {
		s.log.Warn("in-flight requests cut at shutdown", "err", err)
		srv.Close()
	}
}

func (s *Server) closeStore() error {
	s.closeOnce.Do(func() {
		s.storeClosed.Store(true)
		if err := s.store.Close(); err != nil {
			s.closeErr = fmt.Errorf("close store: %w", err)
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
	info := map[string]string{"version": s.cfg.Version, "quic_addr": s.quicAddr, "fingerprint": s.fingerprint}
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

// handleTunnel upgrades to a WebSocket tunnel and runs the agent session on it until it ends.
func (s *Server) handleTunnel(w http.ResponseWriter, r *http.Request) {
	if !s.serving() {
		w.Header().Set("Retry-After", "5")
		writeError(w, http.StatusServiceUnavailable, "relay is not serving: retry later")
		return
	}
	t, err := protocol.AcceptWebSocket(w, r, protocol.WSConfig{MaxFrame: protocol.DefaultMaxFrame})
	if err != nil {
		s.log.Debug("tunnel upgrade failed", "remote", r.RemoteAddr, "err", err)
		return
	}
	s.ServeTunnel(r.Context(), t)
}

// ServeTunnel runs an agent session on an accepted tunnel (WebSocket or QUIC): handshake,
// dispatch, until the tunnel ends, ctx is cancelled or the server shuts down. It closes t and
// returns when the session is over.
func (s *Server) ServeTunnel(ctx context.Context, t protocol.Tunnel) {
	s.hub.serve(ctx, t)
}

// Agents lists the connected agent sessions.
func (s *Server) Agents() []AgentInfo { return s.hub.agents() }

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	json.NewEncoder(w).Encode(v)
}

func writeError(w http.ResponseWriter, code int, msg string) {
	writeJSON(w, code, map[string]string{"error": msg})
}

// retentionLoop expires webhooks older than their endpoint's retention, at start and then
// every RetentionInterval, until ctx ends.
func (s *Server) retentionLoop(ctx context.Context) {
	t := time.NewTicker(s.cfg.RetentionInterval)
	defer t.Stop()
	for {
		for _, e := range s.eps {
			n, err := s.store.Expire(e.name, e.cfg.Retention)
			switch {
			case errors.Is(err, persist.ErrClosed):
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
