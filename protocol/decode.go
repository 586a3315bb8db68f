package protocol

import (
	"encoding/binary"
	"fmt"
	"math"
	"time"
)

// DecodeFrame decodes one frame from b (type byte + payload, no length prefix). Unknown types
// return (nil, nil): the caller skips them. Malformed input returns an error wrapping
// ErrMalformed. The frame does not alias b; bytes after the fields this version knows are
// ignored, so a later version may append fields to a frame.
func DecodeFrame(b []byte) (Frame, error) {
	return decodeFrame(b, false)
}

// decodeFrame decodes b; with alias set, Body and Data point into b instead of being copied,
// for callers that hand over a buffer they will not reuse.
func decodeFrame(b []byte, alias bool) (Frame, error) {
	if len(b) == 0 {
		return nil, fmt.Errorf("%w: empty frame", ErrMalformed)
	}
	d := decoder{b: b, off: 1, alias: alias}
	var f Frame
	switch FrameType(b[0]) {
	case FrameHello:
		d.useArena()
		h := &Hello{Version: d.u16(), AgentID: d.str(), Token: d.str(),
			Endpoints: d.strsMax(MaxHelloList, "hello endpoints"), Capabilities: d.strsMax(MaxHelloList, "hello capabilities")}
		if d.more() { // appended in version 2
			h.Expose = d.strsMax(MaxHelloList, "hello expose")
		}
		if d.more() { // appended later in version 2 (consumer groups)
			h.Group = d.str()
		}
		f = h
	case FrameWelcome:
		d.useArena()
		w := &Welcome{SessionID: d.str(), Endpoints: d.strs(), Window: d.u32(), MaxFrame: d.u32(),
			ServerTime: d.time()}
		if d.more() { // appended in version 2
			w.Version = d.u16()
		}
		f = w
	case FrameWebhook:
		f = d.webhook()
	case FrameChunk:
		f = &Chunk{ID: d.str(), Offset: d.i64("chunk offset"), Data: d.bytes()}
	case FrameAck:
		d.useArena()
		f = &Ack{IDs: d.strsMax(MaxIDList, "ack ids")}
	case FrameRecorded:
		d.useArena()
		f = &Recorded{IDs: d.strsMax(MaxIDList, "recorded ids")}
	case FrameNack:
		d.useArena()
		f = &Nack{ID: d.str(), Reason: d.str(), RetryAfter: d.dur()}
	case FrameReport:
		d.useArena()
		r := &Report{ID: d.str(), Outcome: Outcome(d.u8()), Status: int(d.u16()),
			Attempts: int(d.u32()), Error: d.str(), At: d.time()}
		if d.more() { // appended in version 2
			r.Headers, r.Body = d.headersMax(MaxResponseHeaderList), d.bytes()
		}
		f = r
	case FrameResponse:
		f = &Response{ID: d.str(), Status: int(d.u16()), Headers: d.headersMax(MaxResponseHeaderList), Body: d.bytes()}
	case FrameVerdict:
		f = &Verdict{ID: d.str(), Returned: d.u8()&1 != 0}
	case FramePing:
		f = &Ping{Nonce: d.u64()}
	case FramePong:
		f = &Pong{Nonce: d.u64()}
	case FrameGoAway:
		d.useArena()
		f = &GoAway{Reason: d.str(), ReconnectAfter: d.dur()}
	case FrameError:
		d.useArena()
		f = &Error{Code: ErrorCode(d.u16()), Reason: d.str()}
	default:
		return nil, nil
	}
	if d.err != nil {
		return nil, fmt.Errorf("decode frame type %d: %w", b[0], d.err)
	}
	return f, nil
}

func (d *decoder) webhook() *Webhook {
	d.webhookArena()
	w := &Webhook{ID: d.str(), Endpoint: d.str(), ReceivedAt: d.time()}
	flags := d.u8()
	w.Replay = flags&flagReplay != 0
	w.Sync = flags&flagSync != 0
	w.Method, w.Path, w.Query = d.str(), d.str(), d.str()
	w.Headers = d.headers()
	w.BodyLen = d.i64("body length")
	w.Body = d.bytes()
	if d.err == nil && int64(len(w.Body)) > w.BodyLen {
		d.fail("body part longer than body length")
	}
	return w
}

// headers reads a list of (name, value); nil when empty.
func (d *decoder) headers() []Header { return d.headersMax(math.MaxInt) }

// headersMax reads a list of at most limit headers.
func (d *decoder) headersMax(limit int) []Header {
	n := d.count(2)
	if n > limit {
		d.fail(fmt.Sprintf("%d headers, limit %d", n, limit))
		return nil
	}
	if n == 0 {
		return nil
	}
	hs := make([]Header, n)
	for i := range hs {
		hs[i] = Header{Name: d.str(), Value: d.str()}
	}
	if d.err != nil {
		return nil
	}
	return hs
}

