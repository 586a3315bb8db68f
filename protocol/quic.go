package protocol

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"sync"
	"time"

	"github.com/quic-go/quic-go"
)

// QUICConfig tunes the QUIC transport. Every zero value means the default given.
type QUICConfig struct {
	MaxFrame         int           // largest frame accepted; default DefaultMaxFrame
	Streams          int           // data streams the dialer opens, 1..maxQUICStreams; default 4
	KeepAlive        time.Duration // QUIC keepalive period; default 5s
	IdleTimeout      time.Duration // no packet for this long = dead peer; default 15s
	HandshakeTimeout time.Duration // TLS handshake plus stream setup; default 10s
	WriteTimeout     time.Duration // a blocked stream write fails the tunnel after this; default 30s
	Logger           *slog.Logger  // listener: connections that fail setup; nil = slog.Default()
	// Admit (listener only; nil = admit all) is asked about each new connection before any of
	// its streams is accepted. An error refuses it: the connection is closed with the code and
	// reason of a *Refusal (CodeLimit and the error's text otherwise). release, when not nil,
	// is called once the tunnel's first control frame (the agent's Hello) has been read or the
	// connection ended without one: what Admit counts is connections not yet past their Hello.
	Admit func(remote net.Addr) (release func(), err error)
}

// Refusal is why a listener refuses a connection before its handshake; on QUIC, Code and
// Reason are the connection's application error code and reason.
type Refusal struct {
	Code   ErrorCode
	Reason string
}

func (r *Refusal) Error() string { return "refused: " + r.Reason }

const (
	maxQUICStreams = 16
	// Stream preambles, written by the dialer as the first bytes of each stream it opens.
	preambleControl = 0 // then u8 number of data streams
	preambleData    = 1 // then u8 index of this data stream
	// quicCloseGrace bounds how long Close waits for queued frames to leave and the peer to
	// finish its side before closing the connection.
	quicCloseGrace = 2 * time.Second
)

