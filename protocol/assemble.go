package protocol

import (
	"fmt"
	"io"
)

// Defaults of the Assembler's bounds. A relay sends one webhook's frames back to back, so
// only a few webhooks are ever incomplete at once on a sane tunnel (QUIC's data streams may
// interleave a handful); the bounds only stop a relay that opens bodies and never ends them.
const (
	// DefaultMaxBody is the Assembler's body limit when MaxBody is 0.
	DefaultMaxBody = 32 << 20
	// DefaultMaxPending bounds the incomplete webhooks when MaxPending is 0.
	DefaultMaxPending = 64
	// DefaultMaxPendingBytes bounds the sum of the declared body lengths of the incomplete
	// webhooks when MaxPendingBytes is 0: eight 32 MiB bodies at once.
	DefaultMaxPendingBytes = 256 << 20
	// assembleInitialCap is the most body capacity allocated for an incomplete webhook before
	// its chunks arrive; buffers then grow with the bytes received, never past BodyLen.
	assembleInitialCap = 64 << 10
)

// SendWebhook writes w on t, splitting a body longer than chunk (0 = DefaultChunk) into one
// Webhook frame carrying the first part and Chunk frames for the rest. It sets BodyLen to
// len(w.Body) on the wire (w.BodyLen, read from w.BodyFrom, when that is set) and does not
// modify w. Frames of one webhook must not be interleaved
// with another writer's frames of the same id; different webhooks may be sent concurrently.
func SendWebhook(t Tunnel, w *Webhook, chunk int) error {
	if chunk <= 0 {
		chunk = DefaultChunk
	}
	if w.BodyFrom != nil {
		return sendStreamed(t, w, chunk)
	}
	first := *w
	first.BodyLen = int64(len(w.Body))
	if len(w.Body) > chunk {
		first.Body = w.Body[:chunk]
	}
	if err := t.WriteFrame(&first); err != nil {
		return fmt.Errorf("send webhook %s: %w", w.ID, err)
	}
	for off := len(first.Body); off < len(w.Body); off += chunk {
		end := min(off+chunk, len(w.Body))
		c := &Chunk{ID: w.ID, Offset: int64(off), Data: w.Body[off:end], OrderKey: w.OrderKey}
		if err := t.WriteFrame(c); err != nil {
			return fmt.Errorf("send webhook %s chunk at %d: %w", w.ID, off, err)
		}
	}
	return nil
}

// sendStreamed is SendWebhook for a body read from w.BodyFrom, one chunk buffer for every
// frame: WriteFrame keeps no frame bytes once it returns (WebSocket writes them, QUIC
// encodes them into its stream's queue). A buffer per chunk was tens of MiB of garbage per
// large body, which the relay, whose heap goal its memtables inflate, collected late.
func sendStreamed(t Tunnel, w *Webhook, chunk int) error {
	if c, ok := w.BodyFrom.(io.Closer); ok {
		defer c.Close()
	}
	buf := make([]byte, min(int64(chunk), w.BodyLen))
	next := func(off int64) ([]byte, error) {
		b := buf[:min(int64(chunk), w.BodyLen-off)]
		if _, err := io.ReadFull(w.BodyFrom, b); err != nil {
			return nil, fmt.Errorf("send webhook %s: read body at %d: %w", w.ID, off, err)
		}
		return b, nil
	}
	first := *w
	first.BodyFrom = nil
	var err error
	if first.Body, err = next(0); err != nil {
		return err
	}
	if err := t.WriteFrame(&first); err != nil {
		return fmt.Errorf("send webhook %s: %w", w.ID, err)
	}
	for off := int64(len(first.Body)); off < w.BodyLen; {
		data, err := next(off)
		if err != nil {
			return err
		}
		if err := t.WriteFrame(&Chunk{ID: w.ID, Offset: off, Data: data, OrderKey: w.OrderKey}); err != nil {
			return fmt.Errorf("send webhook %s chunk at %d: %w", w.ID, off, err)
		}
		off += int64(len(data))
	}
	return nil
}

