package protocol

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"sync"
)

const (
	// reuseLimit is the largest frame read into a reused buffer (its fields copied out); a
	// larger frame gets a buffer of its own that its body aliases, so big buffers are not kept.
	// It holds a webhook of a 64 KiB body with its headers: such a frame read into a buffer of
	// its own, grown from readStep as its bytes came, allocated three times its size.
	reuseLimit = 80 << 10
	// readBufSize is the buffering in front of a Reader's byte stream.
	readBufSize = 32 << 10
	// splitBulk is the body size from which a transport writes a body straight from the frame
	// instead of copying it into its buffer.
	splitBulk = 16 << 10
	// readStep is the most a frame's buffer is allocated ahead of its bytes: it starts at
	// readStep (or the frame's length, when smaller) and doubles as bytes arrive, so a peer
	// that declares a 1 MiB frame and sends 4 bytes of it holds readStep, not 1 MiB.
	readStep = 4 << 10
)

// frameBuffers lend readFrame the buffer a frame is read into, and the WebSocket writer the
// one it encodes into, for the time of one frame: a reader waiting for its next frame (an
// idle tunnel's) holds none, and one that once read a large frame does not keep its buffer.
var frameBuffers = sync.Pool{New: func() any { return new([]byte) }}

// bufReaders lend lazyBufReaders their buffer while bytes wait in it.
var bufReaders = sync.Pool{New: func() any { return bufio.NewReaderSize(nil, readBufSize) }}

// Reader reads length-prefixed frames from a byte stream. Not safe for concurrent use.
type Reader struct {
	r   io.Reader
	max int
	err error // sticky: after a bad length the stream is out of step
}

// NewReader reads frames of at most maxFrame bytes (0 = DefaultMaxFrame) from r.
func NewReader(r io.Reader, maxFrame int) *Reader {
	if maxFrame <= 0 {
		maxFrame = DefaultMaxFrame
	}
	if _, ok := r.(*bufio.Reader); !ok {
		r = &lazyBufReader{src: r}
	}
	return &Reader{r: r, max: maxFrame}
}

// lazyBufReader buffers src, but holds a buffer only while bytes wait in it: a stream waiting
// for its next bytes (an idle tunnel's, or a relay's silent QUIC data streams) holds none.
// Once the buffer is drained, the next read goes straight to src, and a buffer is taken
// again once bytes came.
type lazyBufReader struct {
	src io.Reader
	br  *bufio.Reader
}

func (l *lazyBufReader) Read(p []byte) (int, error) {
	if l.br != nil {
		if l.br.Buffered() > 0 {
			return l.br.Read(p)
		}
		l.br.Reset(nil)
		bufReaders.Put(l.br)
		l.br = nil
	}
	n, err := l.src.Read(p)
	if n > 0 && err == nil {
		l.br = bufReaders.Get().(*bufio.Reader)
		l.br.Reset(l.src)
	}
	return n, err
}

// ReadFrame returns the next known frame, skipping unknown types; ErrFrameTooLarge is returned
// before allocating for an oversized length. io.EOF means the stream ended between frames.
// After an error every later call returns it again.
func (r *Reader) ReadFrame() (Frame, error) {
	for {
		if f, err := r.readOne(); f != nil || err != nil {
			return f, err
		}
	}
}

// readOne reads one frame; (nil, nil) is a frame of unknown type.
func (r *Reader) readOne() (Frame, error) {
	if r.err != nil {
		return nil, r.err
	}
	var f Frame
	f, r.err = readFrame(r.r, r.max)
	return f, r.err
}

// frameBuffered reports whether a whole frame is already buffered, so that readOne will not
// block.
func (r *Reader) frameBuffered() bool {
	br, ok := r.r.(*bufio.Reader)
	if l, lazy := r.r.(*lazyBufReader); lazy {
		br, ok = l.br, l.br != nil
	}
	if !ok || br.Buffered() < 4 {
		return false
	}
	hdr, _ := br.Peek(4)
	return uint64(br.Buffered()) >= 4+uint64(binary.BigEndian.Uint32(hdr))
}

// readFrame reads one length-prefixed frame from r. A small frame is read into a buffer
// borrowed from frameBuffers once its length has come (its fields are copied out); a larger
// one into a buffer of its own. A nil frame with a nil error is an unknown type, skipped.
func readFrame(r io.Reader, maxFrame int) (Frame, error) {
	var hdr [4]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		return nil, err
	}
	n := binary.BigEndian.Uint32(hdr[:])
	if uint64(n) > uint64(maxFrame) {
		return nil, fmt.Errorf("%w: %d bytes, limit %d", ErrFrameTooLarge, n, maxFrame)
	}
	if n == 0 {
		return nil, fmt.Errorf("%w: zero length", ErrMalformed)
	}
	alias := n > reuseLimit
	var b []byte
	var err error
	if alias {
		b, err = readGrowing(r, int(n), nil)
	} else {
		buf := frameBuffers.Get().(*[]byte)
		defer frameBuffers.Put(buf)
		if cap(*buf) < 4<<10 {
			*buf = make([]byte, 0, 4<<10)
		}
		if b, err = readGrowing(r, int(n), *buf); err == nil {
			*buf = b[:0] // reused by the next small frame, grown or not
		}
	}
	if err != nil {
		if errors.Is(err, io.EOF) {
			err = io.ErrUnexpectedEOF
		}
		return nil, fmt.Errorf("read frame body: %w", err)
	}
	return decodeFrame(b, alias)
}

// readGrowing reads exactly n bytes into buf (reused when it has room) or into a buffer that
// starts at readStep and doubles as the bytes arrive, never past n.
func readGrowing(r io.Reader, n int, buf []byte) ([]byte, error) {
	if cap(buf) >= n {
		b := buf[:n]
		_, err := io.ReadFull(r, b)
		return b, err
	}
	b := make([]byte, 0, min(n, max(readStep, cap(buf))))
	for len(b) < n {
		if len(b) == cap(b) {
			next := make([]byte, len(b), min(n, 2*cap(b)))
			copy(next, b)
			b = next
		}
		m, err := r.Read(b[len(b):cap(b)])
		b = b[:len(b)+m]
		if err != nil && len(b) < n {
			return nil, err
		}
	}
	return b, nil
}
