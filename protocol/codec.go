package protocol

import (
	"context"
	"io"
	"net/http"
)

// AppendFrame appends f's encoding (length prefix, type, payload) to dst.
func AppendFrame(dst []byte, f Frame) []byte { panic("not implemented") }

// DecodeFrame decodes one frame from b (type byte + payload, no length prefix). Unknown types
// return (nil, nil): the caller skips them. Malformed input returns an error wrapping ErrMalformed.
func DecodeFrame(b []byte) (Frame, error) { panic("not implemented") }

// Reader reads length-prefixed frames from a byte stream.
type Reader struct{}

// NewReader reads frames of at most maxFrame bytes (0 = DefaultMaxFrame) from r.
func NewReader(r io.Reader, maxFrame int) *Reader { panic("not implemented") }

// ReadFrame returns the next known frame, skipping unknown types; ErrFrameTooLarge is returned
// before allocating for an oversized length.
func (r *Reader) ReadFrame() (Frame, error) { panic("not implemented") }

// Writer writes length-prefixed frames to a byte stream. Not safe for concurrent use.
type Writer struct{}

// NewWriter writes frames to w.
func NewWriter(w io.Writer) *Writer { panic("not implemented") }

// WriteFrame encodes and writes f.
func (w *Writer) WriteFrame(f Frame) error { panic("not implemented") }

// SendWebhook writes w on t, splitting a body longer than chunk (0 = DefaultChunk) into one
// Webhook frame carrying the first part and Chunk frames for the rest.
func SendWebhook(t Tunnel, w *Webhook, chunk int) error { panic("not implemented") }

// Assembler joins Webhook and Chunk frames back into whole webhooks. Not safe for concurrent use.
type Assembler struct {
	MaxBody int64 // largest body accepted; 0 = 32 MiB
}

// Add takes a Webhook or Chunk frame and returns the whole webhook once its body is complete
// (done = true). Chunks out of order, unknown ids or bodies over MaxBody are errors wrapping
// ErrMalformed.
func (a *Assembler) Add(f Frame) (w *Webhook, done bool, err error) { panic("not implemented") }

// AcceptWebSocket upgrades an HTTP request to a Tunnel (subprotocol Subprotocol required).
func AcceptWebSocket(w http.ResponseWriter, r *http.Request, cfg WSConfig) (Tunnel, error) {
	panic("not implemented")
}

// DialWebSocket dials a ws:// or wss:// URL (the relay's /v1/tunnel) and returns a Tunnel.
func DialWebSocket(ctx context.Context, url string, cfg WSDialConfig) (Tunnel, error) {
	panic("not implemented")
}
