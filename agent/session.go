package agent

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hookrelay/hookrelay/persist"
	"github.com/hookrelay/hookrelay/protocol"
)

// Session limits.
const (
	handshakeTimeout = 10 * time.Second // from dial to Welcome
	maxBody          = 32 << 20         // largest webhook body accepted from the relay
	storeWorkers     = 64               // appends in flight at once (they share group commits)
	outQueue         = 256              // frames waiting for the writer
	ackQueue         = 4096             // stored ids waiting to be acked
	maxAckBatch      = 1024             // ids in one Ack frame
	writeBurst       = 64               // frames written in one corked burst at most
	reportBatch      = 256              // reports read from the store at once
	storeRetryAfter  = 30 * time.Second // Nack delay when the agent cannot store
)

// capabilities are announced in Hello.
var capabilities = []string{"replay", "report"}

// sessionEnv is what a session needs from its agent, and all it calls back into.
type sessionEnv struct {
	log        *slog.Logger
	agentID    string
	token      string
	endpoints  []string // asked for in Hello
	expose     []string // endpoints whose route exposes its target's answers (Hello)
	group      string   // the consumer group the agent serves (Hello; "" = default)
	holds      *syncHolds
	verdict    func(*protocol.Verdict)
	relayTo    string // as logged
	store      *persist.Store
	routes     *routeSet
	emit       func(Event)
	reportWake <-chan struct{} // a record reached a final state
	version    uint16          // the protocol version Hello says
	// up is called once the relay welcomed the session, down when it ended.
	up   func(transport, session string, since time.Time)
	down func()
}

// session is one tunnel's life after the dial: the handshake, then a protocol.Conn (the
// reader in the caller's goroutine, and the writer), the reporter and a bounded pool of store
// workers. run returns only after all of them stopped.
type session struct {
	// static after newSession
	env sessionEnv
	tun protocol.Tunnel
	log *slog.Logger

	// set by the handshake, before any other goroutine starts
	id         string
	welcomedAt time.Time
	version    uint16 // the session's protocol version: 1, or 2 when the relay confirms reports

	// set by run before the session's goroutines start; ctx ends with the session
	conn *protocol.Conn
	ctx  context.Context
	asm  *protocol.Assembler // owned by the reader
	// storeQ hands webhooks to idle store workers (startStore); workers counts those started,
	// up to storeWorkers (reader only). A worker serves until the session ends: a goroutine
	// per webhook grew a fresh stack for each.
	storeQ  chan *protocol.Webhook
	workers int
	// ordered holds the store of each ordered endpoint seen (session_order.go); reader only.
	ordered map[string]*orderedStore
	wg      sync.WaitGroup

	recorded chan []string // v2: ids the relay confirmed, from the reader to the reporter
	bodies   stagedBodies  // streamed bodies, from the reader to the store workers
}

func newSession(a *Agent, tun protocol.Tunnel) *session {
	env := a.sessionEnv()
	s := &session{
		env:      env,
		tun:      tun,
		log:      env.log.With("transport", tun.Transport()),
		asm:      &protocol.Assembler{MaxBody: maxBody, SinkOver: sinkOver},
		storeQ:   make(chan *protocol.Webhook),
		recorded: make(chan []string, 64),
	}
	s.asm.Sink = s.sinkFor
	return s
}

// run performs the handshake and serves the session until the tunnel fails or ctx ends.
func (s *session) run(ctx context.Context) error {
	if err := s.handshake(ctx); err != nil {
		s.tun.Close()
		return err
	}
	s.conn = protocol.NewConn(s.tun, protocol.ConnConfig{
		Queue:     outQueue,
		AckQueue:  ackQueue,
		MaxAckIDs: maxAckBatch,
		Burst:     writeBurst,
		Logger:    s.log,
	})
	var cancel context.CancelFunc
	s.ctx, cancel = context.WithCancel(ctx)
	defer cancel()

	s.env.up(s.tun.Transport(), s.id, s.welcomedAt)
	defer s.env.down()

	s.wg.Go(s.reportLoop)
	err := s.conn.Run(s.ctx, s.handle) // closes the tunnel
	cancel()
	s.wg.Wait()
	s.dropBodies()
	return err
}

