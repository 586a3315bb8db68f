package agent

import (
	"context"
	"fmt"
	"sync"

	"github.com/hookrelay/hookrelay/persist"
	"github.com/hookrelay/hookrelay/protocol"
)

// sinkOver is the body length above which a webhook's body goes from the tunnel straight into
// the store's parts (a chunk at a time, persist.BodyWriter) instead of being assembled in
// memory: the agent runs on small boxes, and a 25 MiB body must not cost it 25 MiB.
const sinkOver = protocol.DefaultChunk

// bodySink is the Assembler's sink of one streamed body: the store's BodyWriter, or why there
// is none (the store could not stage it: the webhook is nacked once complete).
type bodySink struct {
	s   *session
	w   *protocol.Webhook // the Assembler's, returned once complete
	bw  *persist.BodyWriter
	err error
}

// Take writes p to the store; a failure sticks in the BodyWriter.
func (b *bodySink) Take(p []byte) {
	if b.bw != nil {
		b.bw.Write(p)
	}
}

// Abort drops what was staged (the webhook broke off).
func (b *bodySink) Abort() {
	b.s.takeBody(b.w)
	if b.bw != nil {
		b.bw.Abort()
	}
}

// stagedBodies are the streamed bodies staged, by their webhook, until a store worker takes
// them (takeBody) or the session ends.
type stagedBodies struct {
	mu sync.Mutex
	m  map[*protocol.Webhook]*bodySink
}

// sinkFor is the Assembler's Sink: it stages w's body in the store.
func (s *session) sinkFor(w *protocol.Webhook) protocol.BodySink {
	b := &bodySink{s: s, w: w}
	b.bw, b.err = s.env.store.NewBody()
	s.bodies.mu.Lock()
	if s.bodies.m == nil {
		s.bodies.m = map[*protocol.Webhook]*bodySink{}
	}
	s.bodies.m[w] = b
	s.bodies.mu.Unlock()
	return b
}

// takeBody returns the staged body of w, if its body was streamed, and forgets it.
func (s *session) takeBody(w *protocol.Webhook) *bodySink {
	s.bodies.mu.Lock()
	defer s.bodies.mu.Unlock()
	b := s.bodies.m[w]
	delete(s.bodies.m, w)
	return b
}

// dropBodies aborts the staged bodies no store worker took (the session ended).
func (s *session) dropBodies() {
	s.asm.Reset()
	s.bodies.mu.Lock()
	left := s.bodies.m
	s.bodies.m = nil
	s.bodies.mu.Unlock()
	for _, b := range left {
		if b.bw != nil {
			b.bw.Abort()
		}
	}
}

// appendRecord stores rec with its body: the staged one when w's body was streamed (rec.Body
// is nil then), else rec.Body; or drops the staged body when the webhook is refused (skip).
func (s *session) appendRecord(w *protocol.Webhook, rec *persist.Record, skip bool) error {
	b := s.takeBody(w)
	switch {
	case b == nil && skip:
		return nil
	case b == nil:
		return s.env.store.Append(context.Background(), rec)
	case b.err != nil:
		return fmt.Errorf("stage body: %w", b.err)
	case skip:
		b.bw.Abort()
		return nil
	}
	return s.env.store.AppendBody(context.Background(), rec, b.bw)
}
