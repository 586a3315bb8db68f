// Package protocol is the wire between a hookrelay relay and its agents: the frame types, one
// codec for them, and the Tunnel interface with its transports (WebSocket, QUIC). It knows
// nothing of endpoints, routes or storage; it only moves typed frames.
//
// Protocol flow (one session):
//
//	agent                                   relay
//	  -- dial /v1/tunnel (subprotocol hookrelay.v1) or QUIC (ALPN hookrelay.v1) -->
//	  Hello{version, agent id, token, endpoints, caps} ->
//	                                        <- Welcome{session, granted endpoints, window, max frame, time}
//	                                           (or Error{unauthorized} and close)
//	                                        <- Webhook{id, …, first body part} [Chunk…]   (≤ window unacked)
//	  Ack{ids…} ->                             (stored and fsynced by the agent)
//	  Nack{id, reason, retry after} ->         (agent cannot store now; relay offers it again later)
//	  Report{id, delivered|dead, status, attempts} ->   (final local outcome)
//	                                        <- Recorded{ids…}   (v2: those reports are durable)
//	  Response{id, status, headers, body} ->   (v2: the target's answer to a Webhook{sync})
//	                                        <- Verdict{id, returned}   (v2: did it reach the sender)
//	  Ping{nonce} -> <- Pong{nonce}, and the other way round
//	                                        <- GoAway{reason, reconnect after}   (relay stopping)
//	                                           or Error{code, reason}, then close
//
// After the handshake a Conn owns each side of the tunnel. It sends a Ping every 5 s (±20%)
// and answers each Ping with a Pong; a side that received no frame at all for 15 s takes the
// peer for gone and closes, so a half-open tunnel is noticed on either transport.
//
// Every frame on the wire is:
//
//	length uint32 big-endian   (bytes that follow: type byte + payload)
//	type   uint8               (FrameType)
//	payload                    (layout per type below)
//
// Payload primitives: u8, u16, u32, u64 big-endian; str = uvarint length + bytes;
// bytes = uvarint length + bytes; time = i64 Unix nanoseconds, 0 for the zero time;
// dur = i64 nanoseconds; list<T> = uvarint count + count×T. Body lengths and offsets (u64) must
// fit an int64. A reader rejects a length over its maximum frame size before allocating, and
// skips frame types it does not know, so new frame types need no version bump; it ignores bytes
// after the fields it knows, so a field may be appended to a frame the same way.
//
// Over WebSocket, one binary message carries exactly one frame, length prefix included. Over
// QUIC (TLS 1.3, ALPN Subprotocol), the dialer opens every stream, bidirectional: first the
// control stream, starting with u8 0 + u8 N (data streams, 1..16), then N data streams, each
// starting with u8 1 + u8 index (0..N-1). Frames follow each other on streams. Webhook and Chunk
// frames go on data stream FNV-1a(id) mod N, so a webhook's chunks follow it in order; every
// other frame goes on the control stream. Order holds within a stream only.
//
// Version changelog:
//
//	1 — first version. Later, still 1: both sides send Pings and drop a peer silent for 15 s
//	    (Conn). Peers of the first release answer Ping with Pong and never sent Pings, so
//	    they stay compatible. Credit (type 8) was dropped: no agent sent it, and a reader
//	    now skips it as an unknown type.
//	2 — outcome reports are acknowledged: the relay answers Report frames with Recorded{ids}
//	    once it has the outcomes durably recorded (or already had them), and the agent resends
//	    a report until then; Welcome carries the session's version (appended u16; absent = 1).
//	    In either version an agent answers a webhook it already finished with its Report.
//	    Later, still 2 (sync responses): Hello appends the endpoints whose route exposes its
//	    target's answers (absent: none); Webhook flag bit 1 asks for the target's answer to
//	    the first attempt in a Response frame; the relay answers each Response with a Verdict
//	    (did the answer reach the sender: then the agent stops retrying that webhook); Report
//	    appends the target's last response headers and first MaxReportBody bytes of its body
//	    (sent for exposing routes only). A version-1 agent exposes nothing: sync falls back.
//	    Later, still 2 (consumer groups): Hello appends the agent's group (absent: "default");
//	    a relay refuses (Error, CodeUnauthorized) a group not declared on every endpoint granted.
package protocol

import (
	"errors"
	"io"
	"time"
)

// Version is the protocol version this package speaks; MinVersion the oldest it still serves.
// A relay takes a Hello of any version from MinVersion to Version and answers in the agent's;
// an agent whose Hello a relay of an older version refuses (Error{version}) says Hello again in
// MinVersion. A session's version decides which frames may be sent (see the changelog).
const (
	Version    = 2
	MinVersion = 1
)

// Subprotocol names the protocol version on the wire: the WebSocket subprotocol and QUIC ALPN.
const Subprotocol = "hookrelay.v1"

