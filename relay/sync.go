package relay

import (
	"context"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/hookrelay/hookrelay/persist"
	"github.com/hookrelay/hookrelay/protocol"
)

const (
	// syncSettle bounds how long a dispatcher waits for ingress requests of an endpoint that
	// stored a webhook and have not yet said whether they wait for its answer.
	syncSettle = 2 * time.Second
	// maxOwedVerdicts bounds the verdicts an agent is owed (resent on its next session).
	maxOwedVerdicts = 1024
	// reasonReturned is the dead reason of a webhook whose non-2xx answer reached its sender.
	reasonReturned = "returned to sender"
	// maxRelayResponse is the response body the relay records, for exposing routes.
	maxRelayResponse = 4 << 10
)

// syncWaits is where ingress requests of sync endpoints wait for a target's answer, by
// webhook id, and what the dispatchers ask before they send a webhook: is someone waiting
// for its answer (then the Webhook frame asks for it)?
//
// An ingress request learns the id only once the webhook is stored, and a dispatcher may
// lease it the moment it is: so a request announces itself (prepare) before it stores, and a
// dispatcher that leases a webhook of an endpoint with announced requests waits (briefly)
// until those announced then have registered their ids — the one that stored it is among
// them. Requests announced later cannot have stored it, so a busy endpoint never stalls it.
type syncWaits struct {
	mu        sync.Mutex
	waits     map[string]*syncWait
	preparing map[string]map[*syncPrep]struct{} // endpoint → requests between prepare and register
	owed      map[string][]string               // agent id → ids returned to their sender, verdict not yet answered by a report
}

// syncPrep is one announced request; done is closed when it registered.
type syncPrep struct {
	done chan struct{}
}

// syncWait is one ingress request waiting for the answer to webhook id.
type syncWait struct {
	endpoint string
	answer   chan syncAnswer // cap 1: the first answer (or a dispatcher's "none coming")
}

// syncAnswer is a target's answer and the session it came by; resp nil: none is coming.
type syncAnswer struct {
	resp *protocol.Response
	from *session
}

func newSyncWaits() *syncWaits {
	return &syncWaits{waits: map[string]*syncWait{}, preparing: map[string]map[*syncPrep]struct{}{}, owed: map[string][]string{}}
}

// prepare announces an ingress request about to store a webhook of endpoint. The caller must
// call the returned register exactly once: with the stored id (it then waits on the answer
// channel), or "" when nothing was stored.
func (w *syncWaits) prepare(endpoint string) (register func(id string) *syncWait) {
	p := &syncPrep{done: make(chan struct{})}
	w.mu.Lock()
	ps := w.preparing[endpoint]
	if ps == nil {
		ps = map[*syncPrep]struct{}{}
		w.preparing[endpoint] = ps
	}
	ps[p] = struct{}{}
	w.mu.Unlock()
	return func(id string) *syncWait {
		w.mu.Lock()
		defer w.mu.Unlock()
		var sw *syncWait
		if id != "" {
			sw = &syncWait{endpoint: endpoint, answer: make(chan syncAnswer, 1)}
			w.waits[id] = sw
		}
		delete(ps, p)
		if len(ps) == 0 {
			delete(w.preparing, endpoint)
		}
		close(p.done)
		return sw
	}
}

// expect reports whether an ingress request waits for the answer to id (of endpoint).
func (w *syncWaits) expect(ctx context.Context, id, endpoint string) bool {
	ok, pending := w.pendingFor(id, endpoint)
	if ok || len(pending) == 0 {
		return ok
	}
	return w.await(ctx, id, pending)
}

// pendingFor reports whether a request waits for id, and if not, the requests of endpoint
// announced and not yet registered (one of them may have stored id).
func (w *syncWaits) pendingFor(id, endpoint string) (bool, []chan struct{}) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if _, ok := w.waits[id]; ok {
		return true, nil
	}
	var pending []chan struct{}
	for p := range w.preparing[endpoint] {
		pending = append(pending, p.done)
	}
	return false, pending
}

// await waits (at most syncSettle) until the pending requests registered, then reports
// whether one waits for id.
func (w *syncWaits) await(ctx context.Context, id string, pending []chan struct{}) bool {
	deadline := time.NewTimer(syncSettle)
	defer deadline.Stop()
	for _, done := range pending {
		select {
		case <-done:
		case <-deadline.C:
			return false
		case <-ctx.Done():
			return false
		}
	}
	w.mu.Lock()
	_, ok := w.waits[id]
	w.mu.Unlock()
	return ok
}

