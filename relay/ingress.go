package relay

import (
	"errors"
	"fmt"
	"math"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"golang.org/x/time/rate"

	"github.com/hookrelay/hookrelay/internal/tracing"
	"github.com/hookrelay/hookrelay/persist"
	"github.com/hookrelay/hookrelay/protocol"
	"github.com/hookrelay/hookrelay/relay/verify"
)

// maxHeaderBytes bounds an ingress request's line and headers, so that a webhook's headers
// plus its first body chunk always fit in one tunnel frame (protocol.DefaultMaxFrame).
const maxHeaderBytes = 256 << 10

// answerGrace is how long the answer to a sender whose body timed out may take to write.
const answerGrace = 5 * time.Second

// Retry-After values (seconds) for answers that ask the sender to come back.
const (
	retryStopping = 5
	retryBusy     = 1
	retryQuota    = 60
	retryDiskFull = 60
)

// handleIngress accepts one webhook at /h/{endpoint}[/{path…}]. It answers 2xx only after
// the webhook is stored (fsynced); every failure to store gets an error status. Each answer
// is counted by endpoint and code, and each refusal by its limit.
func (s *Server) handleIngress(w http.ResponseWriter, r *http.Request) {
	if s.serveSmee(w, r) {
		return
	}
	sw := &statusWriter{ResponseWriter: w}
	label := unknownEndpoint
	span, r := s.startIngressSpan(r)
	defer func() {
		s.metrics.countIngress(label, sw.status())
		span.End(sw.status(), "")
	}()
	lv := s.live.Load()
	if !s.serving() {
		s.metrics.reject(label, limitStopping)
		retryLater(sw, http.StatusServiceUnavailable, retryStopping, "relay is starting or stopping: retry later")
		return
	}
	name, suffix, ok := splitIngressPath(ingressPath(r))
	if !ok {
		s.metrics.reject(label, limitPath)
		writeError(sw, http.StatusNotFound, "no endpoint in path: use /h/{endpoint}[/path]")
		return
	}
	ep := s.endpointFor(lv, name)
	if ep == nil {
		writeError(sw, http.StatusNotFound, fmt.Sprintf("unknown endpoint %q", clip(name, 64)))
		return
	}
	label = name
	if err := protocol.CheckPath(suffix); err != nil {
		s.metrics.reject(label, limitPath)
		writeError(sw, http.StatusBadRequest, err.Error()+": not allowed")
		return
	}
	s.ingest(sw, w, r, lv, ep, suffix)
}

