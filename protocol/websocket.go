package protocol

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gorilla/websocket"
)

// wsWriteBuffers lends the relay's tunnels their write buffers for the time of a write: a
// tunnel that never gets a Hello through costs no write buffer.
var wsWriteBuffers sync.Pool

const (
	wsBufferSize       = 16 << 10
	wsAcceptReadBuffer = 1 << 10
	wsCloseTimeout     = time.Second // for the best-effort close frame
)

func (c WSConfig) withDefaults() WSConfig {
	if c.MaxFrame <= 0 {
		c.MaxFrame = DefaultMaxFrame
	}
	if c.PingInterval <= 0 {
		c.PingInterval = 15 * time.Second
	}
	if c.ReadTimeout <= 0 {
		c.ReadTimeout = 3 * c.PingInterval
	}
	if c.HandshakeTimeout <= 0 {
		c.HandshakeTimeout = 10 * time.Second
	}
	if c.WriteTimeout <= 0 {
		c.WriteTimeout = 30 * time.Second
	}
	return c
}

// AcceptWebSocket upgrades an HTTP request to a Tunnel (subprotocol Subprotocol required). A
// request that is not a WebSocket upgrade, or does not offer Subprotocol, gets a 400 with a
// reason and an error wrapping ErrSubprotocol (or the upgrader's).
func AcceptWebSocket(w http.ResponseWriter, r *http.Request, cfg WSConfig) (Tunnel, error) {
	cfg = cfg.withDefaults()
	if offered := websocket.Subprotocols(r); websocket.IsWebSocketUpgrade(r) &&
		!slices.Contains(offered, Subprotocol) {
		http.Error(w, fmt.Sprintf("hookrelay tunnel: WebSocket subprotocol %q required (offered %q)",
			Subprotocol, offered), http.StatusBadRequest)
		return nil, fmt.Errorf("accept websocket from %s: offered %q: %w", r.RemoteAddr, offered,
			ErrSubprotocol)
	}
	up := websocket.Upgrader{
		HandshakeTimeout: cfg.HandshakeTimeout,
		// The accepting side (the relay) receives small frames (acks, reports), and an
		// idle tunnel keeps this buffer for hours: 1 KiB rather than the HTTP server's
		// 4 KiB, which is freed once the handler returns. A frame body larger than the
		// buffer is read past it, straight into the frame's.
		ReadBufferSize:  wsAcceptReadBuffer,
		WriteBufferSize: wsBufferSize,
		WriteBufferPool: &wsWriteBuffers,
		Subprotocols:    []string{Subprotocol},
	}
	hj := &corkHijacker{ResponseWriter: w, timeout: cfg.WriteTimeout}
	conn, err := up.Upgrade(hj, r, nil) // answers the client itself on failure
	if err != nil {
		return nil, fmt.Errorf("accept websocket from %s: %w", r.RemoteAddr, err)
	}
	return newWSTunnel(conn, cfg, hj.conn), nil
}

// DialWebSocket dials a ws:// or wss:// URL (the relay's /v1/tunnel) and returns a Tunnel. It
// goes through cfg.Proxy (default HTTPS_PROXY/NO_PROXY from the environment, via CONNECT), and
// fails unless the server agrees on Subprotocol. The handshake is bounded by ctx and
// HandshakeTimeout.
func DialWebSocket(ctx context.Context, url string, cfg WSDialConfig) (Tunnel, error) {
	wc := cfg.WSConfig.withDefaults()
	proxy := cfg.Proxy
	if proxy == nil {
		proxy = http.ProxyFromEnvironment
	}
	var cork *corkConn
	d := websocket.Dialer{
		NetDialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			c, err := (&net.Dialer{}).DialContext(ctx, network, addr)
			if err != nil {
				return nil, err
			}
			cork = newCorkConn(c, wc.WriteTimeout)
			return cork, nil
		},
		Proxy:            proxy,
		TLSClientConfig:  cfg.TLS,
		HandshakeTimeout: wc.HandshakeTimeout,
		ReadBufferSize:   wsBufferSize,
		WriteBufferSize:  wsBufferSize,
		Subprotocols:     []string{Subprotocol},
	}
	conn, resp, err := d.DialContext(ctx, url, cfg.Header)
	if err != nil {
		if resp != nil {
			body, _ := io.ReadAll(io.LimitReader(resp.Body, 256))
			return nil, fmt.Errorf("dial websocket %s: %s %q: %w", url, resp.Status, body, err)
		}
		return nil, fmt.Errorf("dial websocket %s: %w", url, err)
	}
	if got := conn.Subprotocol(); got != Subprotocol {
		conn.Close()
		return nil, fmt.Errorf("dial websocket %s: server chose subprotocol %q: %w", url, got,
			ErrSubprotocol)
	}
	return newWSTunnel(conn, wc, cork), nil
}

