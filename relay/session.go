package relay

import (
	"cmp"
	"context"
	"crypto/sha256"
	"errors"
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
	// Conn's writer: together they bound the bodies a session holds in memory, whatever the
	// window.
	leaseBatch = 8
	outQueue   = 8
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
// A protocol.Conn owns the tunnel: its reader runs in the caller's goroutine (run) and hands
// frames to handle; its writer, keepalive and close reason are the Conn's. A dispatcher
// goroutine leases ready webhooks while the window has room and Sends them (dispatch.go).
// The goroutines that only a busy session needs start with its first webhook and are joined
// by run: the recorder's, which writes state changes (recorder.go), and keepLeases, which
// ends once nothing is in flight. An idle session costs three goroutines: reader, writer and
// dispatcher (a relay holds thousands of idle ones).
type session struct {
	// static after construction
	queue       Queue
	group       string // the consumer group the agent serves
	metrics     *metrics
	rec         *recorder
	conn        *protocol.Conn
	id          string
	version     uint16 // the session's protocol version (2: outcome reports are confirmed)
	agentID     string
	tokenSum    [sha256.Size]byte // SHA-256 of the agent's token: never the token itself
	requested   []string          // endpoints the agent asked for (none: all its token may)
	endpoints   []string          // granted
	unordered   []string          // granted, leased in windows (dispatch.go)
	ordered     []string          // granted, ordered: leased head by head (order.go)
	log         *slog.Logger
	connectedAt time.Time
	window      int // webhooks the session may have in flight
	holdMax     int // young webhooks its agent may hold without an outcome (holding.go)
	leaseTTL    time.Duration
	wake        chan struct{}   // cap 1: the window may have room again
	ctx         context.Context // the Conn's: cancelled once it closes, for the session's queue calls
	wg          sync.WaitGroup  // the goroutines of run, and keepLeases

	// set by the hub before run when the session has ordered endpoints: may it serve this one?
	claim func(endpoint string) bool
	// set by the hub before run: sync answers (sync.go), and the endpoints whose route at
	// the agent exposes its target's answers (Hello, version 2)
	syncs  *syncWaits
	expose []string

	// owned by the dispatcher
	next int // round-robin start among endpoints

	holds *holdings // acked ids without an outcome yet (holding.go; its own lock)

	// guarded by mu
	mu       sync.Mutex
	inflight map[string]flight // id → its flight: leased to this session, not yet acked, nacked or reported
	inBytes  int64             // the body bytes of inflight
	heads    map[string]string // ordered endpoint → the id of its head in flight here
	keeping  bool              // keepLeases runs
}

// maxInflightBytes bounds the body bytes a session has sent and the agent not yet acked,
// besides the window's count: an agent holds what it received in memory until its commit, so
// a window of 256 webhooks of 64 KiB was 16 MiB of the agent's heap (a small box's agent runs
// in 64 MiB). The dispatcher leases no more once it is reached (one webhook over it is always
// let through, so a body larger than this still goes, alone).
const maxInflightBytes = 4 << 20

// flight is one webhook in flight on a session: its endpoint, the lease it was handed, and
// its body's size.
type flight struct {
	endpoint string
	lease    uint64
	size     int64
}

// newSession builds the session of tunnel t for an admitted agent, served from q under cfg.
// Its Conn takes t over, but nothing writes to t but the caller until run. A session granted
// an ordered endpoint needs its claim set before run.
func newSession(q Queue, m *metrics, cfg *Config, t protocol.Tunnel, version uint16, agentID, group string,
	tokenSum [sha256.Size]byte, requested, endpoints []string, log *slog.Logger) *session {
	id := newSessionID()
	if agentID == "" {
		agentID = "session-" + id
	}
	log = log.With("session", id, "agent", agentID, "group", group)
	// The relay takes acks and sends none: AckQueue 1 spares each session a queue of 4096 ids.
	conn := protocol.NewConn(t, protocol.ConnConfig{Queue: outQueue, AckQueue: 1, Logger: log})
	s := &session{
		queue:       q,
		group:       group,
		metrics:     m,
		conn:        conn,
		id:          id,
		version:     version,
		agentID:     agentID,
		tokenSum:    tokenSum,
		requested:   requested,
		endpoints:   endpoints,
		log:         log,
		connectedAt: time.Now(),
		window:      cfg.Window,
		leaseTTL:    cfg.LeaseTTL,
		wake:        make(chan struct{}, 1),
		ctx:         conn.Context(),
		holds:       newHoldings(cmp.Or(cfg.holdYoung, holdYoung)),
		holdMax:     cmp.Or(cfg.holdMax, holdMax),
		inflight:    map[string]flight{},
		heads:       map[string]string{},
	}
	s.unordered, s.ordered = splitOrdered(cfg, endpoints)
	var recorded func([]string)
	if version >= 2 {
		recorded = s.confirm
	}
	s.rec = newRecorder(q, group, agentID, recorded, log)
	if len(s.ordered) > 0 {
		// The next head goes out once the store has the last one's ack, nack or outcome,
		// which no store wake-up announces (acked and finished records are not ready):
		// the recorder wakes the dispatcher, and does not hold acks back.
		s.rec.applied = s.signal
		s.rec.noHold = true
	}
	return s
}

// confirm tells a version-2 agent that the outcomes of ids are durably recorded (or were
// already), so that it stops resending them. A session that ended drops it: the agent sends
// them again on its next session.
func (s *session) confirm(ids []string) {
	if s.version < 2 || len(ids) == 0 {
		return
	}
	// Ahead of the webhooks queued: the recorder must not wait behind them (its acks free the
	// window that would let them go).
	if err := s.conn.SendControl(s.ctx, &protocol.Recorded{IDs: ids}); err != nil {
		s.log.Debug("confirmation not sent", "count", len(ids), "err", err)
	}
}

// run serves the session until the tunnel ends, stop is called or ctx ends (shutdown), and
// returns only after the Conn, the dispatcher and the recorder have stopped. The caller then
// unregisters it and calls release.
func (s *session) run(ctx context.Context) {
	if len(s.ordered) > 0 {
		s.wg.Go(func() {
			<-s.conn.Done() // Run closes the Conn before it returns
			s.releaseHeads()
		})
	}
	s.wg.Go(s.dispatchLoop)
	s.wg.Go(s.sendOwedVerdicts)
	err := s.conn.Run(ctx, s.handle)
	s.rec.close() // the recorder records what the reader handed it, then stops
	s.log.Debug("session reader stopped", "err", err)
	s.wg.Wait()
}

// keepLeasesLocked starts keepLeases unless it runs. It is called by the dispatcher, whose
// goroutine run's wg counts, when webhooks go in flight.
func (s *session) keepLeasesLocked() {
	if !s.keeping {
		s.keeping = true
		s.wg.Go(s.keepLeases)
	}
}

// keepLeases extends the leases of the webhooks in flight every third of lease_ttl until
// nothing is in flight or the session ends: a webhook may wait in flight longer than its lease
// (queued behind a large body on a slow link, or an agent slow to ack), and another session
// must not be handed it meanwhile. A lease found lost (it ran out before this) is logged: that
// webhook may reach an agent twice.
func (s *session) keepLeases() {
	t := time.NewTicker(max(s.leaseTTL/3, 10*time.Millisecond))
	defer t.Stop()
	for {
		select {
		case <-s.conn.Done():
			return
		case <-t.C:
		}
		s.mu.Lock()
		if len(s.inflight) == 0 { // the dispatcher starts it again with the next webhook
			s.keeping = false
			s.mu.Unlock()
			return
		}
		leases := make(map[string]uint64, len(s.inflight))
		for id, f := range s.inflight {
			leases[id] = f.lease
		}
		s.mu.Unlock()
		lost, err := s.queue.Extend(s.ctx, s.group, leases, s.leaseTTL)
		if err != nil {
			s.log.Debug("extend leases", "err", err)
			continue
		}
		// An id acked, nacked or reported since the snapshot is no longer leased: not lost.
		s.mu.Lock()
		for _, id := range lost {
			if _, ok := s.inflight[id]; ok {
				s.log.Warn("lease of a webhook in flight ran out: it may be sent twice", "id", id)
			}
		}
		s.mu.Unlock()
	}
}

// release makes every webhook still in flight on this ended session ready again at once,
// for another agent of the endpoint or a reconnect.
func (s *session) release() {
	s.mu.Lock()
	leases := make(map[string]uint64, len(s.inflight))
	for id, f := range s.inflight {
		leases[id] = f.lease
		s.metrics.released.WithLabelValues(f.endpoint, s.group).Inc()
	}
	clear(s.inflight)
	clear(s.heads)
	s.mu.Unlock()
	if len(leases) > 0 {
		if err := s.queue.Release(context.Background(), s.group, leases); err != nil {
			s.log.Warn("release failed: the webhooks are offered again when their lease ends", "err", err)
			return
		}
		s.log.Info("released unacked webhooks", "count", len(leases))
	}
}

// stop ends the session for reason, whose String is its metrics label. A non-nil final frame
// (GoAway, Error) is written before the tunnel closes; otherwise it closes at once. Only the
// first call counts.
func (s *session) stop(reason protocol.CloseReason, final protocol.Frame) {
	s.conn.Close(reason, final)
}

func (s *session) isStopping() bool {
	select {
	case <-s.conn.Done():
		return true
	default:
		return false
	}
}

// endReason is why the session stopped: a hookrelay_tunnel_sessions_ended_total label.
func (s *session) endReason() string { return s.conn.Reason().String() }

func (s *session) info() admin.AgentInfo {
	t := s.conn.Tunnel()
	s.mu.Lock()
	defer s.mu.Unlock()
	return admin.AgentInfo{
		AgentID:     s.agentID,
		SessionID:   s.id,
		Endpoints:   s.endpoints,
		Transport:   t.Transport(),
		Remote:      t.RemoteAddr(),
		ConnectedAt: s.connectedAt,
		InFlight:    len(s.inflight),
		Group:       s.group,
	}
}

// handle takes each frame the agent sends (Pings are answered by the Conn).
func (s *session) handle(f protocol.Frame) error {
	switch f := f.(type) {
	case *protocol.Ack:
		s.handleAck(f.IDs)
	case *protocol.Nack:
		s.handleNack(f)
	case *protocol.Report:
		s.handleReport(f)
	case *protocol.Response:
		s.handleResponse(f)
	case *protocol.Hello:
		s.stop(protocol.ReasonProtocol, &protocol.Error{Code: protocol.CodeProtocol, Reason: "hello sent twice"})
		return errors.New("hello sent twice")
	default:
		s.log.Debug("unexpected frame ignored", "type", f.Type())
	}
	return nil
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
		if f, ok := s.inflight[id]; ok {
			delete(s.inflight, id)
			s.inBytes -= f.size
			if s.heads[f.endpoint] == id {
				delete(s.heads, f.endpoint)
			}
			out = append(out, id)
			if c != nil {
				c.WithLabelValues(f.endpoint, s.group).Inc()
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
	now := time.Now()
	for _, id := range mine {
		s.holds.add(id, now)
	}
	s.rec.ack(mine)
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
// this session; unknown or already finished ids change nothing, and are confirmed at once
// (version 2), so that the agent stops resending them.
func (s *session) handleReport(r *protocol.Report) {
	if s.syncs != nil {
		s.syncs.reported(s.agentID, r.ID)
	}
	if len(s.takeInflight(nil, r.ID)) > 0 {
		s.signal() // reported before its ack arrived (the ack was lost)
	} else if !s.holds.has(r.ID) {
		rec, err := metaOf(s.ctx, s.queue, r.ID)
		if err != nil || !s.grants(rec.Queue) {
			s.log.Debug("report for an unknown id ignored", "id", r.ID)
			if errors.Is(err, persist.ErrNotFound) || err == nil {
				s.confirm([]string{r.ID})
			}
			return
		}
		if rec.State == persist.StateDelivered || rec.State == persist.StateDead {
			s.log.Debug("report for a finished id ignored", "id", r.ID)
			s.confirm([]string{r.ID})
			return
		}
	}
	st, reason := persist.StateDelivered, ""
	switch r.Outcome {
	case protocol.OutcomeDelivered:
		s.metrics.reports.WithLabelValues("delivered", s.group).Inc()
		s.metrics.delivered(r.ID)
	case protocol.OutcomeDead:
		s.metrics.reports.WithLabelValues("dead", s.group).Inc()
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
	del := &persist.Delivery{At: at, Status: r.Status, Error: r.Error}
	if len(r.Headers) > 0 || len(r.Body) > 0 { // recorded for exposing routes only
		if rec, err := metaOf(s.ctx, s.queue, r.ID); err == nil && s.exposes(rec.Queue) {
			del.ResponseHeaders, del.ResponseBody = relayResponse(r.Headers, r.Body)
		}
	}
	s.rec.outcome(r.ID, st, del, reason)
	if s.holds.reported(r.ID) {
		s.signal() // the agent holds one fewer
	}
}

func (s *session) grants(endpoint string) bool {
	for _, e := range s.endpoints {
		if e == endpoint {
			return true
		}
	}
	return false
}
