package protocol

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"
)

// ConnConfig tunes a Conn. Every zero value means the default given.
type ConnConfig struct {
	// Queue bounds the data frames waiting for the writer; Send blocks while it is full.
	// Default 64.
	Queue int
	// Control bounds the control frames (Pong, Ping) waiting; they are written ahead of data,
	// and dropped when it is full (a peer that reads nothing needs no more of them). Default 16.
	Control int
	// AckQueue bounds the ids waiting to be gathered into Ack frames; Ack blocks while it is
	// full. Default 4096.
	AckQueue int
	// MaxAckIDs bounds the ids in one Ack frame. Default 1024.
	MaxAckIDs int
	// Burst bounds the frames written in one corked burst. Default 64.
	Burst int
	// Chunk is how many body bytes a Webhook or Chunk frame carries at most. Default
	// DefaultChunk.
	Chunk int
	// PingEvery is the keepalive period: a Ping goes out this often, jittered ±20%.
	// Default 5s; over QUIC 15s (quicPingEvery).
	PingEvery time.Duration
	// DeadAfter: when no frame at all came from the peer for this long, the peer is dead and
	// the Conn closes with ReasonPeerTimeout. Default 15s, over QUIC 45s; it should be a few
	// PingEvery.
	DeadAfter time.Duration
	// FinalGrace is how long a final frame (Close) may take before the tunnel is cut anyway.
	// Default 5s.
	FinalGrace time.Duration
	// MaxFrame is the tunnel's frame size limit, named in the Error frame ("frame over N
	// bytes") that answers a frame over it. Default DefaultMaxFrame.
	MaxFrame int
	// Logger gets the Conn's debug messages. Default slog.Default().
	Logger *slog.Logger
}

// quicPingEvery is the default keepalive period over QUIC. QUIC's own keepalive and idle
// timeout (QUICConfig) find a peer gone silent within seconds; the Conn's Pings only have to
// catch a peer whose QUIC stack answers while its program reads nothing, so they can be rarer.
// Each one is a packet and its acknowledgement on both sides: with 5s, they were most of what
// a relay spent on idle QUIC agents (20% of a core per 1,000; 8% with 15s, hookbench -idle).
const quicPingEvery = 15 * time.Second