// wsTunnel is a Tunnel over one WebSocket connection: one binary message per frame. It is a
// Corker: the connection under the WebSocket can hold frames back and send them together.
type wsTunnel struct {
	// Static after construction.
	conn   *websocket.Conn
	cfg    WSConfig
	remote string
	cork   *corkConn // under conn; nil when the connection could not be wrapped

	// One frame write at a time.
	wmu sync.Mutex

	// Lifecycle.
	closed    atomic.Bool
	closeOnce sync.Once
	pinger    *pulse // WebSocket pings; stopped by Close
}

func newWSTunnel(conn *websocket.Conn, cfg WSConfig, cork *corkConn) *wsTunnel {
	t := &wsTunnel{conn: conn, cfg: cfg, remote: conn.RemoteAddr().String(), cork: cork}
	conn.SetReadLimit(int64(cfg.MaxFrame) + 4)
	conn.SetPongHandler(func(string) error { return t.extendRead() })
	conn.SetPingHandler(func(data string) error {
		err := conn.WriteControl(websocket.PongMessage, []byte(data),
			time.Now().Add(cfg.WriteTimeout))
		var ne net.Error
		if err != nil && !errors.Is(err, websocket.ErrCloseSent) &&
			!(errors.As(err, &ne) && ne.Timeout()) {
			return err
		}
		return t.extendRead()
	})
	t.pinger = startPulse(jitter(cfg.PingInterval), t.ping)
	return t
}

func (t *wsTunnel) Transport() string  { return "websocket" }
func (t *wsTunnel) RemoteAddr() string { return t.remote }

// extendRead pushes the read deadline ReadTimeout into the future: the peer is alive.
func (t *wsTunnel) extendRead() error {
	return t.conn.SetReadDeadline(time.Now().Add(t.cfg.ReadTimeout))
}

// ping sends a ping; the next goes PingInterval ±20% later. A ping that cannot be written
// within WriteTimeout means the peer stopped reading: the connection is closed so ReadFrame
// fails, and no more pings go.
func (t *wsTunnel) ping() time.Duration {
	err := t.conn.WriteControl(websocket.PingMessage, nil, time.Now().Add(t.cfg.WriteTimeout))
	if err != nil {
		t.conn.NetConn().Close()
		return 0
	}
	return jitter(t.cfg.PingInterval)
}

// jitter returns d ±20%.
func jitter(d time.Duration) time.Duration {
	return time.Duration(float64(d) * (0.8 + 0.4*rand.Float64()))
}

