package agent

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"runtime"
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
	ackYields        = 2                // idle yields that end the gathering of an Ack frame
	writeBurst       = 64               // frames written in one corked burst at most
	reportBatch      = 256              // reports read from the store at once
	storeRetryAfter  = 30 * time.Second // Nack delay when the agent cannot store
)

// capabilities are announced in Hello.
var capabilities = []string{"replay", "report"}

// session is one tunnel's life after the dial: handshake, then the reader (the caller's
// goroutine), the writer, the reporter and a bounded pool of store workers. run returns only
// after all of them stopped.
type session struct {
	// static after newSession
	a   *Agent
	tun protocol.Tunnel
	log *slog.Logger

	// set by the handshake, before any other goroutine starts
	id         string
	welcomedAt time.Time

	// shared; ctx ends the session (its cause says why)
	ctx    context.Context
	cancel context.CancelCauseFunc
	out    chan outFrame // to the writer
	acks   chan string   // stored ids, to the writer
	slots  chan struct{} // store worker tokens
	wg     sync.WaitGroup
}

// outFrame is a frame for the writer; done, when set (buffered), receives the write's result.
type outFrame struct {
	f    protocol.Frame
	done chan<- error
}

func newSession(a *Agent, tun protocol.Tunnel) *session {
	return &session{
		a:     a,
		tun:   tun,
		log:   a.log.With("transport", tun.Transport()),
		out:   make(chan outFrame, outQueue),
		acks:  make(chan string, ackQueue),
		slots: make(chan struct{}, storeWorkers),
	}
}

// run performs the handshake and serves the session until the tunnel fails or ctx ends.
func (s *session) run(ctx context.Context) error {
	defer s.tun.Close()
	if err := s.handshake(ctx); err != nil {
		return err
	}
	s.ctx, s.cancel = context.WithCancelCause(ctx)
	stop := context.AfterFunc(s.ctx, func() { s.tun.Close() })
	defer stop()

	s.a.transport.Store(s.tun.Transport())
	s.a.setTunnel(tunnelInfo{since: s.welcomedAt, session: s.id})
	s.a.connected.Store(true)
	defer func() {
		s.a.connected.Store(false)
		s.a.transport.Store("")
		s.a.setTunnel(tunnelInfo{})
	}()
	s.a.emit(Event{Kind: EventTunnelUp, Relay: s.a.relayTo, Transport: s.tun.Transport(),
		Session: s.id, AgentID: s.a.cfg.AgentID})

	s.wg.Go(s.writeLoop)
	s.wg.Go(s.reportLoop)
	err := s.readLoop()
	s.cancel(err)
	s.wg.Wait()
	// When the writer failed first, its error is the better reason.
	var wErr *writeError
	if cause := context.Cause(s.ctx); errors.As(cause, &wErr) {
		return cause
	}
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
		Version:      protocol.Version,
		AgentID:      s.a.cfg.AgentID,
		Token:        s.a.cfg.Token,
		Endpoints:    s.a.cfg.endpoints(),
		Capabilities: capabilities,
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
	s.welcomedAt = time.Now()
	s.log = s.log.With("session", w.SessionID)
	s.log.Info("tunnel up", "relay", s.a.relayTo, "remote", s.tun.RemoteAddr(),
		"endpoints", w.Endpoints, "window", w.Window)
	for _, ep := range s.a.cfg.endpoints() {
		if !slices.Contains(w.Endpoints, ep) {
			s.log.Warn("relay did not grant a route's endpoint to this token", "endpoint", ep)
		}
	}
}

// readLoop reads frames until the tunnel fails. Whole webhooks go to the store workers.
func (s *session) readLoop() error {
	asm := &protocol.Assembler{MaxBody: maxBody}
	for {
		f, err := s.tun.ReadFrame()
		if err != nil {
			return fmt.Errorf("read frame: %w", err)
		}
		switch f := f.(type) {
		case *protocol.Webhook, *protocol.Chunk:
			w, done, err := asm.Add(f)
			if err != nil {
				return fmt.Errorf("assemble webhook: %w", err)
			}
			if !done {
				break
			}
			s.a.emit(Event{Kind: EventReceived, Endpoint: w.Endpoint, ID: w.ID, Bytes: len(w.Body), Replay: w.Replay})
			if !s.startStore(w) {
				return context.Cause(s.ctx)
			}
		case *protocol.Ping:
			s.send(outFrame{f: &protocol.Pong{Nonce: f.Nonce}})
		case *protocol.GoAway:
			return &goAwayError{reason: f.Reason, after: f.ReconnectAfter}
		case *protocol.Error:
			return &RelayError{Code: f.Code, Reason: f.Reason}
		default:
			s.log.Debug("frame ignored", "type", f.Type())
		}
	}
}

// startStore hands w to a store worker, waiting for a free one. False when the session ended.
func (s *session) startStore(w *protocol.Webhook) bool {
	select {
	case s.slots <- struct{}{}:
	case <-s.ctx.Done():
		return false
	}
	s.wg.Go(func() {
		defer func() { <-s.slots }()
		s.storeWebhook(w)
	})
	return true
}