// answer hands the answer to id to the request waiting for it; false when none waits (it
// timed out, or the webhook was received by another relay of the cluster). Only a session
// granted the webhook's endpoint may answer it.
func (w *syncWaits) answer(id string, a syncAnswer) bool {
	w.mu.Lock()
	sw := w.waits[id]
	if sw == nil || (a.from != nil && !a.from.grants(sw.endpoint)) {
		w.mu.Unlock()
		return false
	}
	delete(w.waits, id)
	w.mu.Unlock()
	sw.answer <- a
	return true
}

// drop removes the wait for id (the request stops waiting).
func (w *syncWaits) drop(id string) {
	w.mu.Lock()
	delete(w.waits, id)
	w.mu.Unlock()
}

// owe remembers that agentID must hear that id was returned to its sender, until it reports
// id; the oldest are forgotten past maxOwedVerdicts.
func (w *syncWaits) owe(agentID, id string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	ids := append(w.owed[agentID], id)
	w.owed[agentID] = ids[max(0, len(ids)-maxOwedVerdicts):]
}

// owedTo lists the ids agentID is owed a verdict for.
func (w *syncWaits) owedTo(agentID string) []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return append([]string(nil), w.owed[agentID]...)
}

// reported forgets the verdict owed for id: the agent reported its outcome.
func (w *syncWaits) reported(agentID, id string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	ids := w.owed[agentID]
	for i, x := range ids {
		if x == id {
			ids = append(ids[:i:i], ids[i+1:]...)
			break
		}
	}
	if len(ids) == 0 {
		delete(w.owed, agentID)
	} else {
		w.owed[agentID] = ids
	}
}

// syncFlag reports whether the Webhook frame of leased record r asks for the target's answer:
// its first attempt, and an ingress request waits for it. A session that will not answer
// (version 1, or its route does not expose answers) lets the request fall back at once.
func (s *session) syncFlag(r *persist.Record) bool {
	if s.syncs == nil || r.Attempts > 0 || r.Replay || !s.syncs.expect(s.ctx, r.ID, r.Queue) {
		return false
	}
	if s.version < 2 || !s.exposes(r.Queue) {
		s.syncs.answer(r.ID, syncAnswer{from: s})
		return false
	}
	return true
}

func (s *session) exposes(endpoint string) bool {
	for _, e := range s.expose {
		if e == endpoint {
			return true
		}
	}
	return false
}

// handleResponse takes a target's answer to a sync webhook: to the request waiting for it,
// or, when none waits any more, a verdict that lets the agent retry as usual.
func (s *session) handleResponse(r *protocol.Response) {
	if s.syncs == nil || !s.syncs.answer(r.ID, syncAnswer{resp: r, from: s}) {
		s.verdict(r.ID, false)
	}
}

// verdict tells the agent whether the answer to id reached its sender.
func (s *session) verdict(id string, returned bool) {
	if s.version < 2 {
		return
	}
	if err := s.conn.SendControl(s.ctx, &protocol.Verdict{ID: id, Returned: returned}); err != nil {
		s.log.Debug("verdict not sent", "id", id, "err", err)
	}
}

// sendOwedVerdicts resends, on a new session, the verdicts its agent has not answered.
func (s *session) sendOwedVerdicts() {
	if s.syncs == nil {
		return
	}
	for _, id := range s.syncs.owedTo(s.agentID) {
		s.verdict(id, true)
	}
}

