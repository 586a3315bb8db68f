package protocol

import (
	"crypto/tls"
	"net/http"
	"net/url"
	"time"
)

// Tunnel is one established, bidirectional frame stream between an agent and a relay.
// ReadFrame is called from one goroutine; WriteFrame is safe for concurrent use. Each transport
// keeps itself alive and notices a dead peer in its own way (a dead peer makes ReadFrame return
// an error); a Conn adds frame-level keepalive on top, the same on every transport.
type Tunnel interface {
	// ReadFrame returns the next frame. Frames of unknown type are skipped. After Close, or
	// when the peer is gone, it returns an error: ErrClosed after our Close, one wrapping
	// io.EOF when the peer closed cleanly, a timeout (net.Error) for a silent peer, or the
	// transport's.
	ReadFrame() (Frame, error)
	// WriteFrame sends one frame. Chunks of one webhook must be written in order; a transport
	// with several streams keeps a webhook and its chunks on one stream. A frame over the
	// maximum frame size fails with ErrFrameTooLarge and leaves the tunnel usable. QUIC queues
	// the frame (a bounded queue per stream) and returns; a failed send shows on a later call.
	// Either way the frame's bytes are not kept once it returns: the caller may reuse them.
	WriteFrame(Frame) error
	// Close closes the tunnel; it is idempotent and unblocks ReadFrame.
	Close() error
	// Transport names the transport: "websocket" or "quic".
	Transport() string
	// RemoteAddr is the peer's address as text.
	RemoteAddr() string
}

// WSConfig tunes the WebSocket transport. Every zero value means the default given.
type WSConfig struct {
	MaxFrame         int           // largest frame accepted; default DefaultMaxFrame
	PingInterval     time.Duration // WebSocket ping period, jittered ±20%; default 15s
	ReadTimeout      time.Duration // no message or pong for this long = dead peer; default 3×PingInterval
	HandshakeTimeout time.Duration // dial/upgrade handshake deadline; default 10s
	WriteTimeout     time.Duration // one frame write; default 30s
}

// WSDialConfig adds what a dialing agent needs.
type WSDialConfig struct {
	WSConfig
	TLS    *tls.Config                           // for wss://; nil = system roots
	Proxy  func(*http.Request) (*url.URL, error) // nil = http.ProxyFromEnvironment
	Header http.Header                           // extra request headers
}
