package relay

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/hookrelay/hookrelay/internal/admin"
	"github.com/hookrelay/hookrelay/persist"
	"github.com/hookrelay/hookrelay/protocol"
)

const (
	// leaseBatch bounds the webhooks leased at once, and outQueue the frames waiting for the
	// writer: together they bound the bodies a session holds in memory, whatever the window.
	leaseBatch = 8
	outQueue   = 8
	ctrlQueue  = 16
	// writeBurst bounds the frames written in one corked burst.
	writeBurst = 64
	// finalGrace is how long a final frame (GoAway, Error) may take before the tunnel is cut.
	finalGrace = 5 * time.Second
	// pollEvery is the dispatcher's fallback wake-up (e.g. a lease that expired elsewhere).
	pollEvery = 30 * time.Second
	// minNackDelay and maxNackDelay clamp an agent's Nack retry-after.
	minNackDelay = time.Second
	maxNackDelay = time.Hour
	// recentAcked is how many acked ids a session remembers, to take their Reports without a
	// store lookup.
	recentAcked = 4096
)

// session is one agent's tunnel after a good handshake, and the state machine of the
// webhooks it carries. A webhook leased to it is in flight (inflight) until the agent acks it
// (it holds it: recently acked, until its outcome), nacks it (ready again after the agent's
// retry-after) or reports its outcome (delivered or dead); all three changes go to the
// queue through one recorder. When the session ends, what is still in flight is released.
//
// Its reader runs in the caller's goroutine (run); a writer goroutine owns every write to the
// tunnel, fed by the bounded out channel (session_writer.go); a dispatcher goroutine leases
// ready webhooks while the window has room (dispatch.go); the recorder's goroutine writes
// state changes (recorder.go).
type session struct {
	// static after construction
	queue       Queue
	group       string // the consumer group the agent serves
	metrics     *metrics
	rec         *recorder
	t           protocol.Tunnel
	id          string
	agentID     string
	tokenSum    [sha256.Size]byte // SHA-256 of the agent's token: never the token itself
	requested   []string          // endpoints the agent asked for (none: all its token may)
	endpoints   []string          // granted
	log         *slog.Logger
	connectedAt time.Time
	maxWindow   int
	leaseTTL    time.Duration
	out         chan protocol.Frame // webhooks to the writer
	ctrl        chan protocol.Frame // small frames (Pong) to the writer, ahead of webhooks
	wake        chan struct{}       // cap 1: the window may have room again
	done        chan struct{}       // closed by stop
	ctx         context.Context     // cancelled by stop: for the queue calls of the session
	cancel      context.CancelFunc

	// owned by the dispatcher
	next int // round-robin start among endpoints

	// owned by the reader
	acked     map[string]bool // recently acked ids (of granted endpoints)
	ackedRing []string

	// guarded by mu
	mu       sync.Mutex
	stopping bool
	reason   string         // why it stopped: a hookrelay_tunnel_sessions_ended_total label
	final    protocol.Frame // written by the writer before it closes the tunnel
	kill     *time.Timer    // cuts the tunnel if the final frame hangs
	window   int
	inflight map[string]string // id → endpoint: leased to this session, not yet acked, nacked or reported
}

// newSession builds the session of tunnel t for an admitted agent, served from q under cfg.
func newSession(q Queue, m *metrics, cfg *Config, t protocol.Tunnel, agentID string, tokenSum [sha256.Size]byte,
	requested, endpoints []string, log *slog.Logger) *session {
	id := newSessionID()
	if agentID == "" {
		agentID = "session-" + id
	}
	log = log.With("session", id, "agent", agentID)
	ctx, cancel := context.WithCancel(context.Background())
	return &session{
		queue:       q,
		group:       DefaultGroup,
		metrics:     m,
		rec:         newRecorder(q, DefaultGroup, log),
		t:           t,
		id:          id,
		agentID:     agentID,
		tokenSum:    tokenSum,
		requested:   requested,
		endpoints:   endpoints,
		log:         log,
		connectedAt: time.Now(),
		maxWindow:   cfg.Window,
		leaseTTL:    cfg.LeaseTTL,
		out:         make(chan protocol.Frame, outQueue),
		ctrl:        make(chan protocol.Frame, ctrlQueue),
		wake:        make(chan struct{}, 1),
		done:        make(chan struct{}),
		ctx:         ctx,
		cancel:      cancel,
		acked:       map[string]bool{},
		window:      cfg.Window,
		inflight:    map[string]string{},
	}
}