const (
	// DefaultMaxFrame bounds one encoded frame (length prefix excluded) unless configured.
	DefaultMaxFrame = 1 << 20
	// DefaultChunk is how many body bytes a Webhook or Chunk frame carries at most.
	DefaultChunk = 256 << 10
	// MaxHelloList bounds each list of a Hello (endpoints, capabilities): a longer one is
	// malformed. A list of n strings costs 16n bytes decoded however short its strings, and a
	// Hello comes before any authentication.
	MaxHelloList = 1024
	// MaxIDList bounds the ids of one Ack or Recorded frame: senders put at most a few
	// thousand in one (Conn's MaxAckIDs, the relay's recorder batch), and a frame of a
	// million empty ids would decode to 16 MB.
	MaxIDList = 8192
	// MaxResponseBody bounds the target's body a Response carries (with MaxResponseHeaders,
	// one Response fits DefaultMaxFrame); a longer answer is not returned (Status 0).
	MaxResponseBody = DefaultMaxFrame - 64<<10
	// MaxResponseHeaders bounds the bytes of a Response's or Report's headers (names and
	// values); headers past it are left out.
	MaxResponseHeaders = 32 << 10
	// MaxResponseHeaderList bounds the headers of one Response or Report: a frame of empty
	// names would otherwise decode to 16 times its size. Senders stay under it by
	// MaxResponseHeaders (counting 4 bytes a header).
	MaxResponseHeaderList = MaxResponseHeaders / 4
	// MaxReportBody bounds the response body a Report carries.
	MaxReportBody = 4 << 10
	// MaxSyncWait is the longest a relay waits for a sync answer: an agent holds a sync
	// webhook's retry at most this long for its Verdict.
	MaxSyncWait = 60 * time.Second
)

// FrameType identifies a frame on the wire. Values are never reused.
type FrameType uint8

const (
	// FrameHello: u16 version, str agent id, str token, list<str> endpoints, list<str> caps,
	// list<str> expose (appended: endpoints whose route exposes its target's answers), str group
	// (appended: the agent's consumer group; absent or "" = "default").
	FrameHello FrameType = 1
	// FrameWelcome: str session id, list<str> endpoints, u32 window, u32 max frame, time server time.
	FrameWelcome FrameType = 2
	// FrameWebhook: str id, str endpoint, time received, u8 flags (bit0 replay, bit1 sync), str method,
	// str path, str query, list<(str name, str value)> headers, u64 body length, bytes first part.
	FrameWebhook FrameType = 3
	// FrameChunk: str id, u64 offset, bytes data. Follows its Webhook on the same stream.
	FrameChunk FrameType = 4
	// FrameAck: list<str> ids.
	FrameAck FrameType = 5
	// FrameNack: str id, str reason, dur retry after.
	FrameNack FrameType = 6
	// FrameReport: str id, u8 outcome, u16 status, u32 attempts, str error, time at,
	// list<(str name, str value)> response headers, bytes response body (both appended).
	FrameReport FrameType = 7
	// Type 8 is reserved: it was Credit (u32 window), which no agent ever sent. A reader
	// skips it as unknown.
	// FramePing: u64 nonce.
	FramePing FrameType = 9
	// FramePong: u64 nonce.
	FramePong FrameType = 10
	// FrameGoAway: str reason, dur reconnect after.
	FrameGoAway FrameType = 11
	// FrameError: u16 code, str reason.
	FrameError FrameType = 12
	// FrameRecorded (v2, relay → agent): list<str> ids whose Report the relay has durably
	// recorded (or had already: an id it finished or does not know is confirmed too, so that
	// the agent stops resending it).
	FrameRecorded FrameType = 13
	// FrameResponse (v2, agent → relay): str id, u16 status, list<(str name, str value)>
	// headers, bytes body. The target's answer to the first attempt of a sync webhook;
	// status 0: no answer that can be returned (none, or too large).
	FrameResponse FrameType = 14
	// FrameVerdict (v2, relay → agent): str id, u8 flags (bit0 returned). Whether the
	// Response of id reached the sender: if so, the sender owns the retries.
	FrameVerdict FrameType = 15
)

// Frame is one decoded frame. The concrete types are the pointer types below.
type Frame interface {
	Type() FrameType
}

// Header is one header line; a list of them keeps order and repeated names.
type Header struct {
	Name, Value string
}

// Hello is the agent's first frame.
type Hello struct {
	Version      uint16
	AgentID      string
	Token        string
	Endpoints    []string
	Capabilities []string
	Expose       []string // endpoints whose route exposes its target's answers (appended in 2)
	Group        string   // the agent's consumer group (appended later in 2; "" = "default")
}

// Welcome is the relay's answer to a good Hello.
type Welcome struct {
	SessionID  string
	Endpoints  []string // granted: the requested ones the token allows
	Window     uint32   // webhooks the relay may have unacked on this session at once
	MaxFrame   uint32   // the largest frame either side may send
	ServerTime time.Time
	Version    uint16 // the session's protocol version (appended in 2; a relay of 1 sends none: 0)
}

