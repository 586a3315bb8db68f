package agent

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hookrelay/hookrelay/internal/admin"
	"github.com/hookrelay/hookrelay/internal/tracing"
	"github.com/hookrelay/hookrelay/persist"
	"github.com/hookrelay/hookrelay/protocol"
)

// Agent is one running hookagent: its store, the connection loop to the relay, one deliverer
// per route and the local admin server. New opens the store and the admin listener; Run drives
// everything until its context ends; Close releases what New opened.
type Agent struct {
	// oldRelay is set once a relay refused our protocol version: Hello then says
	// protocol.MinVersion, until a relay sends GoAway (it may come back upgraded).
	oldRelay atomic.Bool
	// static after New
	cfg      *Config
	log      *slog.Logger
	store    *persist.Store
	admin    net.Listener // nil when admin_addr is off
	adminAPI *admin.Handler
	metrics  *metrics
	tracer   *tracing.Tracer // nil: otel off
	series   *admin.Sampler  // the admin UI's charts
	routes   routeSet
	relayTo  string // relay URLs as logged at start (no user info, no query)

	// sync answers (sync.go): holds of sync webhooks not yet attempted, and the deliverers
	// waiting for a Verdict (id → chan bool)
	holds   *syncHolds
	waiting sync.Map

	// reportWake is signalled (non-blocking) when a record reaches a final state, so the
	// current session sends its report.
	reportWake chan struct{}

	// session state, set by the connection loop
	connected atomic.Bool
	transport atomic.Value // string
	relayNow  atomic.Value // string: the relay URL the connection loop dials or is connected to
	tunMu     sync.Mutex
	tun       tunnelInfo // guarded by tunMu

	mu       sync.Mutex
	running  bool
	cancel   context.CancelFunc // cancels Run; set while running
	runDone  chan struct{}      // closed when Run returns
	closed   bool
	storeOK  atomic.Bool
	closeErr error
}

// New opens the store in cfg.DataDir (creating it), resolves the agent id and binds the admin
// address. cfg gets its defaults applied and is validated; it must not change afterwards.
// log nil means slog.Default().
func New(cfg *Config, log *slog.Logger) (*Agent, error) {
	if log == nil {
		log = slog.Default()
	}
	if err := cfg.check(); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
		return nil, fmt.Errorf("create data dir: %w", err)
	}
	if err := cfg.resolveAgentID(); err != nil {
		return nil, err
	}
	a := &Agent{
		cfg:        cfg,
		log:        log.With("agent_id", cfg.AgentID),
		holds:      newSyncHolds(),
		relayTo:    displayURLs(cfg.Relays),
		reportWake: make(chan struct{}, 1),
		metrics:    newMetrics(cfg.Routes),
	}
	a.transport.Store("")
	a.relayNow.Store(displayURL(cfg.Relay))
	for i := range cfg.Routes {
		d, err := newDeliverer(a, &cfg.Routes[i])
		if err != nil {
			return nil, fmt.Errorf("route %s: %w", cfg.Routes[i].Name, err)
		}
		a.routes.add(d)
	}
	st, err := persist.Open(persist.Options{
		Dir:    cfg.DataDir,
		Logger: log,
		Small:  true,
		// Outcomes the relay has not heard of yet must outlive KeepDone: they are reported
		// when a session comes up again.
		HoldUnreported: true,
		// Large bodies are streamed to the target from the store (request.go).
		LeaseBodyMax: sinkOver,
		// Bodies are never changed once decoded (a frame's body is its own, see
		// protocol.Webhook) nor once leased (requests and signatures only read them).
		SharedBodies: true,
		OnCommit:     a.metrics.onCommit,
		Quota:        cfg.storeQuota,
	})
	if err != nil {
		return nil, fmt.Errorf("open store: %w", err)
	}
	a.store = st
	a.storeOK.Store(true)
	a.metrics.watchStore(st)
	a.series = a.newSeries()
	if a.adminAPI, err = a.newAdminAPI(); err != nil {
		st.Close()
		return nil, err
	}
	if a.tracer, err = tracing.New(cfg.OTel, "hookagent", ""); err != nil {
		st.Close()
		return nil, err
	}
	if cfg.AdminAddr != "off" {
		ln, err := net.Listen("tcp", cfg.AdminAddr)
		if err != nil {
			st.Close()
			a.tracer.Close(context.Background())
			return nil, fmt.Errorf("listen admin_addr: %w", err)
		}
		a.admin = ln
	}
	return a, nil
}

