package protocol

import (
	"errors"
	"fmt"
	"io"
	"sync"
	"sync/atomic"
	"time"

	"github.com/quic-go/quic-go"
)

const (
	// quicWriteQueue is how many encoded bytes may wait for one stream's writer before
	// WriteFrame blocks (one frame is always let in, however large).
	quicWriteQueue = 128 << 10
	// quicKeepBuf is the largest write buffer a stream writer keeps once its stream goes
	// idle; while frames keep coming it keeps buffers up to quicKeepBusy: a queue full and a
	// body chunk frame past it, as append grows them (with less, every chunk of a large body
	// made a new buffer: 30 MiB of garbage for three 10 MiB bodies).
	quicKeepBuf  = 16 << 10
	quicKeepBusy = 2 * (quicWriteQueue + DefaultChunk)
	// quicReadQueue is how many batches of decoded frames may wait for ReadFrame, from all
	// streams, and quicReadBatch the most frames in a batch.
	quicReadQueue = 8
	quicReadBatch = 32
	// maxHeld bounds the data frames a dialer holds back before the first control frame.
	maxHeld = 8192
)

// quicTunnel is a Tunnel over one QUIC connection: a control stream and N data streams.
// WriteFrame queues an encoded frame for its stream's writer goroutine, which sends queued
// frames in batches: that lets many small frames share packets and keeps the sender from
// waiting on quic-go for each frame. A writer runs only while its stream has something to
// send (or to finish), so an idle tunnel costs no writer goroutines: a relay holds thousands
// of idle agents. One reader goroutine per stream feeds ReadFrame.
type quicTunnel struct {
	// Static after construction.
	conn    *quic.Conn
	cfg     QUICConfig
	remote  string
	streams []*quic.Stream  // [0] control, [1:] data
	writers []*streamWriter // one per stream

	// holdData (dialer side, set before use): data-stream frames wait until the first
	// control-stream frame was read. The listener writes Welcome on the control stream before
	// any webhook, but streams are independent, so a webhook may overtake it; holding them
	// keeps "Welcome first" true on QUIC as on WebSocket.
	holdData bool
	// release (listener side; may be nil) is Admit's, called once by admitted.
	release     func()
	releaseOnce sync.Once

	// lateData (listener side): the data streams get their readers only once the control
	// stream's first frame (the Hello) has arrived, so that a peer that has not said Hello
	// costs one stream reader, not 1+maxQUICStreams. Owned by the control stream's reader.
	lateData bool
	// readersStarted is how many stream readers were started, for counting ends.
	readersStarted atomic.Int32

	// Owned by the ReadFrame goroutine.
	gotControl bool    // a control-stream frame was returned
	held       []Frame // data-stream frames waiting for it
	batch      []Frame // frames received, not yet returned
	batchErr   error   // what ended the stream batch came from, once batch is returned
	eofs       int     // streams the peer finished
	readErr    error   // sticky

	// Shared.
	in          chan readResult // from the stream readers
	readersUp   atomic.Int32    // stream readers still running
	readersDone chan struct{}   // closed when readersUp reaches 0
	writersUp   atomic.Int32
	writersDone chan struct{}
	closed      atomic.Bool
	done        chan struct{} // closed by Close
	closeOnce   sync.Once
	readers     sync.WaitGroup
	writing     sync.WaitGroup
}

func newQUICTunnel(conn *quic.Conn, streams []*quic.Stream, cfg QUICConfig, holdData bool, release func()) *quicTunnel {
	t := &quicTunnel{conn: conn, cfg: cfg, remote: conn.RemoteAddr().String(), streams: streams, holdData: holdData,
		release: release, lateData: !holdData,
		in: make(chan readResult, quicReadQueue), done: make(chan struct{}),
		readersDone: make(chan struct{}), writersDone: make(chan struct{})}
	t.writersUp.Store(int32(len(streams)))
	for _, s := range streams {
		w := &streamWriter{s: s, timeout: cfg.WriteTimeout, maxFrame: cfg.MaxFrame}
		w.cond.L = &w.mu
		w.start = func() {
			t.writing.Add(1)
			go t.writeLoop(w)
		}
		t.writers = append(t.writers, w)
	}
	first := len(streams)
	if t.lateData {
		first = 1
	}
	t.startReaders(0, first)
	return t
}

// startReaders starts the readers of streams[from:to]. Called before any reader runs, or by
// the control stream's reader, which is still counted: readersUp cannot pass zero meanwhile.
func (t *quicTunnel) startReaders(from, to int) {
	t.readersUp.Add(int32(to - from))
	t.readersStarted.Add(int32(to - from))
	for i := from; i < to; i++ {
		t.readers.Add(1)
		go t.readLoop(t.streams[i], i == 0)
	}
}

// admitted calls release once: the Hello has arrived, or the tunnel ended before it.
func (t *quicTunnel) admitted() {
	if t.release != nil {
		t.releaseOnce.Do(t.release)
	}
}

func (t *quicTunnel) Transport() string  { return "quic" }
func (t *quicTunnel) RemoteAddr() string { return t.remote }