// Webhook carries one webhook and the first part of its body. When len(Body) < BodyLen, the
// rest follows in Chunk frames (in order, on the same stream).
type Webhook struct {
	ID         string
	Endpoint   string
	ReceivedAt time.Time
	Replay     bool
	Sync       bool // the relay waits for the target's answer to the first attempt (Response)
	Method     string
	Path       string // suffix after /h/{endpoint}: "" or starting with "/"
	Query      string // raw query, without '?'
	Headers    []Header
	BodyLen    int64
	Body       []byte

	// OrderKey is not sent. When set, webhooks with the same key keep their order on a tunnel
	// with several data streams (QUIC sends them all on the stream the key hashes to, and
	// their chunks too); else a webhook's stream follows its id.
	OrderKey string
	// BodyFrom is not sent. When set, SendWebhook reads the BodyLen bytes of the body from it
	// a chunk at a time as it sends them (Body is ignored), so a large body is never whole in
	// memory; it closes BodyFrom when it is an io.Closer.
	BodyFrom io.Reader
}

// Chunk continues the body of the Webhook with the same ID.
type Chunk struct {
	ID     string
	Offset int64
	Data   []byte

	OrderKey string // not sent: its Webhook's (SendWebhook sets it)
}

// Ack tells the relay the agent holds these webhooks durably.
type Ack struct {
	IDs []string
}

// Recorded tells the agent the relay has the outcome reports of IDs durably recorded.
type Recorded struct {
	IDs []string
}

// Nack tells the relay the agent cannot store a webhook now; offer it again after RetryAfter.
type Nack struct {
	ID         string
	Reason     string
	RetryAfter time.Duration
}

// Outcome is the final result of a local delivery.
type Outcome uint8

const (
	OutcomeDelivered Outcome = 1
	OutcomeDead      Outcome = 2
)

// Report tells the relay the final outcome of one webhook at the agent.
type Report struct {
	ID       string
	Outcome  Outcome
	Status   int // the target's last HTTP status, 0 if none
	Attempts int
	Error    string
	At       time.Time
	// The target's last answer, for routes that expose it (appended in 2): its headers
	// and the first MaxReportBody bytes of its body.
	Headers []Header
	Body    []byte
}

// Response is the target's answer to the first attempt of a sync webhook.
type Response struct {
	ID      string
	Status  int // 0: no answer to return (the relay falls back)
	Headers []Header
	Body    []byte
}

// Verdict tells the agent whether the Response of ID reached the sender (Returned): then the
// sender owns the retries, and the agent stops retrying that webhook.
type Verdict struct {
	ID       string
	Returned bool
}

// Ping asks for a Pong with the same nonce.
type Ping struct{ Nonce uint64 }

// Pong answers a Ping.
type Pong struct{ Nonce uint64 }

// GoAway says the relay is closing this session; reconnect after the given time.
type GoAway struct {
	Reason         string
	ReconnectAfter time.Duration
}

// ErrorCode classifies an Error frame.
type ErrorCode uint16

const (
	CodeUnauthorized ErrorCode = 1 // bad token, or no endpoint granted
	CodeVersion      ErrorCode = 2 // unsupported protocol version
	CodeProtocol     ErrorCode = 3 // malformed or unexpected frame
	CodeReplaced     ErrorCode = 4 // the same agent id connected again
	CodeInternal     ErrorCode = 5
	CodeLimit        ErrorCode = 6 // a limit was hit (frame size, agents per token…)
)

// Error is sent before closing a session for a reason the peer should show.
type Error struct {
	Code   ErrorCode
	Reason string
}

func (*Hello) Type() FrameType    { return FrameHello }
func (*Welcome) Type() FrameType  { return FrameWelcome }
func (*Webhook) Type() FrameType  { return FrameWebhook }
func (*Chunk) Type() FrameType    { return FrameChunk }
func (*Ack) Type() FrameType      { return FrameAck }
func (*Nack) Type() FrameType     { return FrameNack }
func (*Report) Type() FrameType   { return FrameReport }
func (*Ping) Type() FrameType     { return FramePing }
func (*Pong) Type() FrameType     { return FramePong }
func (*GoAway) Type() FrameType   { return FrameGoAway }
func (*Error) Type() FrameType    { return FrameError }
func (*Recorded) Type() FrameType { return FrameRecorded }
func (*Response) Type() FrameType { return FrameResponse }
func (*Verdict) Type() FrameType  { return FrameVerdict }

// Sentinel errors of the codec and transports.
var (
	ErrFrameTooLarge = errors.New("protocol: frame too large")
	ErrMalformed     = errors.New("protocol: malformed frame")
	ErrClosed        = errors.New("protocol: tunnel closed")
	// ErrSubprotocol: the peer does not speak Subprotocol (WebSocket subprotocol, QUIC ALPN).
	ErrSubprotocol = errors.New("protocol: peer does not speak " + Subprotocol)
	// ErrFingerprintMismatch: a pinned peer certificate has another fingerprint.
	ErrFingerprintMismatch = errors.New("protocol: certificate fingerprint mismatch")
)