func (c ConnConfig) withDefaults() ConnConfig {
	setDefault := func(v *int, d int) {
		if *v <= 0 {
			*v = d
		}
	}
	setDefault(&c.Queue, 64)
	setDefault(&c.Control, 16)
	setDefault(&c.AckQueue, 4096)
	setDefault(&c.MaxAckIDs, 1024)
	setDefault(&c.Burst, 64)
	setDefault(&c.Chunk, DefaultChunk)
	setDefault(&c.MaxFrame, DefaultMaxFrame)
	if c.PingEvery <= 0 {
		c.PingEvery = 5 * time.Second
	}
	if c.DeadAfter <= 0 {
		c.DeadAfter = 15 * time.Second
	}
	if c.FinalGrace <= 0 {
		c.FinalGrace = 5 * time.Second
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	return c
}

// CloseReason says why a Conn closed. Its String is the label the relay's metrics use.
type CloseReason uint8

const (
	// ReasonClosed, the zero value: the peer closed, the tunnel failed on read, or the
	// handler ended the Conn without giving another reason.
	ReasonClosed CloseReason = iota
	ReasonShutdown
	ReasonReplaced
	ReasonRevoked
	ReasonGrantsChanged
	ReasonFrameTooLarge // the peer sent a frame over the maximum size
	ReasonProtocol      // the peer sent a malformed or unexpected frame
	ReasonWrite         // a write to the tunnel failed
	ReasonPeerTimeout   // nothing came from the peer for DeadAfter
)

var reasonNames = [...]string{
	ReasonClosed:        "closed",
	ReasonShutdown:      "shutdown",
	ReasonReplaced:      "replaced",
	ReasonRevoked:       "revoked",
	ReasonGrantsChanged: "grants_changed",
	ReasonFrameTooLarge: "frame_too_large",
	ReasonProtocol:      "protocol",
	ReasonWrite:         "write",
	ReasonPeerTimeout:   "peer_timeout",
}

func (r CloseReason) String() string {
	if int(r) < len(reasonNames) {
		return reasonNames[r]
	}
	return fmt.Sprintf("reason(%d)", uint8(r))
}

// ErrPeerTimeout: nothing came from the peer for ConnConfig.DeadAfter.
var ErrPeerTimeout = errors.New("protocol: peer silent")

// Conn owns a tunnel once the handshake is over. Its writer goroutine is the only writer of
// the tunnel: it writes control frames ahead of data, writes the frames that are ready
// together in one corked burst (Corker), gathers acked ids into Ack frames and splits webhook
// bodies into chunks. A keepalive sends Pings and closes the Conn when the peer falls silent,
// which catches a half-open tunnel on any transport; Pings are answered inside the Conn.
// Run reads, in the caller's goroutine, and returns once everything the Conn started stopped.
// The keepalive and the watches of Run's ctx and of closing run on timers and context
// callbacks, not goroutines of their own: an idle Conn costs two goroutines, its reader and
// its writer (a relay holds thousands).
type Conn struct {
	// static after NewConn
	t      Tunnel
	corker Corker // t, when it can cork
	cfg    ConnConfig
	log    *slog.Logger
	epoch  time.Time // lastRead counts from here (monotonic)

	data chan outFrame // to the writer
	ctrl chan Frame    // to the writer, ahead of data
	acks chan string   // ids to the writer, for Ack frames

	lastRead   atomic.Int64    // time since epoch of the last frame read
	ctx        context.Context // cancelled by the first Close
	cancel     context.CancelFunc
	done       <-chan struct{} // ctx.Done()
	writerDone chan struct{}   // closed when the writer returned

	// owned by the keepalive (one run at a time)
	nonce    uint64
	nextPing time.Time

	mu      sync.Mutex
	running bool        // Run was called
	reason  CloseReason // set by the first Close
	final   Frame       // written by the writer before it closes the tunnel
	cause   error       // what closed it from inside (write failure, peer timeout), if that
}

// outFrame is a frame for the writer; done, when set (buffered), hears the write's result.
type outFrame struct {
	f    Frame
	done chan<- error
}

// NewConn takes over t, whose handshake is done. Nothing runs until Run.
func NewConn(t Tunnel, cfg ConnConfig) *Conn {
	if t.Transport() == "quic" {
		if cfg.PingEvery <= 0 {
			cfg.PingEvery = quicPingEvery
		}
		if cfg.DeadAfter <= 0 {
			cfg.DeadAfter = 3 * quicPingEvery
		}
	}
	cfg = cfg.withDefaults()
	ctx, cancel := context.WithCancel(context.Background())
	c := &Conn{
		t:          t,
		cfg:        cfg,
		log:        cfg.Logger,
		epoch:      time.Now(),
		data:       make(chan outFrame, cfg.Queue),
		ctrl:       make(chan Frame, cfg.Control),
		acks:       make(chan string, cfg.AckQueue),
		ctx:        ctx,
		cancel:     cancel,
		done:       ctx.Done(),
		writerDone: make(chan struct{}),
	}
	c.corker, _ = t.(Corker)
	return c
}

// Tunnel is the tunnel the Conn owns (for its Transport and RemoteAddr).
func (c *Conn) Tunnel() Tunnel { return c.t }

// Send queues f for the writer, waiting while the queue is full. A *Webhook is sent with its
// body in chunks. It fails once the Conn is closing (ErrClosed) or ctx ends.
func (c *Conn) Send(ctx context.Context, f Frame) error {
	return c.send(ctx, outFrame{f: f})
}

// SendWait is Send, then waits until f was written (handed to the transport, uncorked) and
// returns the write's error. Frames keep their order, so once SendWait returns nil every frame
// Sent before it was written too.
func (c *Conn) SendWait(ctx context.Context, f Frame) error {
	res := make(chan error, 1)
	if err := c.send(ctx, outFrame{f: f, done: res}); err != nil {
		return err
	}
	select {
	case err := <-res:
		return err
	case <-c.writerDone:
		select {
		case err := <-res:
			return err
		default:
			return ErrClosed // closed before the writer got to it
		}
	case <-ctx.Done():
		return context.Cause(ctx)
	}
}

func (c *Conn) send(ctx context.Context, o outFrame) error {
	select {
	case <-c.done:
		return ErrClosed
	default:
	}
	select {
	case c.data <- o:
		return nil
	case <-c.done:
		return ErrClosed
	case <-ctx.Done():
		return context.Cause(ctx)
	}
}

// SendControl queues f ahead of the data frames, as Pongs go: for small frames that must not
// wait behind webhooks (a relay's Recorded). It waits while the control queue is full and
// fails once the Conn is closing or ctx ends.
func (c *Conn) SendControl(ctx context.Context, f Frame) error {
	select {
	case <-c.done:
		return ErrClosed
	default:
	}
	select {
	case c.ctrl <- f:
		return nil
	case <-c.done:
		return ErrClosed
	case <-ctx.Done():
		return context.Cause(ctx)
	}
}

// Ack queues one id for an Ack frame; ids that are ready together leave in one frame. It
// waits while the ack queue is full and fails once the Conn is closing or ctx ends.
func (c *Conn) Ack(ctx context.Context, id string) error {
	select {
	case <-c.done:
		return ErrClosed
	default:
	}
	select {
	case c.acks <- id:
		return nil
	case <-c.done:
		return ErrClosed
	case <-ctx.Done():
		return context.Cause(ctx)
	}
}

// Close ends the Conn for reason. A non-nil final frame (GoAway, Error) is written after the
// frame being written now and before the tunnel closes, within FinalGrace; queued frames are
// dropped. Without one the tunnel closes at once. Only the first call counts; Close does not
// wait for Run to return.
func (c *Conn) Close(reason CloseReason, final Frame) {
	if c.closeFor(reason, final, nil) && final == nil {
		c.t.Close() // outside mu: closing may take a moment
	}
}

// closeFor records the first close and reports whether this was it.
func (c *Conn) closeFor(reason CloseReason, final Frame, cause error) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	select {
	case <-c.done:
		return false
	default:
	}
	c.reason, c.final, c.cause = reason, final, cause
	c.cancel()
	return true
}