// Run connects to the relay, delivers, and serves the admin address until ctx ends, then shuts
// down cleanly: no new webhooks are taken, in-flight deliveries get ShutdownGrace to finish and
// are otherwise handed back to the queue. It returns nil on a clean shutdown. Run may be called
// once.
func (a *Agent) Run(ctx context.Context) error {
	a.mu.Lock()
	if a.closed {
		a.mu.Unlock()
		return persist.ErrClosed
	}
	if a.running {
		a.mu.Unlock()
		return errors.New("agent: run called twice")
	}
	a.running = true
	ctx, cancel := context.WithCancel(ctx)
	a.cancel = cancel
	a.runDone = make(chan struct{})
	a.mu.Unlock()
	defer close(a.runDone)
	defer cancel()

	a.log.Info("agent starting", "relay", a.relayTo, "routes", len(a.routes.all), "admin_addr", a.AdminAddr())
	var wg sync.WaitGroup
	var srv *http.Server
	if a.admin != nil {
		srv = &http.Server{Handler: a.adminHandler(), ReadHeaderTimeout: 10 * time.Second}
		wg.Go(func() {
			if err := srv.Serve(a.admin); err != nil && !errors.Is(err, http.ErrServerClosed) {
				a.log.Error("admin server stopped", "err", err)
			}
		})
	}
	for _, d := range a.routes.all {
		wg.Go(func() { d.run(ctx) })
	}
	wg.Go(func() { a.connectionLoop(ctx) })
	wg.Go(func() { a.series.Run(ctx) })

	<-ctx.Done()
	a.log.Info("agent stopping")
	a.adminAPI.Close() // its event streams would hold up Shutdown
	if srv != nil {
		sctx, scancel := context.WithTimeout(context.Background(), 2*time.Second)
		srv.Shutdown(sctx)
		scancel()
	}
	wg.Wait()
	a.metrics.setTunnel("")
	a.log.Info("agent stopped")
	return nil
}

// Close stops Run if it is running, waits for it, and closes the store and the admin
// listener. Idempotent.
func (a *Agent) Close() error {
	a.mu.Lock()
	if a.closed {
		a.mu.Unlock()
		return a.closeErr
	}
	a.closed = true
	cancel, done := a.cancel, a.runDone
	a.mu.Unlock()
	if cancel != nil {
		cancel()
		<-done
	}
	if a.admin != nil {
		a.admin.Close()
	}
	a.adminAPI.Close()
	tctx, tcancel := context.WithTimeout(context.Background(), 5*time.Second)
	if err := a.tracer.Close(tctx); err != nil {
		a.log.Warn("otel: spans not exported on close", "err", err)
	}
	tcancel()
	a.storeOK.Store(false)
	err := a.store.Close()
	a.mu.Lock()
	a.closeErr = err
	a.mu.Unlock()
	return err
}

// Store is the agent's durable queue (for the admin API and tests).
func (a *Agent) Store() *persist.Store { return a.store }

// Config is the agent's configuration, with defaults applied and the agent id resolved.
func (a *Agent) Config() *Config { return a.cfg }

// AgentID is the id the agent presents to the relay.
func (a *Agent) AgentID() string { return a.cfg.AgentID }

// Connected reports whether a tunnel to the relay is up (welcomed).
func (a *Agent) Connected() bool { return a.connected.Load() }

// Transport names the current tunnel's transport ("websocket", "quic"), or "" when none.
func (a *Agent) Transport() string { return a.transport.Load().(string) }

// AdminAddr is the admin server's actual address (host:port), or "" when disabled.
func (a *Agent) AdminAddr() string {
	if a.admin == nil {
		return ""
	}
	return a.admin.Addr().String()
}

// wakeReports tells the current session that a record reached a final state.
func (a *Agent) wakeReports() {
	select {
	case a.reportWake <- struct{}{}:
	default:
	}
}

// sessionEnv is what a session of this agent needs from it.
func (a *Agent) sessionEnv() sessionEnv {
	return sessionEnv{
		log:        a.log,
		agentID:    a.cfg.AgentID,
		token:      a.cfg.Token,
		endpoints:  a.cfg.endpoints(),
		expose:     a.cfg.exposed(),
		group:      a.cfg.Group,
		holds:      a.holds,
		verdict:    a.verdict,
		relayTo:    a.currentRelay(),
		store:      a.store,
		routes:     &a.routes,
		emit:       a.emit,
		reportWake: a.reportWake,
		version:    a.helloVersion(),
		up:         a.sessionUp,
		down:       a.sessionDown,
	}
}

// helloVersion is the protocol version the next Hello says.
func (a *Agent) helloVersion() uint16 {
	if a.oldRelay.Load() {
		return protocol.MinVersion
	}
	return protocol.Version
}

// sessionUp records a session the relay welcomed, for status and readiness, and tells.
func (a *Agent) sessionUp(transport, session string, since time.Time) {
	a.transport.Store(transport)
	a.setTunnel(tunnelInfo{since: since, session: session})
	a.connected.Store(true)
	a.emit(Event{Kind: EventTunnelUp, Relay: a.currentRelay(), Transport: transport, Session: session,
		AgentID: a.cfg.AgentID})
}

// sessionDown clears what sessionUp recorded.
func (a *Agent) sessionDown() {
	a.connected.Store(false)
	a.transport.Store("")
	a.setTunnel(tunnelInfo{})
}
