package relay

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"mime"
	"net/url"
	"strconv"
	"strings"

	"github.com/hookrelay/hookrelay/persist"
)

// smeeFormat is the event format of a stream: each client reads the fields its own server
// sends, and forwards the others as headers.
type smeeFormat int

const (
	// formatSmee is smee.io's (lib/server.js): the sender's headers with lowercase names,
	// "body" as JSON, "query" as an object, "timestamp" in milliseconds as a number. Nothing
	// else: smee-client 5 forwards every other key as a header, so a raw copy of the body
	// there would reach the target as a header.
	formatSmee smeeFormat = iota
	// formatGosmee is gosmee server's: the headers, "bodyB" (the raw body in base64) and
	// "timestamp" as a string. No "body": gosmee's client reads whichever of body and bodyB
	// its map iteration meets last, so with both the bytes would be exact only by chance.
	formatGosmee
)

// smeeEvent encodes rec (whose body is body) as one server-sent event with the webhook's
// id as the event id, so that a client's Last-Event-ID resumes after it.
func smeeEvent(rec *persist.Record, body []byte, f smeeFormat) ([]byte, error) {
	data := make(map[string]any, len(rec.Headers)+5)
	for _, h := range rec.Headers {
		name := strings.ToLower(h.Name)
		if prev, ok := data[name].(string); ok { // repeated: joined, as Node's req.headers does
			data[name] = prev + ", " + h.Value
		} else {
			data[name] = h.Value
		}
	}
	data["hookrelay-id"] = rec.ID
	if _, ok := data["webhook-id"]; !ok {
		data["webhook-id"] = rec.ID
	}
	ms := rec.ReceivedAt.UnixMilli()
	switch f {
	case formatGosmee:
		data["bodyB"] = base64.StdEncoding.EncodeToString(body)
		data["timestamp"] = strconv.FormatInt(ms, 10)
	default:
		data["body"] = smeeBody(body, headerValue(rec.Headers, "Content-Type"))
		data["query"] = smeeQuery(rec.Query)
		data["timestamp"] = ms
	}
	js, err := json.Marshal(data) // escapes every newline: the event is one data line
	if err != nil {
		return nil, err
	}
	var b bytes.Buffer
	b.Grow(len(js) + len(rec.ID) + 16)
	b.WriteString("id: ")
	b.WriteString(rec.ID)
	b.WriteString("\ndata: ")
	b.Write(js)
	b.WriteString("\n\n")
	return b.Bytes(), nil
}

// smeeBody is the body as smee.io's "body" holds it: the JSON itself when it is JSON, a form
// as an object, anything else as a string.
func smeeBody(body []byte, contentType string) any {
	if json.Valid(body) {
		return json.RawMessage(body)
	}
	if mt, _, _ := mime.ParseMediaType(contentType); mt == "application/x-www-form-urlencoded" {
		if v, err := url.ParseQuery(string(body)); err == nil {
			return smeeValues(v)
		}
	}
	return string(body)
}

// smeeQuery is the query as an object, as smee.io's (fastify's) request.query.
func smeeQuery(raw string) map[string]any {
	v, _ := url.ParseQuery(raw) // what parses is kept, as Node's querystring does
	return smeeValues(v)
}

// smeeValues maps each name to its value, or to the list of its values when repeated.
func smeeValues(v url.Values) map[string]any {
	out := make(map[string]any, len(v))
	for k, vs := range v {
		if len(vs) == 1 {
			out[k] = vs[0]
		} else {
			out[k] = vs
		}
	}
	return out
}

// Control events carry no id, so that a client's Last-Event-ID is always a webhook's.
var (
	smeeReady   = []byte("event: ready\ndata: {}\n\n")
	gosmeeReady = []byte("event: ready\ndata: {\"message\":\"ready\"}\n\n")
	smeePing    = []byte("event: ping\ndata: {}\n\n")
)