// answerSync waits for the target's answer to rec (stored already) and returns it to the
// sender, or falls back to 202 with hookrelay-sync: fallback. When a non-2xx answer reached
// the sender, the sender owns the retries: the agent is told to stop retrying (until it
// reports the webhook, on its later sessions too), and a Standard Webhooks resend of msgID is
// stored anew.
func (s *Server) answerSync(w http.ResponseWriter, r *http.Request, ep *endpoint, rec *persist.Record, sw *syncWait, msgID string) {
	wait := ep.cfg.Sync.wait()
	rc := http.NewResponseController(w)
	rc.SetWriteDeadline(time.Now().Add(wait + answerGrace)) // body_timeout may be shorter than the wait
	timer := time.NewTimer(wait)
	defer timer.Stop()
	var a syncAnswer
	select {
	case a = <-sw.answer:
	case <-timer.C:
	case <-r.Context().Done():
	}
	if a.from == nil { // no answer in time: one may have raced in after all
		s.syncs.drop(rec.ID)
		select {
		case a = <-sw.answer:
		default:
		}
	}
	if a.resp == nil || a.resp.Status < 200 || a.resp.Status > 599 || r.Context().Err() != nil {
		if a.resp != nil {
			a.from.verdict(rec.ID, false)
		}
		s.metrics.syncAnswers.WithLabelValues(ep.name, "fallback").Inc()
		syncFallback(w, rec.ID)
		return
	}
	rc.SetWriteDeadline(time.Now().Add(answerGrace + time.Duration(len(a.resp.Body)>>10)*time.Millisecond))
	h := w.Header()
	h.Del("Content-Type")
	drop := protocol.HopByHop(connectionValues(a.resp.Headers))
	for _, x := range a.resp.Headers {
		name := http.CanonicalHeaderKey(x.Name)
		if validHeaderName(name) && !drop(name) && name != "Content-Length" && !strings.ContainsAny(x.Value, "\r\n\x00") {
			h.Add(name, x.Value)
		}
	}
	h.Set("Hookrelay-Id", rec.ID)
	h.Set("Content-Length", strconv.Itoa(len(a.resp.Body)))
	w.WriteHeader(a.resp.Status)
	_, err := w.Write(a.resp.Body)
	if err == nil {
		err = rc.Flush()
	}
	returned := err == nil
	s.metrics.syncAnswers.WithLabelValues(ep.name, "returned").Inc()
	if returned && (a.resp.Status < 200 || a.resp.Status > 299) {
		if msgID != "" {
			s.forgetMessageID(r.Context(), ep.name, msgID, rec.ID)
		}
		s.syncs.owe(a.from.agentID, rec.ID)
	}
	a.from.verdict(rec.ID, returned)
}

// prepareSync announces an ingress request of a sync endpoint that may wait for the target's
// answer: only when an agent whose route exposes answers is connected to this relay (else it
// falls back at once). Nil when it will not wait.
func (s *Server) prepareSync(ep *endpoint) func(id string) *syncWait {
	if !ep.cfg.Sync.Enabled || !s.hub.exposes(ep.name) {
		return nil
	}
	return s.syncs.prepare(ep.name)
}

// registerSync ends what prepareSync began: the wait for the webhook stored as id, or none
// when err says nothing was stored.
func registerSync(register func(string) *syncWait, id string, err error) *syncWait {
	if register == nil {
		return nil
	}
	if err != nil {
		id = ""
	}
	return register(id)
}

// relayResponse is what the relay records of a target's answer: its headers (up to
// protocol.MaxResponseHeaders bytes) and the first maxRelayResponse bytes of its body.
func relayResponse(hs []protocol.Header, body []byte) ([]persist.Header, []byte) {
	out := make([]persist.Header, 0, len(hs))
	n := 0
	for _, h := range hs {
		if n += len(h.Name) + len(h.Value) + 4; n > protocol.MaxResponseHeaders {
			break
		}
		out = append(out, persist.Header{Name: h.Name, Value: h.Value})
	}
	return out, append([]byte{}, body[:min(len(body), maxRelayResponse)]...)
}

// syncFallback answers a sync webhook that gets no target's answer as any other: 202 {"id"}.
func syncFallback(w http.ResponseWriter, id string) {
	w.Header().Set("Hookrelay-Sync", "fallback")
	writeJSON(w, http.StatusAccepted, map[string]string{"id": id})
}

func connectionValues(hs []protocol.Header) []string {
	var vs []string
	for _, h := range hs {
		if strings.EqualFold(h.Name, "Connection") {
			vs = append(vs, h.Value)
		}
	}
	return vs
}

// validHeaderName reports whether name is an HTTP token (RFC 9110), safe to write.
func validHeaderName(name string) bool {
	if name == "" {
		return false
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		if c <= ' ' || c >= 0x7f || strings.IndexByte("\"(),/:;<=>?@[\\]{}", c) >= 0 {
			return false
		}
	}
	return true
}