// ingest reads, verifies and stores a webhook for ep. w is the server's own writer, which
// MaxBytesReader and the deadlines need; answers go through sw.
func (s *Server) ingest(sw *statusWriter, w http.ResponseWriter, r *http.Request, lv *live, ep *endpoint, suffix string) {
	// Until the body is read, every answer closes the connection: else net/http would first
	// wait to discard the rest of the body, and a sender holding it back would get no answer.
	if r.ContentLength != 0 {
		w.Header().Set("Connection", "close")
	}
	maxBody := int64(ep.cfg.MaxBody)
	tooBig := func() {
		s.metrics.reject(ep.name, limitBody)
		writeError(sw, http.StatusRequestEntityTooLarge, fmt.Sprintf("body over %s (max_body of this endpoint)", ep.cfg.MaxBody))
	}
	if r.ContentLength > maxBody {
		tooBig()
		return
	}
	if ep.limiter != nil {
		if wait, ok := takeRate(ep.limiter); !ok {
			s.metrics.reject(ep.name, limitRate)
			retryLater(sw, http.StatusTooManyRequests, wait, "endpoint rate exceeded: retry later")
			return
		}
	}
	client, reason := verify.ClientAddr(r, lv.trusted)
	if reason != "" { // a trusted proxy sent a malformed header: count the proxy itself
		client, _ = verify.ClientAddr(r, nil)
	}
	use, ok := s.clients.enter(client, lv.cfg.PerClientRequests)
	if !ok {
		s.metrics.reject(ep.name, limitClientRequests)
		retryLater(sw, http.StatusTooManyRequests, retryBusy, "too many requests in flight from your address (per_client_requests): retry later")
		return
	}
	defer s.clients.leave(use)
	// Address and Basic auth need only the headers: a sender they refuse gets its answer
	// before the relay reads (and holds) any of its body.
	if err := ep.verifier.CheckHeaders(r, time.Now()); err != nil {
		s.refuseVerify(sw, r, ep, err)
		return
	}
	if s.answerQueryHandshake(sw, r, ep) {
		return
	}

	rc := http.NewResponseController(w)
	deadline := time.Now().Add(lv.cfg.BodyTimeout)
	rc.SetReadDeadline(deadline)
	rc.SetWriteDeadline(deadline)
	budget := &bodyBudget{s: s, client: use, limit: int64(lv.cfg.IngressBuffer), clientLimit: int64(lv.cfg.PerClientBuffer)}
	defer budget.release()
	if r.ContentLength > streamOver && !ep.verifier.NeedsBody() {
		s.ingestStreamed(sw, w, r, rc, lv, ep, suffix, budget)
		return
	}
	body, err := readBody(http.MaxBytesReader(w, r.Body, maxBody), r.ContentLength, maxBody, budget)
	if err != nil {
		s.answerBodyError(sw, r, rc, lv, ep, err)
		return
	}
	w.Header().Del("Connection") // the body is read: the connection may be kept
	now := time.Now()
	if s.answerBodyHandshake(sw, r, ep, body, now) {
		return
	}
	if err := ep.verifier.CheckBody(r, body, now); err != nil {
		s.refuseVerify(sw, r, ep, err)
		return
	}
	var claim *dedupClaim
	msgID, hasMsgID := ep.verifier.MessageID(r)
	if hasMsgID {
		id, c, err := s.dedup.claim(r.Context(), ep.name, msgID, now, ep.verifier.ReplayWindow())
		if err != nil { // the sender gave up while the first copy was being stored
			retryLater(sw, http.StatusServiceUnavailable, retryBusy, "the same message is being stored: retry later")
			return
		}
		if id == "" {
			claim = c
			id = s.clusterMessageID(r.Context(), ep.name, msgID, claim)
		}
		if id != "" {
			s.metrics.duplicates.WithLabelValues(ep.name).Inc()
			s.log.Debug("webhook already accepted: answered again, not stored", "endpoint", ep.name, "id", id)
			writeJSON(sw, http.StatusAccepted, map[string]string{"id": id})
			return
		}
	}
	rec := &persist.Record{
		Queue:   ep.name,
		Method:  r.Method,
		Path:    suffix,
		Query:   r.URL.RawQuery,
		Headers: storedHeaders(r.Header),
		Body:    body,
	}
	span := traceOf(r)
	rec.Headers = withTrace(rec.Headers, span.Traceparent())
	register := s.prepareSync(ep)
	err = s.queue.Append(r.Context(), rec)
	if err == nil && claim != nil {
		if first := s.rememberMessageID(r.Context(), ep, r, rec.ID); first != rec.ID {
			registerSync(register, "", errDuplicateCopy) // no wait: this copy is deleted
			claim.done(first, rec.ReceivedAt)
			s.metrics.duplicates.WithLabelValues(ep.name).Inc()
			writeJSON(sw, http.StatusAccepted, map[string]string{"id": first})
			return
		}
	}
	wait := registerSync(register, rec.ID, err)
	if claim != nil {
		if err != nil {
			claim.done("", time.Time{})
		} else {
			claim.done(rec.ID, rec.ReceivedAt)
		}
	}
	if err != nil {
		s.answerStoreError(sw, ep.name, err)
		return
	}
	span.SetAttributes(attribute.String(tracing.AttrID, rec.ID), attribute.String("hookrelay.endpoint", ep.name))
	s.afterAppend(r.Context(), ep, rec)
	s.log.Debug("webhook accepted", "endpoint", ep.name, "id", rec.ID, "bytes", len(body))
	if !hasMsgID {
		msgID = ""
	}
	s.answerStored(sw, r, ep, rec, wait, msgID)
}

// answerStored answers the sender of a stored webhook: 202 {"id"}, or on a sync endpoint
// the target's answer when wait gets one (sync.go).
func (s *Server) answerStored(w http.ResponseWriter, r *http.Request, ep *endpoint, rec *persist.Record, wait *syncWait, msgID string) {
	switch {
	case wait != nil:
		s.answerSync(w, r, ep, rec, wait, msgID)
	case ep.cfg.Sync.Enabled:
		s.metrics.syncAnswers.WithLabelValues(ep.name, "fallback").Inc()
		syncFallback(w, rec.ID)
	default:
		writeJSON(w, http.StatusAccepted, map[string]string{"id": rec.ID})
	}
}

// refuseVerify answers a failed verification: the failure's status (401, or 403 for address
// rules) with its short reason, which never holds a secret. Nothing is stored.
func (s *Server) refuseVerify(w http.ResponseWriter, r *http.Request, ep *endpoint, err error) {
	f, ok := err.(*verify.Failure)
	if !ok {
		f = &verify.Failure{Status: http.StatusUnauthorized, Scheme: "unknown", Reason: "verification failed"}
	}
	if f.Status == http.StatusTooManyRequests { // not refused: too busy to check now
		s.metrics.reject(ep.name, limitBcrypt)
		retryLater(w, f.Status, retryBusy, f.Scheme+": "+f.Reason)
		return
	}
	s.metrics.verifyFailure(ep.name, f)
	s.log.Debug("ingress verification failed", "endpoint", ep.name, "remote", r.RemoteAddr,
		"scheme", f.Scheme, "reason", f.Reason)
	if f.Scheme == verify.SchemeBasic {
		w.Header().Set("WWW-Authenticate", `Basic realm="hookrelay"`)
	}
	writeError(w, f.Status, "verification failed: "+f.Scheme+": "+f.Reason)
}

