package protocol

import (
	"encoding/binary"
	"time"
)

// AppendFrame appends f's encoding (length prefix, type, payload) to dst. A nil f, or a
// Frame type this package does not define, appends nothing.
func AppendFrame(dst []byte, f Frame) []byte {
	dst, tail := appendFrame(dst, f, 0)
	return append(dst, tail...)
}

// appendFrame appends f's encoding to dst, except that a Webhook body or Chunk data longer
// than split (when split > 0) is left out and returned as tail, to be written right after
// dst: the length prefix already counts it. This spares copying a large body.
func appendFrame(dst []byte, f Frame, split int) (head, tail []byte) {
	if f == nil {
		return dst, nil
	}
	start := len(dst)
	dst = append(dst, 0, 0, 0, 0, byte(f.Type()))
	switch f := f.(type) {
	case *Hello:
		dst = binary.BigEndian.AppendUint16(dst, f.Version)
		dst = appendStr(dst, f.AgentID)
		dst = appendStr(dst, f.Token)
		dst = appendStrs(dst, f.Endpoints)
		dst = appendStrs(dst, f.Capabilities)
		dst = appendStrs(dst, f.Expose)
		dst = appendStr(dst, f.Group)
	case *Welcome:
		dst = appendStr(dst, f.SessionID)
		dst = appendStrs(dst, f.Endpoints)
		dst = binary.BigEndian.AppendUint32(dst, f.Window)
		dst = binary.BigEndian.AppendUint32(dst, f.MaxFrame)
		dst = appendTime(dst, f.ServerTime)
		dst = binary.BigEndian.AppendUint16(dst, f.Version)
	case *Webhook:
		dst = appendStr(dst, f.ID)
		dst = appendStr(dst, f.Endpoint)
		dst = appendTime(dst, f.ReceivedAt)
		var flags byte
		if f.Replay {
			flags |= flagReplay
		}
		if f.Sync {
			flags |= flagSync
		}
		dst = append(dst, flags)
		dst = appendStr(dst, f.Method)
		dst = appendStr(dst, f.Path)
		dst = appendStr(dst, f.Query)
		dst = appendHeaders(dst, f.Headers)
		dst = binary.BigEndian.AppendUint64(dst, uint64(f.BodyLen))
		dst, tail = appendBulk(dst, f.Body, split)
	case *Chunk:
		dst = appendStr(dst, f.ID)
		dst = binary.BigEndian.AppendUint64(dst, uint64(f.Offset))
		dst, tail = appendBulk(dst, f.Data, split)
	case *Ack:
		dst = appendStrs(dst, f.IDs)
	case *Recorded:
		dst = appendStrs(dst, f.IDs)
	case *Nack:
		dst = appendStr(dst, f.ID)
		dst = appendStr(dst, f.Reason)
		dst = binary.BigEndian.AppendUint64(dst, uint64(f.RetryAfter))
	case *Report:
		dst = appendStr(dst, f.ID)
		dst = append(dst, byte(f.Outcome))
		dst = binary.BigEndian.AppendUint16(dst, uint16(f.Status))
		dst = binary.BigEndian.AppendUint32(dst, uint32(f.Attempts))
		dst = appendStr(dst, f.Error)
		dst = appendTime(dst, f.At)
		dst = appendHeaders(dst, f.Headers)
		dst = appendBytes(dst, f.Body)
	case *Response:
		dst = appendStr(dst, f.ID)
		dst = binary.BigEndian.AppendUint16(dst, uint16(f.Status))
		dst = appendHeaders(dst, f.Headers)
		dst = appendBytes(dst, f.Body)
	case *Verdict:
		dst = appendStr(dst, f.ID)
		var flags byte
		if f.Returned {
			flags |= 1
		}
		dst = append(dst, flags)
	case *Ping:
		dst = binary.BigEndian.AppendUint64(dst, f.Nonce)
	case *Pong:
		dst = binary.BigEndian.AppendUint64(dst, f.Nonce)
	case *GoAway:
		dst = appendStr(dst, f.Reason)
		dst = binary.BigEndian.AppendUint64(dst, uint64(f.ReconnectAfter))
	case *Error:
		dst = binary.BigEndian.AppendUint16(dst, uint16(f.Code))
		dst = appendStr(dst, f.Reason)
	default:
		return dst[:start], nil
	}
	binary.BigEndian.PutUint32(dst[start:], uint32(len(dst)-start-4+len(tail)))
	return dst, tail
}

// appendBulk appends b as bytes, or only its length when b is longer than split > 0.
func appendBulk(dst, b []byte, split int) (head, tail []byte) {
	if split > 0 && len(b) > split {
		return binary.AppendUvarint(dst, uint64(len(b))), b
	}
	return appendBytes(dst, b), nil
}

// flagReplay and flagSync are bits 0 and 1 of a Webhook's flags byte.
const (
	flagReplay = 1
	flagSync   = 2
)

func appendHeaders(dst []byte, hs []Header) []byte {
	dst = binary.AppendUvarint(dst, uint64(len(hs)))
	for _, h := range hs {
		dst = appendStr(dst, h.Name)
		dst = appendStr(dst, h.Value)
	}
	return dst
}

func appendStr(dst []byte, s string) []byte {
	dst = binary.AppendUvarint(dst, uint64(len(s)))
	return append(dst, s...)
}

func appendBytes(dst, b []byte) []byte {
	dst = binary.AppendUvarint(dst, uint64(len(b)))
	return append(dst, b...)
}

func appendStrs(dst []byte, ss []string) []byte {
	dst = binary.AppendUvarint(dst, uint64(len(ss)))
	for _, s := range ss {
		dst = appendStr(dst, s)
	}
	return dst
}

// appendTime writes Unix nanoseconds; the zero time is written as 0 so it survives a round trip.
func appendTime(dst []byte, t time.Time) []byte {
	var n int64
	if !t.IsZero() {
		n = t.UnixNano()
	}
	return binary.BigEndian.AppendUint64(dst, uint64(n))
}
