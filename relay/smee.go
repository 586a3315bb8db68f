package relay

import (
	"context"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/hookrelay/hookrelay/persist"
	"github.com/hookrelay/hookrelay/relay/verify"
)

const (
	// smeeWriteTimeout bounds writing one event: a client that reads nothing for that long
	// is cut, and reconnects with Last-Event-ID.
	smeeWriteTimeout = 30 * time.Second
	// smeeSlack is how much earlier than its id's time a webhook may have been received
	// (ids are given at commit, received_at before it), for reading the backlog by time.
	smeeSlack = time.Minute
	// smeeBacklogMax bounds the webhooks one backlog read holds (metadata only).
	smeeBacklogMax = 20000
	// smeeOverlap: the webhooks a stream sent in its last smeeOverlap are sent again to the
	// endpoint's next stream without Last-Event-ID. A write that succeeded may still be lost
	// with a client that was killed, and the relay notices a closed stream only a moment
	// later: at least once, as everywhere (targets de-duplicate by hookrelay-id).
	smeeOverlap = 5 * time.Second
)

// serveSmee serves the smee streams: GET /h/{endpoint} with Accept: text/event-stream on a
// smee endpoint (smee.io's format), and GET /h/events/{endpoint} (gosmee's). It reports false
// for every other request, which ingress then takes as before.
func (s *Server) serveSmee(w http.ResponseWriter, r *http.Request) bool {
	if r.Method != http.MethodGet {
		return false
	}
	name, suffix, ok := splitIngressPath(ingressPath(r))
	if !ok {
		return false
	}
	format := formatSmee
	switch {
	case name == smeeEventsName && suffix != "" && !strings.Contains(suffix[1:], "/"):
		n, err := url.PathUnescape(suffix[1:])
		if err != nil {
			return false
		}
		name, format = n, formatGosmee
	case suffix == "" && acceptsEventStream(r):
	default:
		return false
	}
	lv := s.live.Load()
	ep := s.endpointFor(lv, name)
	if ep == nil || !ep.cfg.Smee {
		if format == formatSmee {
			return false // a webhook that happens to accept event streams
		}
		writeError(w, http.StatusNotFound, "no smee endpoint of that name")
		return true
	}
	if !s.serving() {
		retryLater(w, http.StatusServiceUnavailable, retryStopping, "relay is starting or stopping: retry later")
		return true
	}
	s.streamSmee(w, r, lv, ep, format)
	return true
}

func acceptsEventStream(r *http.Request) bool {
	for _, v := range r.Header.Values("Accept") {
		if strings.Contains(v, "text/event-stream") {
			return true
		}
	}
	return false
}

// streamSmee streams ep's webhooks to one client until it goes away or the relay stops:
// first the backlog from the store (after Last-Event-ID, or after the endpoint's last
// stream), then each webhook as it is stored. Streams only read: agent delivery never
// sees them.
func (s *Server) streamSmee(w http.ResponseWriter, r *http.Request, lv *live, ep *endpoint, format smeeFormat) {
	client, reason := verify.ClientAddr(r, lv.trusted)
	if reason != "" {
		client, _ = verify.ClientAddr(r, nil)
	}
	use, ok := s.clients.enter(client, lv.cfg.PerClientRequests)
	if !ok {
		retryLater(w, http.StatusTooManyRequests, retryBusy, "too many requests in flight from your address (per_client_requests): retry later")
		return
	}
	defer s.clients.leave(use)
	s.channels.attach(ep.name, +1)
	defer s.channels.attach(ep.name, -1)

	st := &smeeStream{s: s, w: w, rc: http.NewResponseController(w), ep: ep.name, format: format, sent: map[string]bool{}}
	st.cursor = s.smee.startCursor(ep.name, r.Header.Get("Last-Event-ID"), time.Now().Add(-lv.cfg.KeepDone))
	st.safe = st.cursor
	sub := s.smee.subscribe(ep.name) // before the backlog: nothing falls between them
	defer func() { s.smee.leave(sub, st.mark(time.Now())) }()
	s.smeeM.streams.Inc()
	defer s.smeeM.streams.Dec()
	s.log.Debug("smee stream attached", "endpoint", ep.name, "remote", r.RemoteAddr, "after", st.cursor)

	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-cache")
	h.Set("X-Accel-Buffering", "no")
	w.WriteHeader(http.StatusOK)
	ready := smeeReady
	if format == formatGosmee {
		ready = gosmeeReady
	}
	ctx := r.Context()
	if st.write(ready) != nil || st.backlog(ctx, lv.cfg.KeepDone) != nil {
		return
	}
	ping := time.NewTicker(lv.cfg.SmeeKeepAlive)
	defer ping.Stop()
	for {
		var err error
		select {
		case <-ctx.Done():
			return
		case <-s.smee.closing:
			return
		case rec := <-sub.ch:
			err = st.send(ctx, rec)
		case <-sub.lag:
			err = st.backlog(ctx, lv.cfg.KeepDone)
		case <-ping.C:
			err = st.write(smeePing)
		}
		if err != nil {
			s.log.Debug("smee stream ended", "endpoint", ep.name, "remote", r.RemoteAddr, "err", err)
			return
		}
	}
}

