package persist

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"time"
)

const (
	formatVersion = "3"       // 2 added the ready keys, 3 body files; older stores are migrated at Open
	metaVersion   = 1         // first byte of every metadata value
	segSize       = 512 << 10 // body segment size: well under Badger's value-log file size
	maxIDLen      = 128
)

var (
	formatKey  = []byte("\x00format")
	flushKey   = []byte("\x00flush") // written and dropped at once to flush memtables (gc.go)
	metaPrefix = []byte("m")
	bodyPrefix = []byte("b")
	readyTag   = byte('r')
	ackedTag   = byte('a')
	errCorrupt = errors.New("persist: corrupt metadata")
)

func metaKey(id string) []byte {
	k := make([]byte, 0, 1+len(id))
	return append(append(k, 'm'), id...)
}

func bodyKey(id string, seg int) []byte {
	k := make([]byte, 0, 2+len(id)+4)
	k = append(append(append(k, 'b'), id...), '/')
	return binary.BigEndian.AppendUint32(k, uint32(seg))
}

// bodyKeyID returns the id inside a body key, or "" when k is not one.
func bodyKeyID(k []byte) string {
	if len(k) < 7 || k[0] != 'b' || k[len(k)-5] != '/' {
		return ""
	}
	return string(k[1 : len(k)-5])
}

// statePrefix is the prefix of queue's state keys of one tag (readyTag, ackedTag): the tag,
// uvarint len(queue), queue.
func statePrefix(tag byte, queue string) []byte {
	k := make([]byte, 0, 1+binary.MaxVarintLen64+len(queue)+maxIDLen)
	k = binary.AppendUvarint(append(k, tag), uint64(len(queue)))
	return append(k, queue...)
}

func readyPrefix(queue string) []byte { return statePrefix(readyTag, queue) }

// readyKey is the key that says record id of queue is Ready on disk, so that the ready
// records not held in memory are found in id order (cold.go).
func readyKey(queue, id string) []byte {
	return append(readyPrefix(queue), id...)
}

// stateKey is the state key of a record of queue in state st ("r" Ready, "a" Acked), nil for
// the states that have none.
func stateKey(st State, queue, id string) []byte {
	switch st {
	case StateReady:
		return readyKey(queue, id)
	case StateAcked:
		return append(statePrefix(ackedTag, queue), id...)
	}
	return nil
}

// readyVal is a state key's value: what Expire, List and Stats ask of a record not in memory.
//
//	varint next, varint received (unix ns, 0 = zero time)
type readyVal struct {
	next, received time.Time
}

func encodeReady(next, received time.Time) []byte {
	return appendTime(appendTime(make([]byte, 0, 20), next), received)
}

func decodeReady(v []byte) (readyVal, error) {
	d := decoder{b: v}
	rv := readyVal{next: d.time(), received: d.time()}
	return rv, d.err
}

// segments is how many body keys a body of n bytes takes.
func segments(n int) int { return (n + segSize - 1) / segSize }

// validID reports whether id may be stored: 1..128 URL-unreserved characters, so it needs no
// escaping in URLs or headers and never contains the "/" that ends it in a body key.
func validID(id string) bool {
	if id == "" || len(id) > maxIDLen {
		return false
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		switch {
		case c >= '0' && c <= '9', c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z':
		case c == '-', c == '_', c == '.', c == '~':
		default:
			return false
		}
	}
	return true
}

// recordSize is what a record counts against its queue's quota.
func recordSize(r *Record) int64 {
	n := int64(bodyLenOf(r))
	for _, h := range r.Headers {
		n += int64(len(h.Name) + len(h.Value))
	}
	return n
}

// summary is what the in-memory index keeps of a record; the codec puts these fields first so
// Open can decode just them.
type summary struct {
	state    State
	next     time.Time
	received time.Time
	finished time.Time
	size     int64
	reported bool
	queue    string
}

const (
	flagReplay   = 1
	flagReported = 2
)