// run serves the session until the tunnel ends or stop is called, and returns only after the
// writer, dispatcher and recorder have stopped. The caller then unregisters it and calls
// release.
func (s *session) run() {
	var wg sync.WaitGroup
	wg.Go(s.writeLoop)
	wg.Go(s.dispatchLoop)
	wg.Go(s.rec.run)
	err := s.readLoop()
	s.rec.close() // the recorder records what the reader handed it, then stops
	s.log.Debug("session reader stopped", "err", err)
	switch {
	case errors.Is(err, protocol.ErrFrameTooLarge):
		s.stop("frame_too_large", &protocol.Error{Code: protocol.CodeLimit,
			Reason: fmt.Sprintf("frame over %d bytes", protocol.DefaultMaxFrame)})
	case errors.Is(err, protocol.ErrMalformed):
		s.stop("protocol", &protocol.Error{Code: protocol.CodeProtocol, Reason: "malformed frame"})
	default:
		s.stop("closed", nil)
	}
	wg.Wait()
	s.t.Close()
	s.mu.Lock()
	if s.kill != nil {
		s.kill.Stop()
	}
	s.mu.Unlock()
}

// release makes every webhook still in flight on this ended session ready again at once,
// for another agent of the endpoint or a reconnect.
func (s *session) release() {
	s.mu.Lock()
	ids := make([]string, 0, len(s.inflight))
	for id, ep := range s.inflight {
		ids = append(ids, id)
		s.metrics.released.WithLabelValues(ep).Inc()
	}
	clear(s.inflight)
	s.mu.Unlock()
	if len(ids) > 0 {
		if err := s.queue.Release(context.Background(), s.group, ids...); err != nil {
			s.log.Warn("release failed: the webhooks are offered again when their lease ends", "err", err)
			return
		}
		s.log.Info("released unacked webhooks", "count", len(ids))
	}
}

// stop ends the session for reason (a metrics label: closed, shutdown, replaced, revoked,
// grants_changed, frame_too_large, protocol, write). A non-nil final frame (GoAway, Error) is
// written before the tunnel closes; otherwise it closes at once. Only the first call counts.
func (s *session) stop(reason string, final protocol.Frame) {
	s.mu.Lock()
	if s.stopping {
		s.mu.Unlock()
		return
	}
	s.stopping = true
	s.reason = reason
	s.final = final
	close(s.done)
	s.cancel()
	if final != nil {
		s.kill = time.AfterFunc(finalGrace, func() { s.t.Close() })
	}
	s.mu.Unlock()
	if final == nil {
		s.t.Close() // outside mu: closing may take a moment (best-effort close message)
	}
}

func (s *session) isStopping() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.stopping
}

// endReason is why the session stopped.
func (s *session) endReason() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.reason == "" {
		return "closed"
	}
	return s.reason
}

func (s *session) info() admin.AgentInfo {
	s.mu.Lock()
	defer s.mu.Unlock()
	return admin.AgentInfo{
		AgentID:     s.agentID,
		SessionID:   s.id,
		Endpoints:   s.endpoints,
		Transport:   s.t.Transport(),
		Remote:      s.t.RemoteAddr(),
		ConnectedAt: s.connectedAt,
		InFlight:    len(s.inflight),
	}
}