// handshake sends Hello and waits for Welcome under handshakeTimeout.
func (s *session) handshake(ctx context.Context) error {
	var timedOut atomic.Bool
	timer := time.AfterFunc(handshakeTimeout, func() {
		timedOut.Store(true)
		s.tun.Close()
	})
	defer timer.Stop()
	stop := context.AfterFunc(ctx, func() { s.tun.Close() })
	defer stop()

	hello := &protocol.Hello{
		Version:      s.env.version,
		AgentID:      s.env.agentID,
		Token:        s.env.token,
		Endpoints:    s.env.endpoints,
		Capabilities: capabilities,
		Expose:       s.env.expose,
		Group:        s.env.group,
	}
	if err := s.tun.WriteFrame(hello); err != nil {
		return fmt.Errorf("send hello: %w", err)
	}
	for {
		f, err := s.tun.ReadFrame()
		if err != nil {
			if timedOut.Load() {
				return fmt.Errorf("no welcome from the relay within %v", handshakeTimeout)
			}
			return fmt.Errorf("wait for welcome: %w", err)
		}
		switch f := f.(type) {
		case *protocol.Welcome:
			s.welcomed(f)
			return nil
		case *protocol.Error:
			return &RelayError{Code: f.Code, Reason: f.Reason}
		case *protocol.GoAway:
			return &goAwayError{reason: f.Reason, after: f.ReconnectAfter}
		case *protocol.Ping:
			if err := s.tun.WriteFrame(&protocol.Pong{Nonce: f.Nonce}); err != nil {
				return fmt.Errorf("send pong: %w", err)
			}
		default:
			return fmt.Errorf("unexpected frame %d before welcome", f.Type())
		}
	}
}

func (s *session) welcomed(w *protocol.Welcome) {
	s.id = w.SessionID
	s.version = min(max(w.Version, protocol.MinVersion), s.env.version)
	s.welcomedAt = time.Now()
	s.log = s.log.With("session", w.SessionID)
	s.log.Info("tunnel up", "relay", s.env.relayTo, "remote", s.tun.RemoteAddr(),
		"endpoints", w.Endpoints, "window", w.Window, "protocol", s.version)
	for _, ep := range s.env.endpoints {
		if !slices.Contains(w.Endpoints, ep) {
			s.log.Warn("relay did not grant a route's endpoint to this token", "endpoint", ep)
		}
	}
}

// handle takes each frame the relay sends (Pings are answered by the Conn). Whole webhooks
// go to the store workers.
func (s *session) handle(f protocol.Frame) error {
	switch f := f.(type) {
	case *protocol.Webhook, *protocol.Chunk:
		w, done, err := s.asm.Add(f)
		if err != nil {
			return fmt.Errorf("assemble webhook: %w", err)
		}
		if !done {
			break
		}
		s.env.emit(Event{Kind: EventReceived, Endpoint: w.Endpoint, ID: w.ID, Bytes: int(w.BodyLen), Replay: w.Replay})
		if !s.startStore(w) {
			return errSessionEnded
		}
	case *protocol.Recorded:
		select {
		case s.recorded <- f.IDs:
		case <-s.ctx.Done():
			return errSessionEnded
		}
	case *protocol.Verdict:
		s.env.verdict(f)
	case *protocol.GoAway:
		return &goAwayError{reason: f.Reason, after: f.ReconnectAfter}
	case *protocol.Error:
		return &RelayError{Code: f.Code, Reason: f.Reason}
	default:
		s.log.Debug("frame ignored", "type", f.Type())
	}
	return nil
}

// startStore hands w to a store worker: an idle one, a new one while fewer than storeWorkers
// run, else the first to be free. A webhook of an endpoint with an ordered route goes to its
// endpoint's ordered store. False when the session ended.
func (s *session) startStore(w *protocol.Webhook) bool {
	for _, d := range s.env.routes.byEndpoint[w.Endpoint] {
		if d.r.Ordered {
			return s.startOrdered(w)
		}
	}
	select {
	case s.storeQ <- w:
		return true
	default:
	}
	if s.workers < storeWorkers {
		s.workers++
		s.wg.Go(func() { s.storeWorker(w) })
		return true
	}
	select {
	case s.storeQ <- w:
		return true
	case <-s.conn.Done():
		return false
	case <-s.ctx.Done():
		return false
	}
}

