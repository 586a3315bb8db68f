package relay

import (
	"crypto/sha256"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

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

// session is one agent's tunnel after a good handshake. Its reader runs in the caller's
// goroutine (run); a writer goroutine owns every write to the tunnel, fed by the bounded out
// channel; a dispatcher goroutine leases ready webhooks while the window has room.
type session struct {
	// static after construction
	store       *persist.Store
	metrics     *metrics
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
	book        chan bookOp         // acks and reports for the bookkeeper to record
	done        chan struct{}       // closed by stop

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

func newSession(h *hub, lv *live, t protocol.Tunnel, agentID string, tokenSum [sha256.Size]byte,
	requested, endpoints []string, log *slog.Logger) *session {
	id := newSessionID()
	if agentID == "" {
		agentID = "session-" + id
	}
	return &session{
		store:       h.srv.store,
		metrics:     h.srv.metrics,
		t:           t,
		id:          id,
		agentID:     agentID,
		tokenSum:    tokenSum,
		requested:   requested,
		endpoints:   endpoints,
		log:         log.With("session", id, "agent", agentID),
		connectedAt: time.Now(),
		maxWindow:   lv.cfg.Window,
		leaseTTL:    lv.cfg.LeaseTTL,
		out:         make(chan protocol.Frame, outQueue),
		ctrl:        make(chan protocol.Frame, ctrlQueue),
		wake:        make(chan struct{}, 1),
		book:        make(chan bookOp, bookQueue),
		done:        make(chan struct{}),
		acked:       map[string]bool{},
		window:      lv.cfg.Window,
		inflight:    map[string]string{},
	}
}

// run serves the session until the tunnel ends or stop is called, and returns only after the
// writer and dispatcher have stopped. The caller then unregisters it and calls release.
func (s *session) run() {
	var wg sync.WaitGroup
	wg.Go(s.writeLoop)
	wg.Go(s.dispatchLoop)
	wg.Go(s.bookLoop)
	err := s.readLoop()
	close(s.book) // the bookkeeper records what the reader handed it, then stops
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
		s.store.Release(ids...)
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

func (s *session) info() AgentInfo {
	s.mu.Lock()
	defer s.mu.Unlock()
	return AgentInfo{
		AgentID:     s.agentID,
		SessionID:   s.id,
		Endpoints:   s.endpoints,
		Transport:   s.t.Transport(),
		Remote:      s.t.RemoteAddr(),
		ConnectedAt: s.connectedAt,
		InFlight:    len(s.inflight),
	}
}

// writeLoop is the only writer of the tunnel after the handshake. Control frames go first.
// Frames that are ready together are written corked (protocol.Corker), so they share a
// system call.
func (s *session) writeLoop() {
	corker, _ := s.t.(protocol.Corker)
	for {
		var f protocol.Frame
		select {
		case <-s.done:
			s.writeFinal()
			return
		case f = <-s.ctrl:
		default:
			select {
			case <-s.done:
				s.writeFinal()
				return
			case f = <-s.ctrl:
			case f = <-s.out:
			}
		}
		if corker != nil {
			corker.Cork()
		}
		err := s.write(f)
		for n := 1; err == nil && n < writeBurst; n++ {
			if f = s.ready(); f == nil {
				break
			}
			err = s.write(f)
		}
		if corker != nil {
			if uerr := corker.Uncork(); err == nil {
				err = uerr
			}
		}
		if err != nil {
			s.log.Debug("tunnel write failed", "err", err)
			s.stop("write", nil)
			return
		}
	}
}

// ready returns a frame waiting for the writer, control frames first; nil when none is.
func (s *session) ready() protocol.Frame {
	select {
	case f := <-s.ctrl:
		return f
	default:
	}
	select {
	case f := <-s.ctrl:
		return f
	case f := <-s.out:
		return f
	default:
		return nil
	}
}

func (s *session) write(f protocol.Frame) error {
	if w, ok := f.(*protocol.Webhook); ok {
		return protocol.SendWebhook(s.t, w, protocol.DefaultChunk)
	}
	return s.t.WriteFrame(f)
}

func (s *session) writeFinal() {
	s.mu.Lock()
	f := s.final
	s.mu.Unlock()
	if f != nil {
		if err := s.t.WriteFrame(f); err != nil {
			s.log.Debug("final frame not sent", "err", err)
		}
	}
	s.t.Close()
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
	s.book <- bookOp{acks: mine}
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
	if err := s.store.Nack(n.ID, time.Now().Add(d), nil); err != nil {
		s.log.Warn("nack not recorded", "id", n.ID, "err", err)
	}
	s.log.Debug("webhook nacked", "id", n.ID, "reason", n.Reason, "retry_after", d)
}

// handleReport records the agent's final outcome. The record must belong to an endpoint of
// this session; unknown or already finished ids are ignored.
func (s *session) handleReport(r *protocol.Report) {
	if len(s.takeInflight(nil, r.ID)) > 0 {
		s.signal() // reported before its ack arrived (the ack was lost)
	} else if !s.acked[r.ID] {
		rec, err := s.store.Get(r.ID)
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
	s.book <- bookOp{report: r, state: st, reason: reason, at: at}
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