// ReadFrame reads the next message as one frame. Keep calling it: pings and pongs are
// processed while it reads, and no message or pong for ReadTimeout fails it.
func (t *wsTunnel) ReadFrame() (Frame, error) {
	for {
		if err := t.extendRead(); err != nil {
			return nil, t.readErr(err)
		}
		typ, r, err := t.conn.NextReader()
		if err != nil {
			return nil, t.readErr(err)
		}
		if typ != websocket.BinaryMessage {
			return nil, fmt.Errorf("%w: websocket message of type %d, want binary", ErrMalformed, typ)
		}
		f, err := readFrame(r, t.cfg.MaxFrame)
		if err != nil {
			if errors.Is(err, ErrMalformed) || errors.Is(err, ErrFrameTooLarge) {
				return nil, err
			}
			return nil, t.readErr(err)
		}
		var one [1]byte
		if n, _ := io.ReadFull(r, one[:]); n > 0 {
			return nil, fmt.Errorf("%w: bytes after the frame in a websocket message", ErrMalformed)
		}
		if f != nil {
			return f, nil
		}
	}
}

func (t *wsTunnel) readErr(err error) error {
	var ne net.Error
	switch {
	case t.closed.Load():
		return ErrClosed
	case websocket.IsCloseError(err, websocket.CloseNormalClosure, websocket.CloseGoingAway):
		return fmt.Errorf("websocket read: peer closed: %w", io.EOF)
	case errors.As(err, &ne) && ne.Timeout():
		return fmt.Errorf("websocket read: peer silent for %s: %w", t.cfg.ReadTimeout, err)
	}
	return fmt.Errorf("websocket read: %w", err)
}

// WriteFrame sends f as one binary message within WriteTimeout. Safe for concurrent use.
func (t *wsTunnel) WriteFrame(f Frame) error {
	t.wmu.Lock()
	defer t.wmu.Unlock()
	if t.closed.Load() {
		return ErrClosed
	}
	buf := frameBuffers.Get().(*[]byte)
	head, tail := appendFrame((*buf)[:0], f, splitBulk)
	defer func() { // the WebSocket writer copied head
		*buf = nil
		if cap(head) <= reuseLimit {
			*buf = head[:0]
		}
		frameBuffers.Put(buf)
	}()
	if len(head) == 0 {
		return fmt.Errorf("websocket write: unknown frame %T", f)
	}
	if n := len(head) - 4 + len(tail); n > t.cfg.MaxFrame {
		return fmt.Errorf("websocket write %T: %w: %d bytes, limit %d", f, ErrFrameTooLarge, n,
			t.cfg.MaxFrame)
	}
	if err := t.conn.SetWriteDeadline(time.Now().Add(t.cfg.WriteTimeout)); err != nil {
		return t.writeErr(err)
	}
	if len(tail) == 0 {
		return t.writeErr(t.conn.WriteMessage(websocket.BinaryMessage, head))
	}
	w, err := t.conn.NextWriter(websocket.BinaryMessage)
	if err != nil {
		return t.writeErr(err)
	}
	_, err = w.Write(head)
	if err == nil {
		_, err = w.Write(tail)
	}
	if cerr := w.Close(); err == nil {
		err = cerr
	}
	return t.writeErr(err)
}

// Cork holds the frames written from now on until Uncork (see Corker).
func (t *wsTunnel) Cork() {
	if t.cork != nil {
		t.cork.cork()
	}
}

// Uncork sends the frames held since Cork and returns the error of sending them.
func (t *wsTunnel) Uncork() error {
	if t.cork == nil {
		return nil
	}
	return t.writeErr(t.cork.uncork())
}

func (t *wsTunnel) writeErr(err error) error {
	switch {
	case err == nil:
		return nil
	case t.closed.Load():
		return ErrClosed
	}
	return fmt.Errorf("websocket write: %w", err)
}

// Close sends a close message (best effort), closes the connection and waits for a ping
// being sent. It is idempotent and unblocks ReadFrame and WriteFrame.
func (t *wsTunnel) Close() error {
	t.closeOnce.Do(func() {
		t.closed.Store(true)
		t.pinger.stop()
		msg := websocket.FormatCloseMessage(websocket.CloseNormalClosure, "")
		_ = t.conn.WriteControl(websocket.CloseMessage, msg, time.Now().Add(wsCloseTimeout))
		t.conn.Close() // unblocks a ping being written
		t.pinger.wait()
	})
	return nil
}