// decoder reads payload primitives from b. The first failure sticks in err and every later
// read returns a zero value, so decoding code reads straight through and checks err once.
// more reports whether bytes are left after the fields read so far (a field a later version
// appended).
func (d *decoder) more() bool { return d.err == nil && d.off < len(d.b) }

type decoder struct {
	b     []byte
	off   int
	err   error
	alias bool
	// arena holds a copy of b[arenaOff:arenaOff+len(arena)]; strings inside that range are
	// sliced from it, so one allocation serves all strings of a frame.
	arena    string
	arenaOff int
}

func (d *decoder) fail(what string) {
	if d.err == nil {
		d.err = fmt.Errorf("%w: %s", ErrMalformed, what)
	}
	d.off = len(d.b)
}

// useArena copies the rest of the payload once; for frames without a bulk byte field.
func (d *decoder) useArena() {
	d.arena, d.arenaOff = string(d.b[d.off:]), d.off
}

// webhookArena copies the string fields of a Webhook (everything before its body) once,
// found by a first pass that only skips over them.
func (d *decoder) webhookArena() {
	s := decoder{b: d.b, off: d.off}
	s.skipStr()
	s.skipStr()
	s.u64()
	s.u8()
	s.skipStr()
	s.skipStr()
	s.skipStr()
	for n := s.count(2); n > 0; n-- {
		s.skipStr()
		s.skipStr()
	}
	if s.err == nil {
		d.arena, d.arenaOff = string(d.b[d.off:s.off]), d.off
	}
}

func (d *decoder) take(n int, what string) []byte {
	if d.err != nil {
		return nil
	}
	if n < 0 || n > len(d.b)-d.off {
		d.fail("truncated " + what)
		return nil
	}
	p := d.b[d.off : d.off+n]
	d.off += n
	return p
}

func (d *decoder) u8() uint8 {
	if p := d.take(1, "u8"); p != nil {
		return p[0]
	}
	return 0
}

func (d *decoder) u16() uint16 {
	if p := d.take(2, "u16"); p != nil {
		return binary.BigEndian.Uint16(p)
	}
	return 0
}

func (d *decoder) u32() uint32 {
	if p := d.take(4, "u32"); p != nil {
		return binary.BigEndian.Uint32(p)
	}
	return 0
}

func (d *decoder) u64() uint64 {
	if p := d.take(8, "u64"); p != nil {
		return binary.BigEndian.Uint64(p)
	}
	return 0
}

// i64 reads a u64 that must fit a non-negative int64 (lengths and offsets).
func (d *decoder) i64(what string) int64 {
	v := d.u64()
	if v > math.MaxInt64 {
		d.fail(what + " out of range")
		return 0
	}
	return int64(v)
}

func (d *decoder) dur() time.Duration { return time.Duration(int64(d.u64())) }

// time reads Unix nanoseconds; 0 is the zero time.
func (d *decoder) time() time.Time {
	n := int64(d.u64())
	if n == 0 {
		return time.Time{}
	}
	return time.Unix(0, n).UTC()
}

func (d *decoder) uvarint(what string) uint64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Uvarint(d.b[d.off:])
	if n <= 0 {
		d.fail("bad varint in " + what)
		return 0
	}
	d.off += n
	return v
}

// length reads a uvarint length that must fit in the rest of the payload.
func (d *decoder) length(what string) int {
	v := d.uvarint(what)
	if v > uint64(len(d.b)-d.off) {
		d.fail(what + " length past end")
		return 0
	}
	return int(v)
}

// count reads a list count; each element takes at least min bytes, which bounds the count by
// the bytes left before anything is allocated for it.
func (d *decoder) count(min int) int {
	v := d.uvarint("list")
	if v > uint64((len(d.b)-d.off)/min) {
		d.fail("list count past end")
		return 0
	}
	return int(v)
}

func (d *decoder) skipStr() {
	d.take(d.length("string"), "string")
}

func (d *decoder) str() string {
	n := d.length("string")
	if d.err != nil || n == 0 {
		return ""
	}
	start := d.off
	d.off += n
	if a := start - d.arenaOff; d.arena != "" && a >= 0 && a+n <= len(d.arena) {
		return d.arena[a : a+n]
	}
	return string(d.b[start:d.off])
}

func (d *decoder) strs() []string { return d.strsMax(math.MaxInt, "") }

// strsMax reads a list of strings of at most limit entries (what names the list).
func (d *decoder) strsMax(limit int, what string) []string {
	n := d.count(1)
	if n > limit {
		d.fail(fmt.Sprintf("%d %s, limit %d", n, what, limit))
		return nil
	}
	if n == 0 {
		return nil
	}
	ss := make([]string, n)
	for i := range ss {
		ss[i] = d.str()
	}
	if d.err != nil {
		return nil
	}
	return ss
}

func (d *decoder) bytes() []byte {
	n := d.length("bytes")
	p := d.take(n, "bytes")
	if len(p) == 0 {
		return nil
	}
	if d.alias {
		return p[:n:n]
	}
	return append([]byte(nil), p...)
}
