package relay

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	mrand "math/rand/v2"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hookrelay/hookrelay/internal/admin"
	"github.com/hookrelay/hookrelay/protocol"
)

// maxAgentID bounds the agent id an agent may claim.
const maxAgentID = 256

// hub keeps the connected agent sessions: it authenticates new tunnels, replaces a session
// when its agent id connects again, and ends them all on shutdown.
type hub struct {
	// static after construction
	queue   Queue
	metrics *metrics
	live    *atomic.Pointer[live] // the config in force; swapLive replaces it
	log     *slog.Logger
	owners  owners     // which session serves each ordered endpoint of a group (order.go)
	preauth *preauth   // tunnels not yet past their Hello: the pending caps
	syncs   *syncWaits // set by setup before serving: sync answers (sync.go)

	wg sync.WaitGroup // one per serve call in progress

	// guarded by mu
	mu       sync.Mutex
	closing  bool
	pending  map[protocol.Tunnel]struct{} // tunnels still in their handshake
	sessions map[*session]struct{}
	byToken  map[[sha256.Size]byte]int // token sum → its sessions in sessions, stopping ones too
	byAgent  map[string]*session
	started  time.Time            // when the hub began: an agent not seen since is away since then
	lastSeen map[string]time.Time // agent id → when its last session ended
}

// newHub serves sessions from q under the config in lv (which swapLive updates).
func newHub(q Queue, m *metrics, lv *atomic.Pointer[live], log *slog.Logger) *hub {
	h := &hub{
		queue:    q,
		metrics:  m,
		live:     lv,
		log:      log,
		preauth:  newPreauth(m),
		pending:  map[protocol.Tunnel]struct{}{},
		sessions: map[*session]struct{}{},
		byToken:  map[[sha256.Size]byte]int{},
		byAgent:  map[string]*session{},
		started:  time.Now(),
		lastSeen: map[string]time.Time{},
	}
	return h
}

// serve runs one tunnel from handshake to end; it closes t. slot (nil for QUIC, whose tunnel
// gives its own back once its Hello is read) is left once the handshake is over.
func (h *hub) serve(ctx context.Context, t protocol.Tunnel, slot *preauthSlot) {
	if h.enter(t, slot) {
		defer h.wg.Done()
		h.run(ctx, t, slot)
	}
}

// serveAsync is serve in a goroutine of the hub's (shutdown joins it), for a WebSocket
// tunnel: the HTTP handler that hijacked its connection returns at once, and the HTTP
// server's state for that connection (its buffers, the request) is freed while the session
// runs, which an idle agent would otherwise hold for hours.
func (h *hub) serveAsync(t protocol.Tunnel, slot *preauthSlot) {
	if !h.enter(t, slot) {
		return
	}
	go func() {
		s := h.welcome(t, slot)
		if s == nil {
			t.Close()
			h.wg.Done()
			return
		}
		// The session runs on a fresh goroutine, which hands its wg count on: the
		// handshake grew this one's stack, which an idle session would keep for hours.
		go func() {
			defer h.wg.Done()
			defer t.Close()
			h.runSession(context.Background(), s) // shutdown ends it
		}()
	}()
}

// enter counts a tunnel in (h.wg, pending) unless the hub is closing, when it sends GoAway,
// closes t and leaves slot.
func (h *hub) enter(t protocol.Tunnel, slot *preauthSlot) bool {
	h.mu.Lock()
	if h.closing {
		h.mu.Unlock()
		t.WriteFrame(goAway())
		t.Close()
		slot.leave()
		return false
	}
	h.wg.Add(1)
	h.pending[t] = struct{}{}
	h.mu.Unlock()
	return true
}

// run is serve once entered.
func (h *hub) run(ctx context.Context, t protocol.Tunnel, slot *preauthSlot) {
	defer t.Close()
	if s := h.welcome(t, slot); s != nil {
		h.runSession(ctx, s)
	}
}

// welcome takes t through its handshake and admission, and sends the Welcome of its new
// session; nil when t got no session (the caller closes t).
func (h *hub) welcome(t protocol.Tunnel, slot *preauthSlot) *session {
	defer slot.leave()
	log := h.log.With("transport", t.Transport(), "remote", t.RemoteAddr())
	hello, err := h.handshake(t)
	slot.leave()
	h.mu.Lock()
	delete(h.pending, t)
	h.mu.Unlock()
	if slot.wasEvicted() { // counted when it was evicted
		log.Info("tunnel refused", "reason", "pending_evicted", "err", "no hello within "+preauthStale.String()+" while max_pending_tunnels was reached")
		return nil
	}
	if err != nil {
		h.refused(log, err)
		return nil
	}
	s, err := h.admit(t, hello, log)
	if err != nil {
		h.refused(log, err)
		return nil
	}
	err = t.WriteFrame(&protocol.Welcome{
		SessionID:  s.id,
		Endpoints:  s.endpoints,
		Window:     uint32(s.window),
		MaxFrame:   protocol.DefaultMaxFrame,
		ServerTime: time.Now(),
		Version:    s.version,
	})
	if err != nil {
		s.log.Info("send welcome failed", "err", err)
		h.unregister(s)
		return nil
	}
	s.log.Info("agent connected", "endpoints", s.endpoints)
	return s
}

