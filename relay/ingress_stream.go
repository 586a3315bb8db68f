package relay

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"time"

	"github.com/hookrelay/hookrelay/persist"
)

// streamBuffer is the ingress memory a streamed body is charged for: the store's buffer
// (persist.BodyWriter writes a body a MiB at a time).
const streamBuffer = 1 << 20

// streamOver is the declared body length above which ingress stores the body as it reads it
// (Queue.AppendFrom) instead of reading it whole first: where no scheme needs the whole body
// to verify it, a 25 MiB webhook then costs the relay a store buffer, not 25 MiB. A body
// within one store buffer is read whole, as before.
const streamOver = streamBuffer

// ingestStreamed stores a webhook whose body is read and stored in parts at once. It answers
// 2xx only after body and record are stored, as ingest does.
func (s *Server) ingestStreamed(sw *statusWriter, w http.ResponseWriter, r *http.Request, rc *http.ResponseController,
	lv *live, ep *endpoint, suffix string, budget *bodyBudget) {
	rec := &persist.Record{
		Queue:   ep.name,
		Method:  r.Method,
		Path:    suffix,
		Query:   r.URL.RawQuery,
		Headers: storedHeaders(r.Header),
	}
	body := &readErr{r: http.MaxBytesReader(w, r.Body, int64(ep.cfg.MaxBody)), budget: budget}
	err := s.queue.AppendFrom(r.Context(), rec, body)
	switch {
	case body.err != nil:
		s.answerBodyError(sw, r, rc, lv, ep, body.err)
		return
	case err != nil:
		w.Header().Del("Connection")
		s.answerStoreError(sw, ep.name, err)
		return
	}
	w.Header().Del("Connection")
	s.log.Debug("webhook accepted", "endpoint", ep.name, "id", rec.ID, "bytes", rec.BodyLen)
	writeJSON(sw, http.StatusAccepted, map[string]string{"id": rec.ID})
}

// readErr remembers the error of its reader other than io.EOF, so that a failed read is told
// apart from a failed store. It charges budget for the bytes it read, up to streamBuffer (the
// store's buffer), as they arrive: never for what was only declared.
type readErr struct {
	r      io.Reader
	err    error
	budget *bodyBudget
}

func (e *readErr) Read(p []byte) (int, error) {
	n, err := e.r.Read(p)
	if more := min(int64(n), streamBuffer-e.budget.held); more > 0 {
		if gerr := e.budget.grow(more); gerr != nil {
			e.err = gerr
			return 0, gerr
		}
	}
	if err != nil && !errors.Is(err, io.EOF) {
		e.err = err
	}
	return n, err
}

// answerBodyError answers a body that could not be read (or held) whole.
func (s *Server) answerBodyError(sw *statusWriter, r *http.Request, rc *http.ResponseController, lv *live, ep *endpoint, err error) {
	var mbe *http.MaxBytesError
	switch {
	case errors.As(err, &mbe):
		s.metrics.reject(ep.name, limitBody)
		writeError(sw, http.StatusRequestEntityTooLarge, fmt.Sprintf("body over %s (max_body of this endpoint)", ep.cfg.MaxBody))
	case errors.Is(err, errIngressBusy):
		s.metrics.reject(ep.name, limitBusy)
		retryLater(sw, http.StatusServiceUnavailable, retryBusy, "relay is busy: retry later")
	case errors.Is(err, errClientBuffer):
		s.metrics.reject(ep.name, limitClientBuffer)
		retryLater(sw, http.StatusTooManyRequests, retryBusy, "too many body bytes in flight from your address (per_client_buffer): retry later")
	case errors.Is(err, os.ErrDeadlineExceeded):
		s.metrics.reject(ep.name, limitTimeout)
		rc.SetWriteDeadline(time.Now().Add(answerGrace)) // the body's deadline has passed
		writeError(sw, http.StatusRequestTimeout, fmt.Sprintf("body not received within %v", lv.cfg.BodyTimeout))
	default:
		s.log.Debug("ingress body read failed", "endpoint", ep.name, "remote", r.RemoteAddr, "err", err)
		writeError(sw, http.StatusBadRequest, "could not read the request body")
	}
}