// encodeMeta encodes everything of r except its body; bodyLen says how long the body is.
//
//	byte metaVersion, uvarint state, uvarint attempts, varint next, received, finished
//	(unix ns, 0 = zero time), byte flags, varint size, uvarint bodyLen, string queue,
//	method, path, query, uvarint n + n×(string name, value), string deadReason,
//	uvarint n + n×(varint at, varint status, varint millis, string error), string holder,
//	string parts (only when the body was staged under a name of its own, or a response
//	follows: parts.go), then, only when a delivery recorded a response: uvarint n (= the
//	deliveries) + n×(uvarint m + m×(string name, value), string response body)
//
// Fields are only ever appended (holder was): a value that ends before one decodes it as
// empty, so records written before it need no migration.
// A string is a uvarint length and its bytes.
func encodeMeta(r *Record, bodyLen int) []byte {
	n := 64 + len(r.Queue) + len(r.Method) + len(r.Path) + len(r.Query) + len(r.DeadReason) + len(r.Holder)
	for _, h := range r.Headers {
		n += 10 + len(h.Name) + len(h.Value)
	}
	responses := false
	for _, d := range r.Deliveries {
		n += 40 + len(d.Error) + len(d.ResponseBody)
		for _, h := range d.ResponseHeaders {
			n += 10 + len(h.Name) + len(h.Value)
		}
		responses = responses || d.ResponseHeaders != nil || d.ResponseBody != nil
	}
	b := make([]byte, 0, n)
	b = append(b, metaVersion)
	b = binary.AppendUvarint(b, uint64(r.State))
	b = binary.AppendUvarint(b, uint64(max(r.Attempts, 0)))
	b = appendTime(b, r.NextAttempt)
	b = appendTime(b, r.ReceivedAt)
	b = appendTime(b, r.FinishedAt)
	var flags byte
	if r.Replay {
		flags |= flagReplay
	}
	if r.Reported {
		flags |= flagReported
	}
	b = append(b, flags)
	b = binary.AppendVarint(b, r.Size)
	b = binary.AppendUvarint(b, uint64(bodyLen))
	b = appendString(b, r.Queue)
	b = appendString(b, r.Method)
	b = appendString(b, r.Path)
	b = appendString(b, r.Query)
	b = binary.AppendUvarint(b, uint64(len(r.Headers)))
	for _, h := range r.Headers {
		b = appendString(b, h.Name)
		b = appendString(b, h.Value)
	}
	b = appendString(b, r.DeadReason)
	b = binary.AppendUvarint(b, uint64(len(r.Deliveries)))
	for _, d := range r.Deliveries {
		b = appendTime(b, d.At)
		b = binary.AppendVarint(b, int64(d.Status))
		b = binary.AppendVarint(b, d.Millis)
		b = appendString(b, d.Error)
	}
	b = appendString(b, r.Holder)
	if r.parts != "" || responses {
		b = appendString(b, r.parts)
	}
	if responses {
		b = binary.AppendUvarint(b, uint64(len(r.Deliveries)))
		for _, d := range r.Deliveries {
			b = binary.AppendUvarint(b, uint64(len(d.ResponseHeaders)))
			for _, h := range d.ResponseHeaders {
				b = appendString(b, h.Name)
				b = appendString(b, h.Value)
			}
			b = append(binary.AppendUvarint(b, uint64(len(d.ResponseBody))), d.ResponseBody...)
		}
	}
	return b
}

// decodeMeta decodes a metadata value into a Record without body; it also returns the body length.
func decodeMeta(id string, v []byte) (*Record, int, error) {
	d := decoder{b: v, all: string(v)}
	r := &Record{ID: id}
	sum, bodyLen := d.summary()
	r.BodyLen = int64(bodyLen)
	r.State, r.NextAttempt, r.ReceivedAt, r.FinishedAt = sum.state, sum.next, sum.received, sum.finished
	r.Size, r.Reported, r.Queue = sum.size, sum.reported, sum.queue
	r.Attempts = d.attempts
	r.Replay = d.flags&flagReplay != 0
	r.Method = d.str()
	r.Path = d.str()
	r.Query = d.str()
	if n := d.count(); n > 0 {
		r.Headers = make([]Header, n)
		for i := range r.Headers {
			r.Headers[i] = Header{Name: d.str(), Value: d.str()}
		}
	}
	r.DeadReason = d.str()
	if n := d.count(); n > 0 {
		r.Deliveries = make([]Delivery, n)
		for i := range r.Deliveries {
			r.Deliveries[i] = Delivery{At: d.time(), Status: int(d.varint()), Millis: d.varint(), Error: d.str()}
		}
	}
	if d.err == nil && len(d.b) > 0 {
		r.Holder = d.str()
	}
	if d.err == nil && len(d.b) > 0 {
		r.parts = d.str()
	}
	if d.err == nil && len(d.b) > 0 {
		d.responses(r.Deliveries)
	}
	if d.err != nil {
		return nil, 0, fmt.Errorf("record %s: %w", id, d.err)
	}
	return r, bodyLen, nil
}