// Assembler joins Webhook and Chunk frames back into whole webhooks, keyed by id, so the
// frames of several webhooks may interleave. Its memory is bounded whatever the sender does:
// at most MaxPending incomplete webhooks whose declared lengths add up to at most
// MaxPendingBytes, each buffer growing with the bytes actually received. Not safe for
// concurrent use.
type Assembler struct {
	MaxBody         int64 // largest body accepted; 0 = DefaultMaxBody (32 MiB)
	MaxPending      int   // most incomplete webhooks at once; 0 = DefaultMaxPending (64)
	MaxPendingBytes int64 // most declared body bytes of those; 0 = DefaultMaxPendingBytes (256 MiB)

	// Sink, when set, takes the bodies longer than SinkOver bytes instead of memory: the
	// first part and each chunk go to the BodySink that Sink returned for the webhook, in
	// order, and Add returns the webhook with Body nil once BodyLen bytes went there. The
	// bounds above hold for those webhooks too. The sink of a webhook dropped before its end
	// (a malformed chunk, Reset) is aborted.
	Sink     func(w *Webhook) BodySink
	SinkOver int64

	partial  map[string]*Webhook // id → webhook whose Body is still growing to BodyLen
	sinks    map[string]*sunk    // id → streamed webhook (also in partial, with Body nil)
	declared int64               // sum of BodyLen over partial
}

// BodySink takes the bytes of one streamed body, in order. Take must copy what it keeps, and
// remembers its own failures: the webhook still completes on the wire, and its taker asks
// the sink how it went.
type BodySink interface {
	Take(p []byte)
	Abort()
}

// sunk is a streamed webhook's sink and the bytes it took.
type sunk struct {
	sink BodySink
	got  int64
}

// Reset drops every incomplete webhook, aborting their sinks (the tunnel they came on ended).
func (a *Assembler) Reset() {
	for _, w := range a.partial {
		a.drop(w)
	}
}

// Add takes a Webhook or Chunk frame and returns the whole webhook once its body is complete
// (done = true). Chunks out of order, unknown ids, bodies over MaxBody and a webhook past
// MaxPending or MaxPendingBytes are errors wrapping ErrMalformed that name what was broken.
// Other frame types are an error too.
func (a *Assembler) Add(f Frame) (w *Webhook, done bool, err error) {
	switch f := f.(type) {
	case *Webhook:
		return a.addWebhook(f)
	case *Chunk:
		return a.addChunk(f)
	default:
		return nil, false, fmt.Errorf("%w: assembler got frame %T", ErrMalformed, f)
	}
}

// pending is the number of webhooks whose body is still incomplete.
func (a *Assembler) pending() int { return len(a.partial) }

func (a *Assembler) maxBody() int64 {
	if a.MaxBody > 0 {
		return a.MaxBody
	}
	return DefaultMaxBody
}

func (a *Assembler) maxPending() int {
	if a.MaxPending > 0 {
		return a.MaxPending
	}
	return DefaultMaxPending
}

func (a *Assembler) maxPendingBytes() int64 {
	if a.MaxPendingBytes > 0 {
		return a.MaxPendingBytes
	}
	return DefaultMaxPendingBytes
}