// fail closes the Conn from inside, cause being the error Run returns.
func (c *Conn) fail(reason CloseReason, cause error) {
	if c.closeFor(reason, nil, cause) {
		c.log.Debug("tunnel closed", "reason", reason, "err", cause)
		c.t.Close()
	}
}

// Done is closed once the Conn is closing.
func (c *Conn) Done() <-chan struct{} { return c.done }

// Context is cancelled once the Conn is closing (when Done is closed): for work that belongs
// to the Conn's life.
func (c *Conn) Context() context.Context { return c.ctx }

// Reason is why the Conn closed; meaningful once Done is closed.
func (c *Conn) Reason() CloseReason {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.reason
}

// Run starts the writer and the keepalive, then reads frames and passes each to handle (in
// this goroutine) until the tunnel fails, handle returns an error, Close is called or ctx ends
// (ReasonShutdown). Ping and Pong frames are handled here and not passed on. A frame too large
// or malformed closes the Conn with an Error frame to the peer. Run closes the tunnel and
// returns only after the writer and the keepalive stopped; its error says why it ended: the
// write failure or the peer timeout when one closed it, else the read error or handle's.
// Run may be called once.
func (c *Conn) Run(ctx context.Context, handle func(Frame) error) error {
	c.mu.Lock()
	if c.running {
		c.mu.Unlock()
		return errors.New("protocol: conn run twice")
	}
	c.running = true
	c.mu.Unlock()

	c.lastRead.Store(int64(time.Since(c.epoch)))
	var wg sync.WaitGroup
	wg.Go(c.writeLoop)
	wg.Add(2)
	stopShutdown := context.AfterFunc(ctx, func() {
		defer wg.Done()
		c.Close(ReasonShutdown, nil)
	})
	context.AfterFunc(c.ctx, func() { // the Conn is closed by the time readLoop returns
		defer wg.Done()
		c.graceFinal()
	})
	c.nextPing = time.Now().Add(jitter(c.cfg.PingEvery))
	keep := startPulse(time.Until(c.nextPing), c.keepalive)
	err := c.readLoop(handle)
	if stopShutdown() {
		wg.Done()
	}
	keep.stop()
	keep.wait()
	wg.Wait()
	c.t.Close()
	c.mu.Lock()
	cause := c.cause
	c.mu.Unlock()
	if cause != nil {
		return cause
	}
	return err
}

// readLoop reads until the tunnel fails or handle fails; either way the Conn is closed when
// it returns.
func (c *Conn) readLoop(handle func(Frame) error) error {
	for {
		f, err := c.t.ReadFrame()
		if err != nil {
			switch {
			case errors.Is(err, ErrFrameTooLarge):
				c.Close(ReasonFrameTooLarge, &Error{Code: CodeLimit,
					Reason: fmt.Sprintf("frame over %d bytes", c.cfg.MaxFrame)})
			case errors.Is(err, ErrMalformed):
				c.Close(ReasonProtocol, &Error{Code: CodeProtocol, Reason: "malformed frame"})
			default:
				c.Close(ReasonClosed, nil)
			}
			return fmt.Errorf("read frame: %w", err)
		}
		c.lastRead.Store(int64(time.Since(c.epoch)))
		switch f := f.(type) {
		case *Ping:
			select { // best effort: a full queue means the peer is not reading anyway
			case c.ctrl <- &Pong{Nonce: f.Nonce}:
			default:
			}
		case *Pong:
		default:
			if err := handle(f); err != nil {
				c.Close(ReasonClosed, nil)
				return err
			}
		}
	}
}
