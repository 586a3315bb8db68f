package relay

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"errors"
	"fmt"
	mrand "math/rand/v2"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/hookrelay/hookrelay/protocol"
)

// maxAgentID bounds the agent id an agent may claim.
const maxAgentID = 256

// AgentInfo describes one connected agent session (admin API: GET agents).
type AgentInfo struct {
	AgentID     string    `json:"agent_id"`
	SessionID   string    `json:"session_id"`
	Endpoints   []string  `json:"endpoints"`
	Transport   string    `json:"transport"`
	Remote      string    `json:"remote"`
	ConnectedAt time.Time `json:"connected_at"`
	InFlight    int       `json:"in_flight"`
}

// hub keeps the connected agent sessions: it authenticates new tunnels, replaces a session
// when its agent id connects again, and ends them all on shutdown.
type hub struct {
	// static after construction
	srv *Server
	eps []*endpoint // in config order

	wg sync.WaitGroup // one per serve call in progress

	// guarded by mu
	mu       sync.Mutex
	closing  bool
	pending  map[protocol.Tunnel]struct{} // tunnels still in their handshake
	sessions map[*session]struct{}
	byAgent  map[string]*session
}

func newHub(srv *Server) *hub {
	h := &hub{
		srv:      srv,
		pending:  map[protocol.Tunnel]struct{}{},
		sessions: map[*session]struct{}{},
		byAgent:  map[string]*session{},
	}
	for _, e := range srv.cfg.Endpoints {
		h.eps = append(h.eps, srv.eps[e.Name])
	}
	return h
}

// serve runs one tunnel from handshake to end; it closes t.
func (h *hub) serve(ctx context.Context, t protocol.Tunnel) {
	h.mu.Lock()
	if h.closing {
		h.mu.Unlock()
		t.WriteFrame(goAway())
		t.Close()
		return
	}
	h.wg.Add(1)
	h.pending[t] = struct{}{}
	h.mu.Unlock()
	defer h.wg.Done()
	defer t.Close()

	log := h.srv.log.With("transport", t.Transport(), "remote", t.RemoteAddr())
	hello, err := h.handshake(t)
	h.mu.Lock()
	delete(h.pending, t)
	h.mu.Unlock()
	if err != nil {
		log.Info("tunnel handshake failed", "err", err)
		return
	}
	granted, reason := h.authorize(hello)
	if len(granted) == 0 {
		log.Warn("tunnel refused", "agent", hello.AgentID, "reason", reason)
		t.WriteFrame(&protocol.Error{Code: protocol.CodeUnauthorized, Reason: reason})
		return
	}
	s := newSession(h, t, hello.AgentID, granted, log)
	err = t.WriteFrame(&protocol.Welcome{
		SessionID:  s.id,
		Endpoints:  granted,
		Window:     uint32(h.srv.cfg.Window),
		MaxFrame:   protocol.DefaultMaxFrame,
		ServerTime: time.Now(),
	})
	if err != nil {
		s.log.Info("send welcome failed", "err", err)
		return
	}
	if !h.register(s) {
		t.WriteFrame(goAway())
		return
	}
	stopOnCancel := context.AfterFunc(ctx, func() { s.stop(nil) })
	s.log.Info("agent connected", "endpoints", granted)
	s.run()
	stopOnCancel()
	h.unregister(s)
	s.release()
	s.log.Info("agent disconnected")
}

