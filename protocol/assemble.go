package protocol

import "fmt"

// DefaultMaxBody is the Assembler's body limit when MaxBody is 0.
const DefaultMaxBody = 32 << 20

// SendWebhook writes w on t, splitting a body longer than chunk (0 = DefaultChunk) into one
// Webhook frame carrying the first part and Chunk frames for the rest. It sets BodyLen to
// len(w.Body) on the wire and does not modify w. Frames of one webhook must not be interleaved
// with another writer's frames of the same id; different webhooks may be sent concurrently.
func SendWebhook(t Tunnel, w *Webhook, chunk int) error {
	if chunk <= 0 {
		chunk = DefaultChunk
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
		c := &Chunk{ID: w.ID, Offset: int64(off), Data: w.Body[off:end]}
		if err := t.WriteFrame(c); err != nil {
			return fmt.Errorf("send webhook %s chunk at %d: %w", w.ID, off, err)
		}
	}
	return nil
}

// Assembler joins Webhook and Chunk frames back into whole webhooks, keyed by id, so the
// frames of several webhooks may interleave. Not safe for concurrent use.
type Assembler struct {
	MaxBody int64 // largest body accepted; 0 = DefaultMaxBody (32 MiB)

	partial map[string]*Webhook // id → webhook whose Body is still growing to BodyLen
}

// Add takes a Webhook or Chunk frame and returns the whole webhook once its body is complete
// (done = true). Chunks out of order, unknown ids or bodies over MaxBody are errors wrapping
// ErrMalformed. Other frame types are an error too.
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
	}
	w := *f
	w.Body = make([]byte, len(f.Body), f.BodyLen)
	copy(w.Body, f.Body)
	if a.partial == nil {
		a.partial = make(map[string]*Webhook)
	}
	a.partial[w.ID] = &w
	return nil, false, nil
}

func (a *Assembler) addChunk(c *Chunk) (*Webhook, bool, error) {
	w := a.partial[c.ID]
	switch {
	case w == nil:
		return nil, false, fmt.Errorf("%w: chunk for unknown webhook %s", ErrMalformed, c.ID)
	case c.Offset != int64(len(w.Body)):
		delete(a.partial, c.ID)
		return nil, false, fmt.Errorf("%w: webhook %s: chunk at offset %d, want %d",
			ErrMalformed, c.ID, c.Offset, len(w.Body))
	case int64(len(c.Data)) > w.BodyLen-int64(len(w.Body)):
		delete(a.partial, c.ID)
		return nil, false, fmt.Errorf("%w: webhook %s: chunk past body length %d",
			ErrMalformed, c.ID, w.BodyLen)
	}
	w.Body = append(w.Body, c.Data...)
	if int64(len(w.Body)) < w.BodyLen {
		return nil, false, nil
	}
	delete(a.partial, c.ID)
	return w, true, nil
}
