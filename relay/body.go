package relay

import (
	"errors"
	"io"
)

// bodyStep is the first buffer of a body (or all of it, when the declared length is
// smaller). The buffer then doubles as bytes arrive, so the memory a request holds follows
// what its sender sent, never the Content-Length it declared.
const bodyStep = 16 << 10

// Reasons a body's buffer could not grow.
var (
	errIngressBusy  = errors.New("ingress_buffer full")
	errClientBuffer = errors.New("per_client_buffer full")
	errLongerBody   = errors.New("body longer than declared")
)

// bodyBudget is a request's share of the relay's ingress_buffer and of its client's
// per_client_buffer. It holds what it reserved until release.
type bodyBudget struct {
	s           *Server
	client      *clientUse
	limit       int64 // ingress_buffer
	clientLimit int64 // per_client_buffer
	held        int64
}

// grow reserves n more bytes from both budgets, or neither.
func (b *bodyBudget) grow(n int64) error {
	if !b.s.reserveIngress(n, b.limit) {
		return errIngressBusy
	}
	if !b.s.clients.reserve(b.client, n, b.clientLimit) {
		b.s.ingressMem.Add(-n)
		return errClientBuffer
	}
	b.held += n
	return nil
}

// release gives back everything reserved. Idempotent.
func (b *bodyBudget) release() {
	if b.held > 0 {
		b.s.ingressMem.Add(-b.held)
		b.s.clients.release(b.client, b.held)
		b.held = 0
	}
}

// readBody reads the whole body: declared bytes when declared >= 0, else up to maxBody (body
// must be an http.MaxBytesReader of maxBody, which reports a longer one). Every byte of
// buffer is reserved from b before it is allocated.
func readBody(body io.Reader, declared, maxBody int64, b *bodyBudget) ([]byte, error) {
	limit := maxBody
	if declared >= 0 {
		limit = min(declared, maxBody)
	}
	var buf []byte
	for {
		if len(buf) == cap(buf) {
			if int64(len(buf)) >= limit {
				return buf, expectEOF(body)
			}
			size := min(limit, max(bodyStep, 2*int64(cap(buf))))
			if err := b.grow(size - int64(cap(buf))); err != nil {
				return nil, err
			}
			next := make([]byte, len(buf), size)
			copy(next, buf)
			buf = next
		}
		n, err := body.Read(buf[len(buf):cap(buf)])
		buf = buf[:len(buf)+n]
		if errors.Is(err, io.EOF) {
			return buf, nil
		}
		if err != nil {
			return nil, err
		}
	}
}

// expectEOF reads past a full buffer: io.EOF is the end (nil); a byte more is too long
// (the MaxBytesReader's own error, when it gives one).
func expectEOF(body io.Reader) error {
	var one [1]byte
	for {
		n, err := body.Read(one[:])
		switch {
		case errors.Is(err, io.EOF) && n == 0:
			return nil
		case err != nil:
			return err
		case n > 0:
			return errLongerBody
		}
	}
}