// handshake reads the agent's Hello under HandshakeTimeout and checks its version.
func (h *hub) handshake(t protocol.Tunnel) (*protocol.Hello, error) {
	timer := time.AfterFunc(h.srv.cfg.HandshakeTimeout, func() { t.Close() })
	f, err := t.ReadFrame()
	if !timer.Stop() {
		return nil, fmt.Errorf("no hello within %v", h.srv.cfg.HandshakeTimeout)
	}
	if err != nil {
		return nil, fmt.Errorf("read hello: %w", err)
	}
	hello, ok := f.(*protocol.Hello)
	if !ok {
		t.WriteFrame(&protocol.Error{Code: protocol.CodeProtocol, Reason: "expected hello"})
		return nil, fmt.Errorf("first frame is %T, not hello", f)
	}
	if hello.Version != protocol.Version {
		t.WriteFrame(&protocol.Error{Code: protocol.CodeVersion,
			Reason: fmt.Sprintf("protocol version %d is not supported: this relay speaks %d", hello.Version, protocol.Version)})
		return nil, fmt.Errorf("agent speaks protocol version %d", hello.Version)
	}
	if len(hello.AgentID) > maxAgentID {
		t.WriteFrame(&protocol.Error{Code: protocol.CodeProtocol, Reason: fmt.Sprintf("agent id over %d bytes", maxAgentID)})
		return nil, errors.New("agent id too long")
	}
	return hello, nil
}

// authorize returns the endpoints granted to hello: those it requested (all, when it
// requested none) that its token may receive. The token's hash is compared in constant time
// with every configured hash. When none is granted, reason says why.
func (h *hub) authorize(hello *protocol.Hello) (granted []string, reason string) {
	sum := sha256.Sum256([]byte(hello.Token))
	allowed := map[string]bool{}
	var order []string
	for _, e := range h.eps {
		for _, th := range e.tokens {
			if subtle.ConstantTimeCompare(sum[:], th[:]) == 1 && !allowed[e.name] {
				allowed[e.name] = true
				order = append(order, e.name)
			}
		}
	}
	if len(allowed) == 0 {
		return nil, "invalid token"
	}
	if len(hello.Endpoints) == 0 {
		return order, ""
	}
	for _, name := range hello.Endpoints {
		if allowed[name] && !slices.Contains(granted, name) {
			granted = append(granted, name)
		}
	}
	if len(granted) == 0 {
		return nil, "token not allowed for endpoints " + strings.Join(hello.Endpoints, ", ")
	}
	return granted, ""
}

// register adds s, replacing (closing) a session of the same agent id. False when shutting down.
func (h *hub) register(s *session) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closing {
		return false
	}
	if old := h.byAgent[s.agentID]; old != nil {
		old.log.Info("agent replaced by a new session", "new_session", s.id)
		old.stop(&protocol.Error{Code: protocol.CodeReplaced, Reason: "the same agent id connected again"})
	}
	h.byAgent[s.agentID] = s
	h.sessions[s] = struct{}{}
	return true
}

func (h *hub) unregister(s *session) {
	h.mu.Lock()
	defer h.mu.Unlock()
	delete(h.sessions, s)
	if h.byAgent[s.agentID] == s {
		delete(h.byAgent, s.agentID)
	}
}

// shutdown sends GoAway to every session, closes tunnels still in their handshake, refuses
// new ones, and waits until every session has ended (and released its webhooks).
func (h *hub) shutdown() {
	h.mu.Lock()
	h.closing = true
	for s := range h.sessions {
		s.stop(goAway())
	}
	for t := range h.pending {
		t.Close()
	}
	h.mu.Unlock()
	h.wg.Wait()
}

func (h *hub) agents() []AgentInfo {
	h.mu.Lock()
	defer h.mu.Unlock()
	out := make([]AgentInfo, 0, len(h.sessions))
	for s := range h.sessions {
		out = append(out, s.info())
	}
	slices.SortFunc(out, func(a, b AgentInfo) int { return strings.Compare(a.AgentID, b.AgentID) })
	return out
}

// goAway asks an agent to reconnect after a random 1–5 s, spreading reconnects after a restart.
func goAway() *protocol.GoAway {
	return &protocol.GoAway{
		Reason:         "shutting down",
		ReconnectAfter: time.Second + mrand.N(4*time.Second),
	}
}

func newSessionID() string {
	var b [8]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}