func (a *Assembler) addWebhook(f *Webhook) (*Webhook, bool, error) {
	switch {
	case f.BodyLen < 0 || int64(len(f.Body)) > f.BodyLen:
		return nil, false, fmt.Errorf("%w: webhook %s: body part %d bytes, body length %d",
			ErrMalformed, f.ID, len(f.Body), f.BodyLen)
	case f.BodyLen > a.maxBody():
		return nil, false, fmt.Errorf("%w: webhook %s: body of %d bytes over limit %d",
			ErrMalformed, f.ID, f.BodyLen, a.maxBody())
	case a.partial[f.ID] != nil:
		return nil, false, fmt.Errorf("%w: webhook %s sent again before its body completed",
			ErrMalformed, f.ID)
	case int64(len(f.Body)) == f.BodyLen:
		return f, true, nil
	case len(a.partial) >= a.maxPending():
		return nil, false, fmt.Errorf("%w: webhook %s: more incomplete webhooks at once than the limit of %d (Assembler.MaxPending)",
			ErrMalformed, f.ID, a.maxPending())
	case a.declared+f.BodyLen > a.maxPendingBytes():
		return nil, false, fmt.Errorf("%w: webhook %s: incomplete webhooks declare %d body bytes with this one, over the limit of %d (Assembler.MaxPendingBytes)",
			ErrMalformed, f.ID, a.declared+f.BodyLen, a.maxPendingBytes())
	}
	w := *f
	if a.partial == nil {
		a.partial = make(map[string]*Webhook)
		a.sinks = make(map[string]*sunk)
	}
	a.partial[w.ID] = &w
	a.declared += w.BodyLen
	if a.Sink != nil && f.BodyLen > a.SinkOver {
		sink := a.Sink(&w)
		sink.Take(f.Body)
		w.Body = nil
		a.sinks[w.ID] = &sunk{sink: sink, got: int64(len(f.Body))}
		return nil, false, nil
	}
	// The declared length is only a claim: allocate for what came, plus a little.
	w.Body = make([]byte, len(f.Body), min(f.BodyLen, max(int64(len(f.Body)), assembleInitialCap)))
	copy(w.Body, f.Body)
	return nil, false, nil
}

func (a *Assembler) addChunk(c *Chunk) (*Webhook, bool, error) {
	w := a.partial[c.ID]
	if w == nil {
		return nil, false, fmt.Errorf("%w: chunk for unknown webhook %s", ErrMalformed, c.ID)
	}
	sk := a.sinks[c.ID]
	got := int64(len(w.Body))
	if sk != nil {
		got = sk.got
	}
	switch {
	case c.Offset != got:
		a.drop(w)
		return nil, false, fmt.Errorf("%w: webhook %s: chunk at offset %d, want %d",
			ErrMalformed, c.ID, c.Offset, got)
	case int64(len(c.Data)) > w.BodyLen-got:
		a.drop(w)
		return nil, false, fmt.Errorf("%w: webhook %s: chunk past body length %d",
			ErrMalformed, c.ID, w.BodyLen)
	}
	if sk != nil {
		sk.sink.Take(c.Data)
		sk.got += int64(len(c.Data))
		got = sk.got
	} else {
		w.Body = grow(w.Body, len(c.Data), w.BodyLen)
		w.Body = append(w.Body, c.Data...)
		got = int64(len(w.Body))
	}
	if got < w.BodyLen {
		return nil, false, nil
	}
	a.forget(w)
	return w, true, nil
}

// drop forgets an incomplete webhook, aborting its sink.
func (a *Assembler) drop(w *Webhook) {
	if sk := a.sinks[w.ID]; sk != nil {
		sk.sink.Abort()
	}
	a.forget(w)
}

// forget forgets a webhook and its share of the declared bytes.
func (a *Assembler) forget(w *Webhook) {
	delete(a.partial, w.ID)
	delete(a.sinks, w.ID)
	a.declared -= w.BodyLen
}

// grow makes room for n more bytes in b, doubling its capacity but never past limit (the
// declared body length, which the caller has checked n against), so a complete body has no
// slack and the copies add up to at most twice the body.
func grow(b []byte, n int, limit int64) []byte {
	if len(b)+n <= cap(b) {
		return b
	}
	c := min(limit, max(int64(2*cap(b)), int64(len(b)+n)))
	nb := make([]byte, len(b), c)
	copy(nb, b)
	return nb
}