// readLoop decodes frames from one stream until it ends, handing them over in batches of
// what is already buffered. After Close it keeps reading, and drops what it reads, so that
// Close can see the peer finish its side.
func (t *quicTunnel) readLoop(s *quic.Stream, control bool) {
	defer t.readers.Done()
	defer func() {
		if t.readersUp.Add(-1) == 0 {
			close(t.readersDone)
		}
	}()
	if control {
		defer t.admitted()
	}
	rd := NewReader(s, t.cfg.MaxFrame)
	var batch []Frame
	for {
		f, err := rd.readOne()
		if f != nil {
			batch = append(batch, f)
			if control && t.lateData {
				t.lateData = false
				if !t.closed.Load() {
					t.startReaders(1, len(t.streams))
				}
				t.admitted()
			}
		}
		if err == nil && len(batch) < quicReadBatch && rd.frameBuffered() {
			continue
		}
		if len(batch) > 0 || err != nil {
			select {
			case t.in <- readResult{batch, err, control}:
			case <-t.done:
			}
			batch = nil
		}
		if err != nil {
			return
		}
	}
}

// readResult is a batch of frames from one stream, then possibly the error that ended it.
type readResult struct {
	frames  []Frame
	err     error
	control bool // from the control stream
}

// ReadFrame returns the next frame from any stream; frames of one stream keep their order.
// It returns io.EOF (wrapped) once the peer has finished every stream.
func (t *quicTunnel) ReadFrame() (Frame, error) {
	for {
		switch {
		case t.closed.Load():
			return nil, ErrClosed
		case len(t.batch) > 0:
			f := t.batch[0]
			t.batch[0] = nil
			t.batch = t.batch[1:]
			return f, nil
		case t.readErr != nil:
			return nil, t.readErr
		case t.batchErr == io.EOF:
			if t.eofs++; t.eofs == int(t.readersStarted.Load()) {
				t.readErr = fmt.Errorf("quic read: peer closed: %w", io.EOF)
			}
		case t.batchErr != nil:
			t.readErr = fmt.Errorf("quic read: %w", quicErr(t.batchErr))
		}
		t.batchErr = nil
		if t.readErr != nil {
			continue
		}
		select {
		case r := <-t.in:
			t.batch, t.batchErr = t.order(r), r.err
		case <-t.done:
			return nil, ErrClosed
		}
	}
}

// order applies holdData: it returns the frames of r to hand out now.
func (t *quicTunnel) order(r readResult) []Frame {
	switch {
	case !t.holdData || t.gotControl:
		return r.frames
	case !r.control:
		if len(t.held)+len(r.frames) > maxHeld {
			t.readErr = fmt.Errorf("%w: %d frames before the first control frame", ErrMalformed, len(t.held)+len(r.frames))
			return nil
		}
		t.held = append(t.held, r.frames...)
		return nil
	case len(r.frames) == 0:
		return nil
	}
	t.gotControl = true
	out := append(r.frames, t.held...)
	t.held = nil
	return out
}

// WriteFrame queues f on its stream: a Webhook or Chunk on the data stream its OrderKey, or
// else its id, hashes to, anything else on the control stream. It blocks while that stream's queue is full.
func (t *quicTunnel) WriteFrame(f Frame) error {
	if t.closed.Load() {
		return ErrClosed
	}
	w := t.writers[0]
	switch f := f.(type) {
	case *Webhook:
		w = t.dataWriter(f.ID, f.OrderKey)
	case *Chunk:
		w = t.dataWriter(f.ID, f.OrderKey)
	}
	err := w.queue(f)
	switch {
	case err == nil:
		return nil
	case t.closed.Load():
		return ErrClosed
	case errors.Is(err, ErrFrameTooLarge):
		return err
	}
	return fmt.Errorf("quic write: %w", quicErr(err))
}

// dataWriter is the writer of the data stream a webhook's frames go on: the one its order key
// hashes to when it has one (so webhooks of one key cannot overtake each other), else its id's.
func (t *quicTunnel) dataWriter(id, orderKey string) *streamWriter {
	key := id
	if orderKey != "" {
		key = orderKey
	}
	return t.writers[1+int(hashID(key)%uint32(len(t.writers)-1))]
}

// hashID is FNV-1a.
func hashID(id string) uint32 {
	h := uint32(2166136261)
	for i := 0; i < len(id); i++ {
		h ^= uint32(id[i])
		h *= 16777619
	}
	return h
}

// writeLoop sends one stream's queued bytes in batches until none are left (the next queue
// starts a writer again), or until Close has let it drain: then it finishes the stream. A
// failed write closes the connection, so ReadFrame fails too.
func (t *quicTunnel) writeLoop(w *streamWriter) {
	defer t.writing.Done()
	ended := func() { // the stream is finished, or failed: it has no writer again
		if t.writersUp.Add(-1) == 0 {
			close(t.writersDone)
		}
	}
	for {
		batch, st := w.next()
		switch st {
		case writerIdle:
			return
		case writerFinish:
			w.s.Close()
			ended()
			return
		case writerFailed:
			ended()
			return
		}
		w.s.SetWriteDeadline(time.Now().Add(w.timeout))
		_, err := w.s.Write(batch)
		w.sent(batch, err)
		if err != nil {
			if !t.closed.Load() {
				t.conn.CloseWithError(quic.ApplicationErrorCode(CodeInternal), "stream write failed")
			}
			ended()
			return
		}
	}
}

