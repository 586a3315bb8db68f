package jsqueue

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"github.com/hookrelay/hookrelay/persist"
)

// hdrMeta carries a webhook's metadata (meta as JSON) in its stream message's headers, so a
// mirror reads the stream with a headers-only consumer and never pulls bodies.
const hdrMeta = "Hookrelay-Meta"

// meta is a webhook as stored in the stream, less its body.
type meta struct {
	ID      string      `json:"id"`
	Queue   string      `json:"q"`
	At      int64       `json:"at"` // received, unix nanoseconds
	Method  string      `json:"m,omitempty"`
	Path    string      `json:"p,omitempty"`
	Query   string      `json:"qs,omitempty"`
	Headers [][2]string `json:"h,omitempty"`
	BodyLen int64       `json:"n"`
	Parts   int         `json:"parts,omitempty"` // >0: the body is in that many part messages
	Size    int64       `json:"size"`
	// Groups are the consumer groups the webhook was accepted for (its endpoint's, then);
	// absent (stored before groups) = every declared group.
	Groups []string `json:"g,omitempty"`
}

func metaOf(r *persist.Record, parts int) meta {
	m := meta{ID: r.ID, Queue: r.Queue, At: r.ReceivedAt.UnixNano(), Method: r.Method, Path: r.Path,
		Query: r.Query, BodyLen: r.BodyLen, Parts: parts, Size: r.Size}
	for _, h := range r.Headers {
		m.Headers = append(m.Headers, [2]string{h.Name, h.Value})
	}
	return m
}

// record is the metadata as a Record without body or delivery state.
func (m *meta) record() persist.Record {
	r := persist.Record{ID: m.ID, Queue: m.Queue, ReceivedAt: time.Unix(0, m.At), Method: m.Method,
		Path: m.Path, Query: m.Query, BodyLen: m.BodyLen, Size: m.Size}
	for _, h := range m.Headers {
		r.Headers = append(r.Headers, persist.Header{Name: h[0], Value: h[1]})
	}
	return r
}

// gstate is one group's delivery state of a webhook, the value of its key in the state
// bucket. A webhook without a key for a group is ready for it and was never attempted.
type gstate struct {
	State    persist.State      `json:"s"`
	Token    uint64             `json:"tok,omitempty"`   // the current lease's token (State Leased)
	Until    int64              `json:"until,omitempty"` // the lease's end, unix nanoseconds
	Attempts int                `json:"att,omitempty"`
	Next     int64              `json:"next,omitempty"` // next attempt (Ready), unix nanoseconds
	Dls      []persist.Delivery `json:"dl,omitempty"`
	Reason   string             `json:"why,omitempty"`
	Finished int64              `json:"fin,omitempty"`
	Holder   string             `json:"holder,omitempty"`
	Replay   bool               `json:"replay,omitempty"`
	Deleted  bool               `json:"-"` // removed from the group (a delete marker in the bucket)
}

// effective is the state as of now: a lease that ran out is ready again.
func (g *gstate) effective(now time.Time) persist.State {
	if g.State == persist.StateLeased && g.Until <= now.UnixNano() {
		return persist.StateReady
	}
	return g.State
}

func (g *gstate) unfinished() bool {
	return !g.Deleted && (g.State == persist.StateReady || g.State == persist.StateLeased || g.State == persist.StateAcked)
}

func (g *gstate) encode() []byte {
	b, err := json.Marshal(g)
	if err != nil {
		panic(err) // plain fields only
	}
	return b
}

func decodeState(b []byte) (gstate, error) {
	var g gstate
	err := json.Unmarshal(b, &g)
	return g, err
}

// Subjects and keys. Endpoint and group names become base64url tokens: they may hold
// characters a subject or key may not ('.', '*', '>', spaces).
var tok = base64.RawURLEncoding

// subjWebhook is the subject of endpoint's webhook messages: one per endpoint, not per
// webhook (the id is in the metadata, and messages are read by sequence). A subject per
// webhook cost every server an entry in its subject index for each webhook kept, and about a
// tenth of its CPU under a burst. Webhooks stored before have their id as a last token; the
// stream's subjects and the watch's filter (<name>.wh.>) take both.
func (q *Queue) subjWebhook(endpoint string) string {
	return q.prefix + ".wh." + tok.EncodeToString([]byte(endpoint))
}

func (q *Queue) subjPart(id string, n int) string {
	return fmt.Sprintf("%s.part.%s.%d", q.prefix, id, n)
}

func stateKey(group, id string) string {
	return "g." + tok.EncodeToString([]byte(group)) + "." + id
}

func parseKey(key string) (group, id string, ok bool) {
	parts := strings.Split(key, ".")
	if len(parts) != 3 || parts[0] != "g" {
		return "", "", false
	}
	g, err := tok.DecodeString(parts[1])
	if err != nil {
		return "", "", false
	}
	return string(g), parts[2], true
}

// validID says whether a caller-given id can be a subject token and a key part.
func validID(id string) bool {
	if id == "" || len(id) > 128 {
		return false
	}
	for _, c := range id {
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c == '-' || c == '_') {
			return false
		}
	}
	return true
}