// readLoop handles the agent's frames until the tunnel fails or closes.
func (s *session) readLoop() error {
	for {
		f, err := s.t.ReadFrame()
		if err != nil {
			return err
		}
		switch f := f.(type) {
		case *protocol.Ack:
			s.handleAck(f.IDs)
		case *protocol.Nack:
			s.handleNack(f)
		case *protocol.Report:
			s.handleReport(f)
		case *protocol.Credit:
			s.mu.Lock()
			s.window = min(int(f.Window), s.maxWindow)
			s.mu.Unlock()
			s.signal()
		case *protocol.Ping:
			select { // best effort: a full queue means the agent is not reading anyway
			case s.ctrl <- &protocol.Pong{Nonce: f.Nonce}:
			default:
			}
		case *protocol.Pong:
		case *protocol.Hello:
			s.stop("protocol", &protocol.Error{Code: protocol.CodeProtocol, Reason: "hello sent twice"})
			return errors.New("hello sent twice")
		default:
			s.log.Debug("unexpected frame ignored", "type", f.Type())
		}
	}
}

// signal wakes the dispatcher: the window may have room.
func (s *session) signal() {
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

// takeInflight removes the ids this session has in flight and returns them, counting each
// in c by endpoint when c is set.
func (s *session) takeInflight(c *prometheus.CounterVec, ids ...string) []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []string
	for _, id := range ids {
		if ep, ok := s.inflight[id]; ok {
			delete(s.inflight, id)
			out = append(out, id)
			if c != nil {
				c.WithLabelValues(ep).Inc()
			}
		}
	}
	return out
}

// handleAck marks the ids the agent now holds durably. Ids not in flight on this session
// are ignored: an agent can only ack what it was sent.
func (s *session) handleAck(ids []string) {
	mine := s.takeInflight(s.metrics.acked, ids...)
	if len(mine) == 0 {
		return
	}
	s.signal()
	for _, id := range mine {
		s.rememberAcked(id)
	}
	s.rec.ack(mine)
}

func (s *session) rememberAcked(id string) {
	if len(s.ackedRing) >= recentAcked {
		delete(s.acked, s.ackedRing[0])
		s.ackedRing = s.ackedRing[1:]
	}
	s.acked[id] = true
	s.ackedRing = append(s.ackedRing, id)
}

// handleNack offers a webhook again after the agent's retry-after, counting no attempt.
func (s *session) handleNack(n *protocol.Nack) {
	if len(s.takeInflight(s.metrics.nacked, n.ID)) == 0 {
		return
	}
	s.signal()
	d := min(max(n.RetryAfter, minNackDelay), maxNackDelay)
	s.rec.nack(n.ID, time.Now().Add(d))
	s.log.Debug("webhook nacked", "id", n.ID, "reason", n.Reason, "retry_after", d)
}

// handleReport records the agent's final outcome. The record must belong to an endpoint of
// this session; unknown or already finished ids are ignored.
func (s *session) handleReport(r *protocol.Report) {
	if len(s.takeInflight(nil, r.ID)) > 0 {
		s.signal() // reported before its ack arrived (the ack was lost)
	} else if !s.acked[r.ID] {
		rec, err := s.queue.Get(s.ctx, r.ID)
		if err != nil || !s.grants(rec.Queue) {
			s.log.Debug("report for an unknown id ignored", "id", r.ID)
			return
		}
		if rec.State == persist.StateDelivered || rec.State == persist.StateDead {
			s.log.Debug("report for a finished id ignored", "id", r.ID)
			return
		}
	}
	st, reason := persist.StateDelivered, ""
	switch r.Outcome {
	case protocol.OutcomeDelivered:
		s.metrics.reports.WithLabelValues("delivered").Inc()
	case protocol.OutcomeDead:
		s.metrics.reports.WithLabelValues("dead").Inc()
	}
	if r.Outcome == protocol.OutcomeDead {
		st, reason = persist.StateDead, r.Error
		if reason == "" {
			reason = "dead at the agent"
		}
	} else if r.Outcome != protocol.OutcomeDelivered {
		s.log.Debug("report with an unknown outcome ignored", "id", r.ID, "outcome", r.Outcome)
		return
	}
	at := r.At
	if at.IsZero() {
		at = time.Now()
	}
	s.rec.outcome(r.ID, st, &persist.Delivery{At: at, Status: r.Status, Error: r.Error}, reason)
	delete(s.acked, r.ID) // the ring entry ages out by itself
}

func (s *session) grants(endpoint string) bool {
	for _, e := range s.endpoints {
		if e == endpoint {
			return true
		}
	}
	return false
}