// storeWebhook appends w durably, then acks it; or nacks it when the agent cannot hold it.
func (s *session) storeWebhook(w *protocol.Webhook) {
	if s.a.routes[w.Endpoint] == nil {
		s.nack(w, "no_route", "no route for endpoint "+w.Endpoint)
		return
	}
	rec := &persist.Record{
		ID:         w.ID,
		Queue:      w.Endpoint,
		ReceivedAt: w.ReceivedAt,
		Method:     w.Method,
		Path:       w.Path,
		Query:      w.Query,
		Headers:    make([]persist.Header, len(w.Headers)),
		Body:       w.Body,
		Replay:     w.Replay,
	}
	for i, h := range w.Headers {
		rec.Headers[i] = persist.Header{Name: h.Name, Value: h.Value}
	}
	// Not the session's context: an append under way finishes even if the tunnel drops (the
	// relay then redelivers, and the duplicate is acked).
	err := s.a.store.Append(context.Background(), rec)
	switch {
	case err == nil:
		s.log.Debug("webhook stored", "id", w.ID, "endpoint", w.Endpoint, "bytes", len(w.Body), "replay", w.Replay)
		s.a.emit(Event{Kind: EventStored, Endpoint: w.Endpoint, ID: w.ID, Bytes: len(w.Body), Replay: w.Replay})
		s.ack(w.ID)
	case errors.Is(err, persist.ErrExists):
		if w.Replay {
			// A replay of an id already held: deliver it again. ErrState means it is still
			// pending, so it will be delivered anyway.
			if err := s.a.store.Replay(w.ID); err != nil && !errors.Is(err, persist.ErrState) {
				s.log.Warn("replay stored webhook", "id", w.ID, "err", err)
				s.nack(w, "replay", "replay: "+err.Error())
				return
			}
			s.a.routes[w.Endpoint].wakeUp()
		}
		s.log.Debug("webhook already stored", "id", w.ID, "replay", w.Replay)
		s.a.emit(Event{Kind: EventDuplicate, Endpoint: w.Endpoint, ID: w.ID, Replay: w.Replay})
		s.ack(w.ID)
	case errors.Is(err, persist.ErrQuota), errors.Is(err, persist.ErrDiskFull):
		s.log.Warn("cannot store webhook, pushing back", "id", w.ID, "endpoint", w.Endpoint, "err", err)
		kind := "quota"
		if errors.Is(err, persist.ErrDiskFull) {
			kind = "disk_full"
		}
		s.nack(w, kind, err.Error())
	default:
		s.log.Error("store webhook", "id", w.ID, "err", err)
		s.nack(w, "store", "store: "+err.Error())
	}
}

func (s *session) ack(id string) {
	select {
	case s.acks <- id:
	case <-s.ctx.Done():
	}
}

// nack refuses w back to the relay; kind is the reason's class for metrics and events.
func (s *session) nack(w *protocol.Webhook, kind, reason string) {
	s.a.emit(Event{Kind: EventNacked, Endpoint: w.Endpoint, ID: w.ID, ErrKind: kind, Reason: reason})
	s.send(outFrame{f: &protocol.Nack{ID: w.ID, Reason: reason, RetryAfter: storeRetryAfter}})
}

// send queues a frame for the writer; false when the session ended.
func (s *session) send(o outFrame) bool {
	select {
	case s.out <- o:
		return true
	case <-s.ctx.Done():
		return false
	}
}

// writeError is the writer's failure, the cause that ends the session.
type writeError struct{ err error }

func (e *writeError) Error() string { return "write frame: " + e.err.Error() }
func (e *writeError) Unwrap() error { return e.err }

// writeLoop is the only writer of frames once the session runs. Ids that are ready together
// go out in one Ack frame, and frames that are ready together are written corked
// (protocol.Corker), in one system call; a frame's done hears its result once it has left.
func (s *session) writeLoop() {
	corker, _ := s.tun.(protocol.Corker)
	var dones []chan<- error
	for {
		var o outFrame
		select {
		case <-s.ctx.Done():
			return
		case id := <-s.acks:
			o = outFrame{f: &protocol.Ack{IDs: s.gatherAcks([]string{id})}}
		case o = <-s.out:
		}
		if corker != nil {
			corker.Cork()
		}
		err := s.writeOut(o, &dones)
		for n := 1; err == nil && n < writeBurst; n++ {
			var ok bool
			if o, ok = s.readyOut(); !ok {
				break
			}
			err = s.writeOut(o, &dones)
		}
		if corker != nil {
			if uerr := corker.Uncork(); err == nil {
				err = uerr
			}
		}
		for _, d := range dones { // a corked frame has left only now
			d <- err
		}
		dones = dones[:0]
		if err != nil {
			s.cancel(&writeError{err: err})
			return
		}
	}
}

func (s *session) writeOut(o outFrame, dones *[]chan<- error) error {
	if o.done != nil {
		*dones = append(*dones, o.done)
	}
	return s.tun.WriteFrame(o.f)
}

// readyOut returns a frame waiting for the writer, if any: an Ack of the ids waiting, or a
// queued frame.
func (s *session) readyOut() (outFrame, bool) {
	select {
	case id := <-s.acks:
		ids := []string{id}
	drain:
		for len(ids) < maxAckBatch {
			select {
			case id := <-s.acks:
				ids = append(ids, id)
			default:
				break drain
			}
		}
		return outFrame{f: &protocol.Ack{IDs: ids}}, true
	case o := <-s.out:
		return o, true
	default:
		return outFrame{}, false
	}
}

// gatherAcks adds the ids waiting to ids, up to maxAckBatch. The store workers of one group
// commit are woken one after the other, so the writer, woken by the first, would otherwise
// send an Ack frame per id: it yields to let the others, runnable by then, queue theirs,
// until a few yields in a row bring nothing.
func (s *session) gatherAcks(ids []string) []string {
	for idle := 0; len(ids) < maxAckBatch && idle < ackYields; {
		select {
		case id := <-s.acks:
			ids = append(ids, id)
			idle = 0
		default:
			idle++
			runtime.Gosched()
		}
	}
	return ids
}