// runSession runs s until it ends, then unregisters it and releases its webhooks.
func (h *hub) runSession(ctx context.Context, s *session) {
	s.run(ctx) // ctx ending closes the session as shutdown
	h.unregister(s)
	s.release()
	if h.owners.drop(s) {
		h.wakeAll() // another session takes over its ordered endpoints
	}
	h.metrics.sessionsEnded.WithLabelValues(s.endReason()).Inc()
	s.log.Info("agent disconnected", "reason", s.endReason())
}

// handshakeError is why a tunnel got no session: reason is its metrics label, and frame,
// when set, is sent to the agent before the tunnel closes.
type handshakeError struct {
	reason string
	frame  *protocol.Error
	err    error
}

func (e *handshakeError) Error() string { return e.err.Error() }
func (e *handshakeError) Unwrap() error { return e.err }

func refuse(reason string, code protocol.ErrorCode, msg string, err error) *handshakeError {
	he := &handshakeError{reason: reason, err: err}
	if code != 0 {
		he.frame = &protocol.Error{Code: code, Reason: msg}
	}
	return he
}

// refused counts and logs a tunnel that got no session. The log never holds the token.
func (h *hub) refused(log *slog.Logger, err error) {
	var he *handshakeError
	if !errors.As(err, &he) {
		he = &handshakeError{reason: "read", err: err}
	}
	h.metrics.handshakeFail.WithLabelValues(he.reason).Inc()
	log.Info("tunnel refused", "reason", he.reason, "err", clip(err.Error(), 200))
}

// handshake reads the agent's Hello under HandshakeTimeout and checks its version. On
// failure it has already sent the agent an Error when there is one to send.
func (h *hub) handshake(t protocol.Tunnel) (*protocol.Hello, error) {
	timeout := h.live.Load().cfg.HandshakeTimeout
	timer := time.AfterFunc(timeout, func() { t.Close() })
	f, err := t.ReadFrame()
	if !timer.Stop() {
		return nil, refuse("timeout", 0, "", fmt.Errorf("no hello within %v", timeout))
	}
	var he *handshakeError
	switch {
	case errors.Is(err, protocol.ErrFrameTooLarge):
		he = refuse("frame_too_large", protocol.CodeLimit,
			fmt.Sprintf("frame over %d bytes", protocol.DefaultMaxFrame), fmt.Errorf("read hello: %w", err))
	case errors.Is(err, protocol.ErrMalformed):
		he = refuse("protocol", protocol.CodeProtocol, "malformed hello: "+clip(err.Error(), 200), fmt.Errorf("read hello: %w", err))
	case err != nil:
		return nil, refuse("read", 0, "", fmt.Errorf("read hello: %w", err))
	}
	hello, ok := f.(*protocol.Hello)
	switch {
	case he != nil:
	case !ok:
		he = refuse("protocol", protocol.CodeProtocol, "expected hello", fmt.Errorf("first frame is %T, not hello", f))
	case hello.Version < protocol.MinVersion || hello.Version > protocol.Version:
		he = refuse("version", protocol.CodeVersion,
			fmt.Sprintf("protocol version %d is not supported: this relay speaks %d to %d", hello.Version,
				protocol.MinVersion, protocol.Version),
			fmt.Errorf("agent speaks protocol version %d", hello.Version))
	case len(hello.AgentID) > maxAgentID:
		he = refuse("protocol", protocol.CodeProtocol, fmt.Sprintf("agent id over %d bytes", maxAgentID),
			errors.New("agent id too long"))
	}
	if he != nil {
		t.WriteFrame(he.frame)
		return nil, he
	}
	return hello, nil
}

