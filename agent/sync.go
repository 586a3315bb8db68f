package agent

import (
	"context"
	"io"
	"net/http"
	"slices"
	"sync"
	"time"

	"github.com/hookrelay/hookrelay/persist"
	"github.com/hookrelay/hookrelay/protocol"
)

const (
	// recordedBody is the part of a target's response body kept with each delivery.
	recordedBody = 64 << 10
	// discardBody is how much more of a response body is read (and dropped) so that the
	// connection can be reused.
	discardBody = 1 << 20
	// reasonReturned is the dead reason of a webhook whose non-2xx answer reached its sender:
	// the sender owns the retries.
	reasonReturned = "returned to sender"
)

// syncHolds are the sync webhooks whose first attempt's answer the relay waits for (by id):
// the session that brought each one, to send the Response on, and then the relay's Verdict.
// An entry is made before the webhook is stored, so a deliverer that leases it at once finds
// it.
type syncHolds struct {
	mu sync.Mutex
	m  map[string]*syncHold
}

type syncHold struct {
	s       *session
	verdict chan bool // cap 1: did the answer reach the sender
}

func newSyncHolds() *syncHolds { return &syncHolds{m: map[string]*syncHold{}} }

// add notes that id's first answer goes to the relay by s.
func (h *syncHolds) add(id string, s *session) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.m[id] = &syncHold{s: s, verdict: make(chan bool, 1)}
}

// take removes and returns id's hold; nil when none.
func (h *syncHolds) take(id string) *syncHold {
	h.mu.Lock()
	defer h.mu.Unlock()
	x := h.m[id]
	delete(h.m, id)
	return x
}

// answer sends the target's answer to the first attempt of a sync webhook to the relay, and,
// when it is not a 2xx, waits for the relay's verdict (at most protocol.MaxSyncWait, or until
// ctx ends): true when the answer reached the sender, who then owns the retries.
func (d *deliverer) answer(ctx context.Context, hold *syncHold, id string, status int, header http.Header, body []byte, complete bool) bool {
	resp := &protocol.Response{ID: id}
	if status > 0 && complete {
		resp.Status, resp.Headers, resp.Body = status, responseHeaders(header), body
	}
	d.a.waiting.Store(id, hold.verdict)
	defer d.a.waiting.Delete(id)
	if err := hold.s.conn.Send(hold.s.ctx, resp); err != nil {
		return false // the session ended: the relay falls back
	}
	if resp.Status == 0 || (status >= 200 && status <= 299) {
		return false // nothing to hold: no answer returned, or delivered
	}
	t := time.NewTimer(protocol.MaxSyncWait)
	defer t.Stop()
	select {
	case returned := <-hold.verdict:
		return returned
	case <-t.C:
	case <-ctx.Done():
	}
	return false
}

// verdict hands the relay's Verdict to the deliverer waiting for it; none waits when it gave
// up (its hold ran out) or for a 2xx answer.
func (a *Agent) verdict(v *protocol.Verdict) {
	if ch, ok := a.waiting.Load(v.ID); ok {
		select {
		case ch.(chan bool) <- v.Returned:
		default:
		}
	}
}

// responseHeaders is a response's header as a list, up to protocol.MaxResponseHeaders bytes.
func responseHeaders(h http.Header) []protocol.Header {
	names := make([]string, 0, len(h))
	for name := range h {
		names = append(names, name)
	}
	slices.Sort(names)
	var out []protocol.Header
	n := 0
	for _, name := range names {
		for _, v := range h[name] {
			if n += len(name) + len(v) + 4; n > protocol.MaxResponseHeaders {
				return out
			}
			if out == nil {
				out = make([]protocol.Header, 0, len(h)) // most names have one value
			}
			out = append(out, protocol.Header{Name: name, Value: v})
		}
	}
	return out
}

// readResponse reads up to limit bytes of a response body (and drops up to discardBody more,
// for the connection's reuse); complete is false when the body was longer than limit.
func readResponse(resp *http.Response, limit int) (body []byte, complete bool) {
	switch n := resp.ContentLength; {
	case n == 0: // most targets answer nothing: no buffer
		complete = true
	case n > 0 && n <= int64(limit): // a buffer of the size announced, not ReadAll's growth
		body = make([]byte, n)
		k, _ := io.ReadFull(resp.Body, body)
		body, complete = body[:k], true
	default:
		body, _ = io.ReadAll(io.LimitReader(resp.Body, int64(limit)+1))
		complete = len(body) <= limit
		if !complete {
			body = body[:limit]
		}
	}
	io.Copy(io.Discard, io.LimitReader(resp.Body, discardBody))
	return body, complete
}

// recordResponse keeps the target's answer with its delivery: its headers and the first
// recordedBody bytes of its body.
func recordResponse(del *persist.Delivery, header http.Header, body []byte) {
	if hs := responseHeaders(header); len(hs) > 0 {
		del.ResponseHeaders = make([]persist.Header, len(hs))
		for i, h := range hs {
			del.ResponseHeaders[i] = persist.Header(h)
		}
	}
	if len(body) > 0 {
		del.ResponseBody = body[:min(len(body), recordedBody):min(len(body), recordedBody)]
	}
}

// reportResponse is what a Report carries of the last delivery's response, for a route that
// exposes its target's answers.
func reportResponse(rep *protocol.Report, d persist.Delivery) {
	for _, h := range d.ResponseHeaders {
		rep.Headers = append(rep.Headers, protocol.Header{Name: h.Name, Value: h.Value})
	}
	rep.Body = d.ResponseBody[:min(len(d.ResponseBody), protocol.MaxReportBody)]
}

// exposed lists the endpoints whose route exposes its target's answers (Hello): with several
// routes on an endpoint, the first one's target answers a sync request.
func (c *Config) exposed() []string {
	var out []string
	for _, r := range c.Routes {
		if r.ExposeResponse && r.first {
			out = append(out, r.Endpoint)
		}
	}
	return out
}
