package relay

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"golang.org/x/time/rate"

	"github.com/hookrelay/hookrelay/persist"
)

// maxHeaderBytes bounds an ingress request's line and headers, so that a webhook's headers
// plus its first body chunk always fit in one tunnel frame (protocol.DefaultMaxFrame).
const maxHeaderBytes = 256 << 10

// Retry-After values (seconds) for answers that ask the sender to come back.
const (
	retryStopping = 5
	retryBusy     = 1
	retryQuota    = 60
	retryDiskFull = 60
)

// hopHeaders are connection-level headers (RFC 9110 §7.6.1); they are not the sender's
// message and are not stored.
var hopHeaders = map[string]bool{
	"Connection": true, "Keep-Alive": true, "Proxy-Connection": true, "Transfer-Encoding": true,
	"Te": true, "Trailer": true, "Upgrade": true,
}

// endpoint is an Endpoint ready for use: decoded token hashes and its rate limiter.
type endpoint struct {
	name    string
	cfg     Endpoint
	tokens  [][sha256.Size]byte
	limiter *rate.Limiter // nil when cfg.Rate == 0
}

func newEndpoint(c Endpoint) (*endpoint, error) {
	e := &endpoint{name: c.Name, cfg: c}
	for i, t := range c.Tokens {
		var h [sha256.Size]byte
		if _, err := hex.Decode(h[:], []byte(strings.TrimPrefix(t, "sha256:"))); err != nil {
			return nil, fmt.Errorf("tokens[%d]: %w", i, err)
		}
		e.tokens = append(e.tokens, h)
	}
	if c.Rate > 0 {
		e.limiter = rate.NewLimiter(rate.Limit(c.Rate), max(1, c.Burst))
	}
	return e, nil
}

// handleIngress accepts one webhook at /h/{endpoint}[/{path…}]. It answers 2xx only after
// the webhook is stored (fsynced); every failure to store gets an error status.
func (s *Server) handleIngress(w http.ResponseWriter, r *http.Request) {
	if !s.serving() {
		retryLater(w, http.StatusServiceUnavailable, retryStopping, "relay is starting or stopping: retry later")
		return
	}
	name, suffix, ok := splitIngressPath(ingressPath(r))
	if !ok {
		writeError(w, http.StatusNotFound, "no endpoint in path: use /h/{endpoint}[/path]")
		return
	}
	ep := s.eps[name]
	if ep == nil {
		writeError(w, http.StatusNotFound, fmt.Sprintf("unknown endpoint %q", name))
		return
	}
	if hasDotDot(suffix) {
		writeError(w, http.StatusBadRequest, `path suffix has a ".." segment: not allowed`)
		return
	}
	maxBody := int64(ep.cfg.MaxBody)
	if r.ContentLength > maxBody {
		writeError(w, http.StatusRequestEntityTooLarge, fmt.Sprintf("body over %s (max_body of this endpoint)", ep.cfg.MaxBody))
		return
	}
	if ep.limiter != nil {
		if wait, ok := takeRate(ep.limiter); !ok {
			retryLater(w, http.StatusTooManyRequests, wait, "endpoint rate exceeded: retry later")
			return
		}
	}
	need := r.ContentLength
	if need < 0 {
		need = maxBody
	}
	if !s.reserveIngress(need) {
		retryLater(w, http.StatusServiceUnavailable, retryBusy, "relay is busy: retry later")
		return
	}
	defer s.ingressMem.Add(-need)

	rc := http.NewResponseController(w)
	deadline := time.Now().Add(s.cfg.BodyTimeout)
	rc.SetReadDeadline(deadline)
	rc.SetWriteDeadline(deadline)
	body, err := readBody(w, r, maxBody)
	if err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			writeError(w, http.StatusRequestEntityTooLarge, fmt.Sprintf("body over %s (max_body of this endpoint)", ep.cfg.MaxBody))
			return
		}
		s.log.Debug("ingress body read failed", "endpoint", name, "remote", r.RemoteAddr, "err", err)
		writeError(w, http.StatusBadRequest, "could not read the request body")
		return
	}
	if err := s.verify(ep, r, body); err != nil {
		code := http.StatusUnauthorized
		var sc interface{ HTTPStatus() int }
		if errors.As(err, &sc) {
			code = sc.HTTPStatus()
		}
		s.log.Info("ingress verification failed", "endpoint", name, "remote", r.RemoteAddr, "err", err)
		writeError(w, code, "verification failed: "+err.Error())
		return
	}
	rec := &persist.Record{
		Queue:   name,
		Method:  r.Method,
		Path:    suffix,
		Query:   r.URL.RawQuery,
		Headers: storedHeaders(r.Header),
		Body:    body,
	}
	if err := s.store.Append(r.Context(), rec); err != nil {
		s.answerStoreError(w, name, err)
		return
	}
	s.log.Debug("webhook accepted", "endpoint", name, "id", rec.ID, "bytes", len(body))
	writeJSON(w, http.StatusAccepted, map[string]string{"id": rec.ID})
}