// Close lets queued frames go and finishes this side's streams, waits (at most
// quicCloseGrace) for the peer to finish its side, then closes the connection and waits for
// every goroutine of the tunnel. It is idempotent and unblocks ReadFrame and WriteFrame.
func (t *quicTunnel) Close() error {
	t.closeOnce.Do(func() {
		peerFinished := t.readersUp.Load() == 0
		t.stop()
		// One grace for all the waits below: a closed channel, since a timer's fires once.
		expired := make(chan struct{})
		grace := time.AfterFunc(quicCloseGrace, func() { close(expired) })
		defer grace.Stop()
		connDone := t.conn.Context().Done()
		select {
		case <-t.writersDone:
		case <-connDone:
		case <-expired:
		}
		select {
		case <-t.readersDone:
			// The side that closes first closes the connection once the other side's
			// streams have ended, which is after all their data arrived. If the peer was
			// first, wait for it to do so, so that what we sent last is not cut off.
			if peerFinished {
				select {
				case <-connDone:
				case <-expired:
				}
			}
		case <-connDone:
		case <-expired:
		}
		t.conn.CloseWithError(0, "")
		t.writing.Wait()
		t.readers.Wait()
	})
	return nil
}

// abort closes the connection at once, for a tunnel nobody has used yet.
func (t *quicTunnel) abort() {
	t.closeOnce.Do(func() {
		t.stop()
		t.conn.CloseWithError(0, "")
		t.writing.Wait()
		t.readers.Wait()
	})
}

// stop refuses further reads and writes and tells the writers to drain and finish.
func (t *quicTunnel) stop() {
	t.closed.Store(true)
	t.admitted()
	close(t.done)
	for _, w := range t.writers {
		w.close()
	}
}

// streamWriter queues encoded frames for one stream's writer goroutine.
type streamWriter struct {
	s        *quic.Stream
	timeout  time.Duration
	maxFrame int

	start func() // starts a writer goroutine; called with mu held, when none runs

	mu      sync.Mutex
	cond    sync.Cond // signalled when pending gets room, or the writer stops
	pending []byte    // encoded frames not yet handed to the stream
	spare   []byte    // the previous batch's buffer, for reuse
	err     error     // the stream's write error, sticky
	closing bool      // Close: send what is pending, then finish the stream
	running bool      // a writer goroutine runs (from start until next says idle, finish or failed)
}

// queue encodes f onto the pending bytes, waiting while they are over quicWriteQueue.
func (w *streamWriter) queue(f Frame) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	for len(w.pending) >= quicWriteQueue && w.err == nil && !w.closing {
		w.cond.Wait()
	}
	if w.err != nil {
		return w.err
	}
	if w.closing {
		return ErrClosed
	}
	start := len(w.pending)
	w.pending = AppendFrame(w.pending, f)
	n := len(w.pending) - start - 4
	switch {
	case n < 0:
		return fmt.Errorf("quic write: unknown frame %T", f)
	case n > w.maxFrame:
		w.pending = w.pending[:start]
		return fmt.Errorf("quic write %T: %w: %d bytes, limit %d", f, ErrFrameTooLarge, n, w.maxFrame)
	}
	w.wake()
	return nil
}

// wake starts a writer unless one runs. mu is held.
func (w *streamWriter) wake() {
	if !w.running {
		w.running = true
		w.start()
	}
}

// What next tells the writer to do.
const (
	writerSend   = iota // write the batch
	writerIdle          // nothing to send: stop (the next queue starts a writer)
	writerFinish        // closing, all sent: finish the stream and stop
	writerFailed        // a write failed: stop
)

// next takes the pending bytes, or says why there are none to send.
func (w *streamWriter) next() (batch []byte, st int) {
	w.mu.Lock()
	defer w.mu.Unlock()
	switch {
	case w.err != nil:
		w.running = false
		return nil, writerFailed
	case len(w.pending) == 0 && w.closing:
		w.running = false
		return nil, writerFinish
	case len(w.pending) == 0:
		if cap(w.spare) > quicKeepBuf {
			w.spare = nil // going idle: do not hold a large buffer
		}
		w.running = false
		return nil, writerIdle
	}
	batch = w.pending
	w.pending, w.spare = w.spare[:0], nil
	w.cond.Broadcast() // room for queue
	return batch, writerSend
}

// sent records a finished write and keeps a small buffer for reuse.
func (w *streamWriter) sent(batch []byte, err error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if cap(batch) <= quicKeepBusy {
		w.spare = batch[:0]
	}
	if err != nil {
		w.err = err
		w.cond.Broadcast()
	}
}

// close has the writer send what is pending and finish the stream (starting one if none runs).
func (w *streamWriter) close() {
	w.mu.Lock()
	w.closing = true
	w.cond.Broadcast()
	w.wake()
	w.mu.Unlock()
}