// answerStoreError maps a failed Append to a status that makes the sender retry.
func (s *Server) answerStoreError(w http.ResponseWriter, endpoint string, err error) {
	switch {
	case errors.Is(err, persist.ErrQuota):
		s.metrics.reject(endpoint, limitQuota)
		retryLater(w, http.StatusTooManyRequests, retryQuota, "endpoint quota exceeded: retry later")
	case errors.Is(err, persist.ErrDiskFull):
		s.metrics.reject(endpoint, limitDisk)
		s.log.Error("disk full: refusing webhooks", "endpoint", endpoint)
		retryLater(w, http.StatusInsufficientStorage, retryDiskFull, "relay disk full: retry later")
	case errors.Is(err, persist.ErrClosed):
		s.metrics.reject(endpoint, limitStopping)
		retryLater(w, http.StatusServiceUnavailable, retryStopping, "relay is stopping: retry later")
	default:
		s.metrics.reject(endpoint, limitStore)
		s.log.Error("store webhook failed", "endpoint", endpoint, "err", err)
		retryLater(w, http.StatusServiceUnavailable, retryStopping, "could not store the webhook: retry later")
	}
}

func retryLater(w http.ResponseWriter, code, seconds int, msg string) {
	w.Header().Set("Retry-After", strconv.Itoa(max(1, seconds)))
	writeError(w, code, msg)
}

// reserveIngress reserves n bytes of the ingress buffer of size limit; false when it is full.
func (s *Server) reserveIngress(n, limit int64) bool {
	if s.ingressMem.Add(n) > limit {
		s.ingressMem.Add(-n)
		return false
	}
	return true
}

// takeRate takes one token; when none is available it returns the seconds to wait.
func takeRate(l *rate.Limiter) (int, bool) {
	now := time.Now()
	res := l.ReserveN(now, 1)
	if !res.OK() {
		return retryBusy, false
	}
	d := res.DelayFrom(now)
	if d <= 0 {
		return 0, true
	}
	res.CancelAt(now)
	return int(math.Ceil(d.Seconds())), false
}

// ingressPath returns the request path exactly as sent: the request-target up to '?' when
// it is in origin form, so no byte is re-encoded; else the URL's escaped path.
func ingressPath(r *http.Request) string {
	if strings.HasPrefix(r.RequestURI, "/") {
		p, _, _ := strings.Cut(r.RequestURI, "?")
		return p
	}
	return r.URL.EscapedPath()
}

// splitIngressPath splits "/h/{endpoint}{suffix}" into the (unescaped) endpoint name and the
// escaped suffix: "" or starting with "/".
func splitIngressPath(p string) (name, suffix string, ok bool) {
	rest, found := strings.CutPrefix(p, "/h/")
	if !found {
		return "", "", false
	}
	raw := rest
	if i := strings.IndexByte(rest, '/'); i >= 0 {
		raw, suffix = rest[:i], rest[i:]
	}
	name, err := url.PathUnescape(raw)
	if err != nil || name == "" {
		return "", "", false
	}
	return name, suffix, true
}

// storedHeaders returns the sender's headers: names in canonical form sorted by name, each
// name's values in received order, without hop-by-hop headers (nor those Connection names).
func storedHeaders(h http.Header) []persist.Header {
	drop := protocol.HopByHop(h["Connection"])
	names := make([]string, 0, len(h))
	for name := range h {
		if !drop(name) {
			names = append(names, name)
		}
	}
	slices.Sort(names)
	out := make([]persist.Header, 0, len(names))
	for _, name := range names {
		for _, v := range h[name] {
			out = append(out, persist.Header{Name: name, Value: v})
		}
	}
	return out
}

// statusWriter remembers the status code written, for the ingress counter.
type statusWriter struct {
	http.ResponseWriter
	code int
}

func (w *statusWriter) WriteHeader(code int) {
	if w.code == 0 {
		w.code = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	if w.code == 0 {
		w.code = http.StatusOK
	}
	return w.ResponseWriter.Write(b)
}

func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// status is the code written, or 200 when the handler wrote nothing.
func (w *statusWriter) status() int {
	if w.code == 0 {
		return http.StatusOK
	}
	return w.code
}

// clip shortens an untrusted string for a log line or an answer.
func clip(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}
