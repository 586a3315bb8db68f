package protocol

import (
	"bufio"
	"fmt"
	"net"
	"net/http"
	"sync"
	"time"
)

const (
	// corkMax is how many bytes a corked connection holds before it sends them anyway; a
	// write at least this big goes out by itself rather than being copied.
	corkMax = 64 << 10
	// corkKeep is the largest hold buffer kept between corks.
	corkKeep = 16 << 10
)

// Corker is implemented by a Tunnel that can hold writes back and send them together (the
// WebSocket one, which otherwise makes a system call per frame). A writer with several frames
// ready calls Cork, writes them, then Uncork, and they leave in one system call. Between the
// two, WriteFrame may return before its frame left; Uncork sends what is held and returns
// that error. QUIC needs none of this: it queues and batches writes by itself.
type Corker interface {
	Cork()
	Uncork() error
}

// corkConn is the connection under a WebSocket: while corked, it keeps what is written (whole
// WebSocket frames, since the WebSocket writer holds its own lock per frame, control frames of
// other goroutines included) and sends it on uncork; uncorked, it writes through.
type corkConn struct {
	net.Conn
	timeout time.Duration // for sending what was held

	mu     sync.Mutex
	corked bool
	buf    []byte
	err    error // a failed send of held bytes, returned by later writes and uncork
}

func newCorkConn(c net.Conn, timeout time.Duration) *corkConn {
	return &corkConn{Conn: c, timeout: timeout}
}

func (c *corkConn) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.err != nil {
		return 0, c.err
	}
	if !c.corked || len(p) >= corkMax {
		if err := c.flushLocked(); err != nil {
			return 0, err
		}
		return c.Conn.Write(p)
	}
	c.buf = append(c.buf, p...)
	if len(c.buf) >= corkMax {
		if err := c.flushLocked(); err != nil {
			return 0, err
		}
	}
	return len(p), nil
}

func (c *corkConn) cork() {
	c.mu.Lock()
	c.corked = true
	c.mu.Unlock()
}

func (c *corkConn) uncork() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.corked = false
	err := c.flushLocked()
	if cap(c.buf) > corkKeep {
		c.buf = nil
	}
	return err
}

// flushLocked sends the held bytes. The WebSocket writer set a deadline for each frame it
// wrote; the held ones get a fresh one.
func (c *corkConn) flushLocked() error {
	if c.err != nil || len(c.buf) == 0 {
		return c.err
	}
	c.Conn.SetWriteDeadline(time.Now().Add(c.timeout))
	_, err := c.Conn.Write(c.buf)
	c.buf = c.buf[:0]
	if err != nil {
		c.err = fmt.Errorf("send held frames: %w", err)
	}
	return c.err
}

// corkHijacker hands the WebSocket upgrader a corkConn in place of the hijacked connection.
type corkHijacker struct {
	http.ResponseWriter
	timeout time.Duration
	conn    *corkConn // set by Hijack
}

func (h *corkHijacker) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	hj, ok := h.ResponseWriter.(http.Hijacker)
	if !ok {
		return nil, nil, fmt.Errorf("response writer %T cannot hijack", h.ResponseWriter)
	}
	c, brw, err := hj.Hijack()
	if err != nil {
		return nil, nil, err
	}
	h.conn = newCorkConn(c, h.timeout)
	return h.conn, brw, nil
}

func (h *corkHijacker) Unwrap() http.ResponseWriter { return h.ResponseWriter }