// admit authorizes hello against the config in force and registers its session, in one step
// under mu so that a Reload cannot slip between them: the endpoints granted, the agents-per-
// token limit, and the replacement of a session of the same agent id. On refusal the agent
// has been sent an Error.
func (h *hub) admit(t protocol.Tunnel, hello *protocol.Hello, log *slog.Logger) (*session, error) {
	sum := sha256.Sum256([]byte(hello.Token))
	h.mu.Lock()
	defer h.mu.Unlock()
	lv := h.live.Load()
	var he *handshakeError
	granted, reason := lv.authorize(sum, hello.Endpoints)
	group := hello.Group
	if group == "" {
		group = DefaultGroup // a version-1 agent, or one that names none
	}
	undeclared := lv.undeclared(group, granted)
	switch {
	case h.closing:
		t.WriteFrame(goAway())
		return nil, refuse("shutdown", 0, "", errors.New("relay shutting down"))
	case len(granted) == 0:
		he = refuse("unauthorized", protocol.CodeUnauthorized, clip(reason, 200), errors.New(clip(reason, 200)))
	case undeclared != "":
		he = refuse("group", protocol.CodeUnauthorized, clip(undeclared, 400), errors.New(clip(undeclared, 400)))
	case h.byToken[sum] >= lv.cfg.MaxAgentsPerToken && // else the exact count is below too
		h.tokenSessionsLocked(sum, hello.AgentID) >= lv.cfg.MaxAgentsPerToken:
		msg := fmt.Sprintf("this token already has %d agents connected (max_agents_per_token)", lv.cfg.MaxAgentsPerToken)
		he = refuse("agents_per_token", protocol.CodeLimit, msg, errors.New(msg))
	case h.byAgent[hello.AgentID] != nil && h.byAgent[hello.AgentID].tokenSum != sum:
		// Only the same agent (the same token) may replace its session: any other valid
		// token could otherwise kick an agent off again and again.
		msg := "agent id " + clip(hello.AgentID, 64) + " is connected with another token"
		he = refuse("agent_id_taken", protocol.CodeUnauthorized, msg, errors.New(msg))
	}
	if he != nil {
		t.WriteFrame(he.frame)
		return nil, he
	}
	s := newSession(h.queue, h.metrics, lv.cfg, t, hello.Version, hello.AgentID, group, sum, hello.Endpoints, granted, log)
	if len(s.ordered) > 0 {
		s.claim = h.owners.claimer(s)
	}
	s.syncs = h.syncs
	if hello.Version >= 2 {
		s.expose = hello.Expose
	}
	if old := h.byAgent[s.agentID]; old != nil {
		old.log.Info("agent replaced by a new session", "new_session", s.id)
		old.stop(protocol.ReasonReplaced, &protocol.Error{Code: protocol.CodeReplaced, Reason: "the same agent id connected again"})
	}
	h.byAgent[s.agentID] = s
	h.sessions[s] = struct{}{}
	h.byToken[sum]++
	return s, nil
}

// tokenSessionsLocked counts the live sessions of the token sum, except one of agentID,
// which a new session of that id replaces. It walks every session: admit asks only when
// byToken says the limit may be reached (thousands of agents connecting would otherwise
// cost a walk each).
func (h *hub) tokenSessionsLocked(sum [sha256.Size]byte, agentID string) int {
	n := 0
	for s := range h.sessions {
		if s.tokenSum == sum && !s.isStopping() && (agentID == "" || s.agentID != agentID) {
			n++
		}
	}
	return n
}

func (h *hub) unregister(s *session) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if _, ok := h.sessions[s]; ok {
		delete(h.sessions, s)
		if h.byToken[s.tokenSum]--; h.byToken[s.tokenSum] == 0 {
			delete(h.byToken, s.tokenSum)
		}
	}
	if h.byAgent[s.agentID] == s {
		delete(h.byAgent, s.agentID)
	}
	h.lastSeen[s.agentID] = time.Now()
}

// awayFor is how long agent id has had no session (since the hub began, for an agent not seen
// since); false while it has one.
func (h *hub) awayFor(id string, now time.Time) (time.Duration, bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if s := h.byAgent[id]; s != nil && !s.isStopping() {
		return 0, false
	}
	since := h.started
	if t, ok := h.lastSeen[id]; ok && t.After(since) {
		since = t
	}
	return now.Sub(since), true
}

// shutdown sends GoAway to every session, closes tunnels still in their handshake, refuses
// new ones, and waits until every session has ended (and released its webhooks).
func (h *hub) shutdown() {
	h.mu.Lock()
	h.closing = true
	for s := range h.sessions {
		s.stop(protocol.ReasonShutdown, goAway())
	}
	for t := range h.pending {
		t.Close()
	}
	h.mu.Unlock()
	h.wg.Wait()
}

func (h *hub) agents() []admin.AgentInfo {
	h.mu.Lock()
	defer h.mu.Unlock()
	out := make([]admin.AgentInfo, 0, len(h.sessions))
	for s := range h.sessions {
		out = append(out, s.info())
	}
	slices.SortFunc(out, func(a, b admin.AgentInfo) int { return strings.Compare(a.AgentID, b.AgentID) })
	return out
}

// exposes reports whether a session connected here would return endpoint's answers: its
// agent speaks version 2 and its route exposes them.
func (h *hub) exposes(endpoint string) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	for s := range h.sessions {
		if s.version >= 2 && !s.isStopping() && s.grants(endpoint) && s.exposes(endpoint) {
			return true
		}
	}
	return false
}

// wakeAll wakes every session's dispatcher (after an admin replay).
func (h *hub) wakeAll() {
	h.mu.Lock()
	defer h.mu.Unlock()
	for s := range h.sessions {
		s.signal()
	}
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