// verify checks ep's verification rules before the webhook is stored. An error answers 401,
// or the status of an error with an HTTPStatus() int method (403 for address rules).
// It is where relay/verify's checker is wired in.
func (s *Server) verify(ep *endpoint, r *http.Request, body []byte) error {
	return nil
}

// answerStoreError maps a failed Append to a status that makes the sender retry.
func (s *Server) answerStoreError(w http.ResponseWriter, endpoint string, err error) {
	switch {
	case errors.Is(err, persist.ErrQuota):
		retryLater(w, http.StatusTooManyRequests, retryQuota, "endpoint quota exceeded: retry later")
	case errors.Is(err, persist.ErrDiskFull):
		s.log.Error("disk full: refusing webhooks", "endpoint", endpoint)
		retryLater(w, http.StatusInsufficientStorage, retryDiskFull, "relay disk full: retry later")
	case errors.Is(err, persist.ErrClosed):
		retryLater(w, http.StatusServiceUnavailable, retryStopping, "relay is stopping: retry later")
	default:
		s.log.Error("store webhook failed", "endpoint", endpoint, "err", err)
		retryLater(w, http.StatusServiceUnavailable, retryStopping, "could not store the webhook: retry later")
	}
}

func retryLater(w http.ResponseWriter, code, seconds int, msg string) {
	w.Header().Set("Retry-After", strconv.Itoa(max(1, seconds)))
	writeError(w, code, msg)
}

// reserveIngress reserves n bytes of the ingress buffer; false when it is full.
func (s *Server) reserveIngress(n int64) bool {
	if s.ingressMem.Add(n) > int64(s.cfg.IngressBuffer) {
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

// readBody reads the whole body, at most maxBody bytes (a *http.MaxBytesError past it).
func readBody(w http.ResponseWriter, r *http.Request, maxBody int64) ([]byte, error) {
	body := http.MaxBytesReader(w, r.Body, maxBody)
	if r.ContentLength >= 0 {
		b := make([]byte, r.ContentLength)
		if _, err := io.ReadFull(body, b); err != nil {
			return nil, err
		}
		return b, nil
	}
	return io.ReadAll(body)
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

// hasDotDot reports whether the suffix has a ".." segment, as sent or once percent-decoded
// (%2e%2e, %2E., and %2F or '\' as separators), since a target may decode before resolving.
func hasDotDot(suffix string) bool {
	isSep := func(r rune) bool { return r == '/' || r == '\\' }
	if slices.Contains(strings.FieldsFunc(suffix, isSep), "..") {
		return true
	}
	dec, err := url.PathUnescape(suffix)
	if err != nil {
		return strings.Contains(strings.ToLower(suffix), "%2e")
	}
	return slices.Contains(strings.FieldsFunc(dec, isSep), "..")
}

// storedHeaders returns the sender's headers: names in canonical form sorted by name, each
// name's values in received order, without hop-by-hop headers (nor those Connection names).
func storedHeaders(h http.Header) []persist.Header {
	var listed map[string]bool // named by Connection: hop-by-hop too
	for _, v := range h["Connection"] {
		for _, n := range strings.Split(v, ",") {
			if n = strings.TrimSpace(n); n != "" {
				if listed == nil {
					listed = map[string]bool{}
				}
				listed[http.CanonicalHeaderKey(n)] = true
			}
		}
	}
	drop := func(name string) bool { return hopHeaders[name] || listed[name] }
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