// responses decodes the recorded responses of ds, one entry per delivery.
func (d *decoder) responses(ds []Delivery) {
	if d.count() != len(ds) {
		d.fail()
		return
	}
	for i := range ds {
		if m := d.count(); m > 0 {
			ds[i].ResponseHeaders = make([]Header, m)
			for j := range ds[i].ResponseHeaders {
				ds[i].ResponseHeaders[j] = Header{Name: d.str(), Value: d.str()}
			}
		}
		if body := d.str(); body != "" {
			ds[i].ResponseBody = []byte(body)
		}
	}
}

// decodeSummary decodes only the fields the index keeps.
func decodeSummary(v []byte) (summary, int, error) {
	d := decoder{b: v}
	s, bodyLen := d.summary()
	return s, bodyLen, d.err
}

func appendTime(b []byte, t time.Time) []byte {
	if t.IsZero() {
		return binary.AppendVarint(b, 0)
	}
	return binary.AppendVarint(b, t.UnixNano())
}

func appendString(b []byte, s string) []byte {
	return append(binary.AppendUvarint(b, uint64(len(s))), s...)
}

// decoder reads a metadata value; the first error sticks and later reads return zero values.
type decoder struct {
	b        []byte
	err      error
	attempts int
	flags    byte
	// all, when set, is the whole buffer b started as, copied into one string: str then
	// returns substrings of it instead of allocating each (a record's method, path, query,
	// headers and errors were a dozen allocations per read).
	all string
}

func (d *decoder) summary() (summary, int) {
	var s summary
	if len(d.b) == 0 || d.b[0] != metaVersion {
		d.fail()
		return s, 0
	}
	d.b = d.b[1:]
	st := d.uvarint()
	if st < uint64(StateReady) || st > uint64(StateDead) || st == uint64(StateLeased) {
		d.fail()
	}
	s.state = State(st)
	d.attempts = int(min(d.uvarint(), math.MaxInt32))
	s.next, s.received, s.finished = d.time(), d.time(), d.time()
	if len(d.b) == 0 {
		d.fail()
	} else {
		d.flags, d.b = d.b[0], d.b[1:]
	}
	s.reported = d.flags&flagReported != 0
	s.size = d.varint()
	bodyLen := d.uvarint()
	if bodyLen > math.MaxInt32 {
		d.fail()
	}
	s.queue = d.str()
	return s, int(bodyLen)
}

func (d *decoder) fail() {
	if d.err == nil {
		d.err = errCorrupt
	}
	d.b = nil
}

func (d *decoder) uvarint() uint64 {
	v, n := binary.Uvarint(d.b)
	if n <= 0 {
		d.fail()
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *decoder) varint() int64 {
	v, n := binary.Varint(d.b)
	if n <= 0 {
		d.fail()
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *decoder) time() time.Time {
	if v := d.varint(); v != 0 {
		return time.Unix(0, v)
	}
	return time.Time{}
}

// count reads a list length, refusing one longer than the bytes left could hold.
func (d *decoder) count() int {
	n := d.uvarint()
	if n > uint64(len(d.b)) {
		d.fail()
		return 0
	}
	return int(n)
}

func (d *decoder) str() string {
	n := d.uvarint()
	if n > uint64(len(d.b)) {
		d.fail()
		return ""
	}
	var s string
	if d.all != "" {
		at := len(d.all) - len(d.b)
		s = d.all[at : at+int(n)]
	} else {
		s = string(d.b[:n])
	}
	d.b = d.b[n:]
	return s
}