func (c QUICConfig) withDefaults() QUICConfig {
	if c.MaxFrame <= 0 {
		c.MaxFrame = DefaultMaxFrame
	}
	if c.Streams <= 0 {
		c.Streams = 4
	}
	c.Streams = min(c.Streams, maxQUICStreams)
	if c.KeepAlive <= 0 {
		c.KeepAlive = 5 * time.Second
	}
	if c.IdleTimeout <= 0 {
		c.IdleTimeout = 15 * time.Second
	}
	if c.HandshakeTimeout <= 0 {
		c.HandshakeTimeout = 10 * time.Second
	}
	if c.WriteTimeout <= 0 {
		c.WriteTimeout = 30 * time.Second
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	return c
}

// quicConfig returns quic-go's settings; flow-control windows are larger than quic-go's
// defaults so that a few MiB of webhooks can be in flight per connection.
func (c QUICConfig) quicConfig(server bool) *quic.Config {
	qc := &quic.Config{
		HandshakeIdleTimeout:           c.HandshakeTimeout,
		MaxIdleTimeout:                 c.IdleTimeout,
		KeepAlivePeriod:                c.KeepAlive,
		InitialStreamReceiveWindow:     1 << 20,
		MaxStreamReceiveWindow:         8 << 20,
		InitialConnectionReceiveWindow: 4 << 20,
		MaxConnectionReceiveWindow:     32 << 20,
		MaxIncomingStreams:             -1, // the dialer opens every stream
		MaxIncomingUniStreams:          -1,
	}
	if server {
		// What the protocol needs: a control stream and at most maxQUICStreams data streams.
		qc.MaxIncomingStreams = maxQUICStreams + 1
		// The relay receives little (Hello, acks, reports), and data streams are not read
		// before the Hello: small initial windows bound what an unauthenticated peer can make
		// it buffer. They still grow (up to the maxima) for a peer that is read.
		qc.InitialStreamReceiveWindow = 64 << 10
		qc.InitialConnectionReceiveWindow = 256 << 10
	}
	return qc
}

// quicTLS clones tlsConf for QUIC: TLS 1.3 and ALPN Subprotocol only.
func quicTLS(tlsConf *tls.Config) *tls.Config {
	if tlsConf == nil {
		tlsConf = &tls.Config{}
	}
	tc := tlsConf.Clone()
	tc.MinVersion = tls.VersionTLS13
	tc.NextProtos = []string{Subprotocol}
	return tc
}

// DialQUIC connects to a relay's QUIC address and returns a Tunnel. tlsConf may be nil (system
// roots, server name from addr) or come from PinnedTLSConfig; ALPN is set to Subprotocol.
// It opens the control stream and cfg.Streams data streams before returning.
func DialQUIC(ctx context.Context, addr string, tlsConf *tls.Config, cfg QUICConfig) (Tunnel, error) {
	cfg = cfg.withDefaults()
	ctx, cancel := context.WithTimeout(ctx, cfg.HandshakeTimeout)
	defer cancel()
	conn, err := quic.DialAddr(ctx, addr, quicTLS(tlsConf), cfg.quicConfig(false))
	if err != nil {
		return nil, fmt.Errorf("dial quic %s: %w", addr, err)
	}
	if p := conn.ConnectionState().TLS.NegotiatedProtocol; p != Subprotocol {
		conn.CloseWithError(0, "")
		return nil, fmt.Errorf("dial quic %s: server chose ALPN %q: %w", addr, p, ErrSubprotocol)
	}
	streams := make([]*quic.Stream, 1+cfg.Streams)
	for i := range streams {
		s, err := conn.OpenStreamSync(ctx)
		if err == nil {
			pre := []byte{preambleControl, byte(cfg.Streams)}
			if i > 0 {
				pre = []byte{preambleData, byte(i - 1)}
			}
			_, err = s.Write(pre)
		}
		if err != nil {
			conn.CloseWithError(0, "")
			return nil, fmt.Errorf("dial quic %s: open stream %d: %w", addr, i, err)
		}
		streams[i] = s
	}
	return newQUICTunnel(conn, streams, cfg, true, nil), nil
}

// QUICListener accepts agents' QUIC connections. Each is set up (TLS, then its streams) in its
// own goroutine, so a slow or bad client does not hold up others.
type QUICListener struct {
	ln  *quic.Listener
	cfg QUICConfig

	ready  chan *quicTunnel // set-up tunnels waiting for Accept
	ctx    context.Context  // cancelled by Close: stops the accept loop and setups
	cancel context.CancelFunc
	closer sync.Once
	wg     sync.WaitGroup // the accept loop and setup goroutines
}

// ListenQUIC listens on a UDP address; tlsConf must hold the relay's certificate. Close stops
// accepting; tunnels already returned by Accept stay open.
func ListenQUIC(addr string, tlsConf *tls.Config, cfg QUICConfig) (*QUICListener, error) {
	cfg = cfg.withDefaults()
	ln, err := quic.ListenAddr(addr, quicTLS(tlsConf), cfg.quicConfig(true))
	if err != nil {
		return nil, fmt.Errorf("listen quic %s: %w", addr, err)
	}
	l := &QUICListener{ln: ln, cfg: cfg, ready: make(chan *quicTunnel)}
	l.ctx, l.cancel = context.WithCancel(context.Background())
	l.wg.Add(1)
	go l.acceptLoop()
	return l, nil
}

// Addr is the UDP address the listener is bound to.
func (l *QUICListener) Addr() net.Addr { return l.ln.Addr() }

// Accept returns the next tunnel whose streams are set up. It returns ErrClosed once the
// listener is closed, or ctx's error.
func (l *QUICListener) Accept(ctx context.Context) (Tunnel, error) {
	select {
	case t := <-l.ready:
		return t, nil
	case <-l.ctx.Done():
		return nil, ErrClosed
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// Close stops listening and waits for connections still being set up, closing them.
func (l *QUICListener) Close() error {
	l.closer.Do(func() {
		l.cancel()
		l.ln.Close()
		l.wg.Wait()
	})
	return nil
}

func (l *QUICListener) acceptLoop() {
	defer l.wg.Done()
	for {
		conn, err := l.ln.Accept(l.ctx)
		if err != nil {
			return
		}
		l.wg.Add(1)
		go l.setup(conn)
	}
}

// setup accepts the control stream, learns the number of data streams from its preamble and
// accepts those, then hands the tunnel to Accept.
func (l *QUICListener) setup(conn *quic.Conn) {
	defer l.wg.Done()
	var release func()
	if l.cfg.Admit != nil {
		var err error
		if release, err = l.cfg.Admit(conn.RemoteAddr()); err != nil {
			r, ok := err.(*Refusal)
			if !ok {
				r = &Refusal{Code: CodeLimit, Reason: err.Error()}
			}
			l.cfg.Logger.Debug("quic connection refused", "remote", conn.RemoteAddr().String(), "reason", r.Reason)
			conn.CloseWithError(quic.ApplicationErrorCode(r.Code), r.Reason)
			return
		}
	}
	t, err := acceptStreams(l.ctx, conn, l.cfg, release)
	if err != nil {
		if release != nil {
			release()
		}
		l.cfg.Logger.Debug("quic tunnel setup failed", "remote", conn.RemoteAddr().String(), "err", err)
		conn.CloseWithError(quic.ApplicationErrorCode(CodeProtocol), "tunnel setup failed")
		return
	}
	select {
	case l.ready <- t:
	case <-l.ctx.Done():
		t.abort()
	}
}

// acceptStreams accepts the control stream and the data streams its preamble announces; the
// tunnel reads only the control stream until its first frame (see newQUICTunnel).
func acceptStreams(ctx context.Context, conn *quic.Conn, cfg QUICConfig, release func()) (*quicTunnel, error) {
	ctx, cancel := context.WithTimeout(ctx, cfg.HandshakeTimeout)
	defer cancel()
	stop := context.AfterFunc(ctx, func() { conn.CloseWithError(0, "") })
	defer stop()
	var streams []*quic.Stream
	for i := 0; i == 0 || i < len(streams); i++ {
		s, err := conn.AcceptStream(ctx)
		if err != nil {
			return nil, fmt.Errorf("accept stream %d: %w", i, err)
		}
		var pre [2]byte
		if _, err := io.ReadFull(s, pre[:]); err != nil {
			return nil, fmt.Errorf("read stream %d preamble: %w", i, err)
		}
		switch {
		case i == 0 && pre[0] == preambleControl && pre[1] >= 1 && pre[1] <= maxQUICStreams:
			streams = make([]*quic.Stream, 1+int(pre[1]))
		case i > 0 && pre[0] == preambleData && int(pre[1]) == i-1:
		default:
			return nil, fmt.Errorf("%w: stream %d preamble % x", ErrMalformed, i, pre)
		}
		streams[i] = s
	}
	if !stop() {
		return nil, fmt.Errorf("tunnel setup: %w", context.Cause(ctx))
	}
	return newQUICTunnel(conn, streams, cfg, false, release), nil
}

// quicErr turns quic-go's end-of-connection errors into ours: the peer closing is io.EOF.
func quicErr(err error) error {
	var app *quic.ApplicationError
	if errors.As(err, &app) && app.Remote && app.ErrorCode == 0 {
		return fmt.Errorf("quic: peer closed: %w", io.EOF)
	}
	return err
}