// storeWorker stores w, then each webhook startStore hands it, until the session ends.
func (s *session) storeWorker(w *protocol.Webhook) {
	for {
		s.storeWebhook(w)
		select {
		case w = <-s.storeQ:
		case <-s.ctx.Done():
			return
		}
	}
}

// storeWebhook appends w durably, one copy per route of its endpoint (store_copies.go), then
// acks it; or nacks it when the agent cannot hold it. True when w is held (stored now or
// before).
func (s *session) storeWebhook(w *protocol.Webhook) bool {
	ds := s.env.routes.byEndpoint[w.Endpoint]
	if len(ds) == 0 {
		s.appendRecord(w, nil, true) // drops a staged body
		s.nack(w, "no_route", "no route for endpoint "+w.Endpoint)
		return false
	}
	// A sync webhook's first answer is the first route's (its copy keeps the webhook id).
	hold := w.Sync && s.version >= 2 && ds[0].r.ExposeResponse
	if hold { // before the append: a deliverer may lease it at once
		s.env.holds.add(w.ID, s)
	}
	// Not the session's context: an append under way finishes even if the tunnel drops (the
	// relay then redelivers, and the duplicate is acked).
	stored, existed, err := s.storeCopies(w, ds)
	if hold && (err != nil || stored == 0) {
		s.env.holds.take(w.ID)
	}
	switch {
	case err == nil && stored > 0:
		// A route added since holds a new copy; the others go out again.
		if w.Replay && existed > 0 && !s.replayCopies(w, ds) {
			return false
		}
		s.log.Debug("webhook stored", "id", w.ID, "endpoint", w.Endpoint, "bytes", w.BodyLen, "replay", w.Replay, "copies", stored)
		s.env.emit(Event{Kind: EventStored, Endpoint: w.Endpoint, ID: w.ID, Bytes: int(w.BodyLen), Replay: w.Replay})
		s.ack(w.ID)
	case err == nil:
		if w.Replay && !s.replayCopies(w, ds) {
			return false
		}
		s.log.Debug("webhook already stored", "id", w.ID, "replay", w.Replay)
		s.env.emit(Event{Kind: EventDuplicate, Endpoint: w.Endpoint, ID: w.ID, Replay: w.Replay})
		if !w.Replay && s.answerFinished(w.Endpoint, w.ID) {
			return true
		}
		s.ack(w.ID)
	case errors.Is(err, persist.ErrQuota), errors.Is(err, persist.ErrDiskFull):
		s.log.Warn("cannot store webhook, pushing back", "id", w.ID, "endpoint", w.Endpoint, "err", err)
		kind := "quota"
		if errors.Is(err, persist.ErrDiskFull) {
			kind = "disk_full"
		}
		s.nack(w, kind, err.Error())
		return false
	default:
		s.log.Error("store webhook", "id", w.ID, "err", err)
		s.nack(w, "store", "store: "+err.Error())
		return false
	}
	return true
}

// replayCopies makes every copy of a replayed webhook the agent already held go out again
// (ErrState: a copy still pending goes out anyway). False, after a nack, when one failed.
func (s *session) replayCopies(w *protocol.Webhook, ds []*deliverer) bool {
	for _, d := range ds {
		err := s.env.store.Replay(d.r.copyID(w.ID))
		if err != nil && !errors.Is(err, persist.ErrState) && !errors.Is(err, persist.ErrNotFound) {
			s.log.Warn("replay stored webhook", "id", w.ID, "route", d.r.Name, "err", err)
			s.nack(w, "replay", "replay: "+err.Error())
			return false
		}
		d.wakeUp()
	}
	return true
}

func (s *session) ack(id string) {
	s.conn.Ack(s.ctx, id) // fails only when the session ended: the relay redelivers
}

// nack refuses w back to the relay; kind is the reason's class for metrics and events.
func (s *session) nack(w *protocol.Webhook, kind, reason string) {
	s.env.emit(Event{Kind: EventNacked, Endpoint: w.Endpoint, ID: w.ID, ErrKind: kind, Reason: reason})
	s.conn.Send(s.ctx, &protocol.Nack{ID: w.ID, Reason: reason, RetryAfter: storeRetryAfter})
}