// smeeStream is one attached client; owned by its handler's goroutine.
type smeeStream struct {
	s      *Server
	w      http.ResponseWriter
	rc     *http.ResponseController
	ep     string
	format smeeFormat
	cursor string          // the greatest id sent (or the start)
	sent   map[string]bool // ids sent from the backlog, which the inbox may hold again
	recent []sentID        // sent in the last smeeOverlap, oldest first
	safe   string          // the greatest id sent before those (or the start)
}

type sentID struct {
	at time.Time
	id string
}

// mark is where the next stream without Last-Event-ID starts if this one ends at now: after
// the webhooks sent up to smeeOverlap before now.
func (st *smeeStream) mark(now time.Time) string {
	i := 0
	for ; i < len(st.recent) && now.Sub(st.recent[i].at) >= smeeOverlap; i++ {
		st.safe = max(st.safe, st.recent[i].id)
	}
	st.recent = st.recent[i:]
	return st.safe
}

// backlog sends what the store holds after the cursor, oldest first.
func (st *smeeStream) backlog(ctx context.Context, keepDone time.Duration) error {
	since := time.Now().Add(-keepDone)
	if t, ok := idTime(st.cursor); ok && t.Add(-smeeSlack).After(since) {
		since = t.Add(-smeeSlack)
	}
	recs, err := st.s.queue.List(ctx, persist.Filter{Queue: st.ep, Since: since, Limit: smeeBacklogMax})
	if err != nil {
		return err
	}
	slices.SortFunc(recs, func(a, b *persist.Record) int { return strings.Compare(a.ID, b.ID) })
	for _, rec := range recs {
		if rec.ID <= st.cursor || st.sent[rec.ID] {
			continue
		}
		if err := st.send(ctx, rec); err != nil {
			return err
		}
		st.sent[rec.ID] = true
	}
	return nil
}

// send writes one webhook, reading its body from the store when rec has none.
func (st *smeeStream) send(ctx context.Context, rec *persist.Record) error {
	if st.sent[rec.ID] {
		return nil
	}
	body := rec.Body
	if body == nil && rec.BodyLen > 0 {
		rc, err := st.s.queue.Body(ctx, rec.ID)
		if err != nil {
			return err
		}
		body, err = io.ReadAll(rc)
		rc.Close()
		if err != nil {
			return err
		}
	}
	ev, err := smeeEvent(rec, body, st.format)
	if err != nil {
		return err
	}
	if err := st.write(ev); err != nil {
		return err
	}
	st.s.smeeM.events.Inc()
	st.cursor = max(st.cursor, rec.ID)
	now := time.Now()
	st.mark(now) // trims recent
	st.recent = append(st.recent, sentID{now, rec.ID})
	return nil
}

func (st *smeeStream) write(b []byte) error {
	st.rc.SetWriteDeadline(time.Now().Add(smeeWriteTimeout))
	if _, err := st.w.Write(b); err != nil {
		return err
	}
	return st.rc.Flush()
}

// afterAppend is ingress's hook once a webhook is stored: a stream-only endpoint's webhook is
// finished at once (it waits for no agent and never counts as pending), and the endpoint's
// streams get it.
func (s *Server) afterAppend(ctx context.Context, ep *endpoint, rec *persist.Record) {
	if ep.streamOnly() {
		for _, g := range groupsOf(&ep.cfg) { // finished for every group: no agent takes it
			errs := s.queue.Apply(ctx, g, []persist.Change{{ID: rec.ID, State: persist.StateDelivered}})
			if errs[0] != nil {
				s.log.Warn("stream-only webhook left pending (the next sweep finishes it)", "endpoint", ep.name, "id", rec.ID, "group", g, "err", errs[0])
			}
		}
	}
	s.channels.touch(ep.name)
	s.smee.publish(ep.name, rec)
}

// finishStreamOnly finishes the pending webhooks of stream-only endpoints that a crash
// between storing and finishing left behind (retention loop).
func (s *Server) finishStreamOnly(ctx context.Context, eps []*endpoint) {
	for _, ep := range eps {
		if !ep.streamOnly() {
			continue
		}
		for _, g := range groupsOf(&ep.cfg) {
			recs, err := s.queue.List(ctx, persist.Filter{Queue: ep.name, Group: g, State: persist.StateReady, Limit: 1000})
			if err != nil || len(recs) == 0 {
				continue
			}
			changes := make([]persist.Change, len(recs))
			for i, rec := range recs {
				changes[i] = persist.Change{ID: rec.ID, State: persist.StateDelivered}
			}
			s.queue.Apply(ctx, g, changes)
		}
	}
}
