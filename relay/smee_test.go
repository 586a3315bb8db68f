package relay

import (
	"bufio"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/hookrelay/hookrelay/internal/testutil"
	"github.com/hookrelay/hookrelay/persist"
)

// smeeName is long enough for smee: true.
const smeeName = "smee-test-channel-0123456789"

// sseEvent is one server-sent event as gosmee's client reads it (consumeSSEStream in
// gosmee/client.go): "id", "event" and "data" fields, data lines joined with "\n".
type sseEvent struct {
	ID, Event string
	Data      []byte
}

// sseStream is an open stream read the way gosmee's client reads it.
type sseStream struct {
	resp   *http.Response
	events chan sseEvent
	cancel context.CancelFunc
}

// openStream GETs url with gosmee's request headers (plus Last-Event-ID when set) and reads
// its events in the background until it ends or the test does.
func openStream(t *testing.T, url, lastEventID string) *sseStream {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	req.Header.Set("Accept", "text/event-stream")
	req.Header.Set("Cache-Control", "no-cache")
	req.Header.Set("User-Agent", "gosmee/v0.32.0")
	if lastEventID != "" {
		req.Header.Set("Last-Event-ID", lastEventID)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusOK || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/event-stream") {
		cancel()
		resp.Body.Close()
		t.Fatalf("GET %s: %d %q, want 200 text/event-stream", url, resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	st := &sseStream{resp: resp, events: make(chan sseEvent, 1024), cancel: cancel}
	done := make(chan struct{})
	go func() {
		defer close(done)
		defer close(st.events)
		rd := bufio.NewReader(resp.Body)
		var ev sseEvent
		var data []string
		for {
			line, err := rd.ReadString('\n')
			line = strings.TrimRight(line, "\r\n")
			switch {
			case err != nil:
				return
			case line == "":
				if len(data) > 0 || ev.Event != "" || ev.ID != "" {
					ev.Data = []byte(strings.Join(data, "\n"))
					st.events <- ev
				}
				ev, data = sseEvent{}, nil
			case strings.HasPrefix(line, ":"):
			default:
				field, value, _ := strings.Cut(line, ":")
				value = strings.TrimPrefix(value, " ")
				switch field {
				case "id":
					ev.ID = value
				case "event":
					ev.Event = value
				case "data":
					data = append(data, value)
				}
			}
		}
	}()
	t.Cleanup(func() { st.close(); <-done })
	return st
}

func (st *sseStream) close() { st.cancel(); st.resp.Body.Close() }

// next returns the next webhook event, skipping ready and ping (as gosmee's
// isClientControlEvent does); it fails after 10 s.
func (st *sseStream) next(t *testing.T) sseEvent {
	t.Helper()
	timeout := time.After(10 * time.Second)
	for {
		select {
		case ev, ok := <-st.events:
			if !ok {
				t.Fatal("stream ended")
			}
			if ev.Event == "ready" || ev.Event == "ping" {
				continue
			}
			return ev
		case <-timeout:
			t.Fatal("no event within 10s")
		}
	}
}

// waitReady waits for the stream's ready event (sent before any webhook).
func (st *sseStream) waitReady(t *testing.T) {
	t.Helper()
	select {
	case ev := <-st.events:
		if ev.Event != "ready" {
			t.Fatalf("first event %+v, want ready", ev)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no ready event")
	}
}

func smeeServer(t *testing.T, tokens []string, mutate func(*Config)) *Server {
	return startServer(t, func(c *Config) {
		c.Endpoints = []Endpoint{{Name: smeeName, Smee: true, Tokens: tokens}}
		if mutate != nil {
			mutate(c)
		}
	})
}

// TestSmeeGosmeeBytes: /h/events/{endpoint} carries each body byte-exact in bodyB, with the
// headers (lowercase) and a string timestamp, as gosmee's server does; webhook ids are event
// ids, in order.
func TestSmeeGosmeeBytes(t *testing.T) {
	s := smeeServer(t, nil, nil)
	st := openStream(t, s.url("/h/events/"+smeeName), "")
	st.waitReady(t)
	bodies := [][]byte{
		[]byte(`{"a": 1,` + "\r\n" + `  "b": "x\ny"}`),
		[]byte("payload=%7B%22k%22%3A1%7D"),
		{0xff, 0x00, 0xfe, '\n', '\r'},
		nil,
	}
	var ids []string
	for i, b := range bodies {
		code, _, out := post(t, s, "POST", fmt.Sprintf("/h/%s/p?n=%d", smeeName, i), b, http.Header{"X-GitHub-Event": {"push"}})
		if code != http.StatusAccepted {
			t.Fatalf("POST: %d", code)
		}
		ids = append(ids, out["id"])
	}
	for i, want := range bodies {
		ev := st.next(t)
		if ev.ID != ids[i] {
			t.Fatalf("event %d id %q, want %q", i, ev.ID, ids[i])
		}
		var m map[string]any
		if err := json.Unmarshal(ev.Data, &m); err != nil {
			t.Fatalf("event data not JSON: %v: %q", err, ev.Data)
		}
		got, err := base64.StdEncoding.DecodeString(m["bodyB"].(string))
		if err != nil || string(got) != string(want) {
			t.Errorf("event %d bodyB = %q (%v), want %q", i, got, err, want)
		}
		if _, ok := m["body"]; ok {
			t.Errorf("event %d has body beside bodyB: gosmee would pick either at random", i)
		}
		if m["x-github-event"] != "push" || m["hookrelay-id"] != ids[i] {
			t.Errorf("event %d headers: %v", i, m)
		}
		if _, ok := m["timestamp"].(string); !ok {
			t.Errorf("event %d timestamp %v, want a string as gosmee's server sends", i, m["timestamp"])
		}
	}
}

// TestSmeeFormat: /h/{endpoint} with Accept: text/event-stream speaks smee.io's format:
// body as JSON, query as an object, a numeric timestamp, nothing smee-client would turn
// into a stray header.
func TestSmeeFormat(t *testing.T) {
	s := smeeServer(t, nil, nil)
	st := openStream(t, s.url("/h/"+smeeName), "")
	st.waitReady(t)
	post(t, s, "POST", "/h/"+smeeName+"?a=1&b=2&b=3", []byte(`{"x": [1, 2], "y": "z"}`),
		http.Header{"Content-Type": {"application/json"}, "X-Hub-Signature-256": {"sha256=00"}})
	ev := st.next(t)
	var m map[string]any
	if err := json.Unmarshal(ev.Data, &m); err != nil {
		t.Fatal(err)
	}
	body, _ := json.Marshal(m["body"])
	query, _ := json.Marshal(m["query"])
	if string(body) != `{"x":[1,2],"y":"z"}` || string(query) != `{"a":"1","b":["2","3"]}` {
		t.Errorf("body %s query %s", body, query)
	}
	if _, ok := m["timestamp"].(float64); !ok {
		t.Errorf("timestamp %v, want a number as smee.io sends", m["timestamp"])
	}
	if _, ok := m["bodyB"]; ok {
		t.Error("bodyB in smee.io's format: smee-client would forward it as a header")
	}
	if m["x-hub-signature-256"] != "sha256=00" || m["content-type"] != "application/json" {
		t.Errorf("headers: %v", m)
	}
}

// TestSmeeStreamOnly: without tokens, a smee endpoint's webhooks are finished at once: none
// pending, none waiting for an agent, yet streams still get them from the store.
func TestSmeeStreamOnly(t *testing.T) {
	s := smeeServer(t, nil, nil)
	for i := range 5 {
		accept(t, s, "/h/"+smeeName, fmt.Appendf(nil, `{"n":%d}`, i))
	}
	stats, err := s.Store().Stats(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	for _, q := range stats {
		if q.Pending != 0 {
			t.Errorf("stream-only endpoint has %d pending webhooks, want 0", q.Pending)
		}
	}
	recs, _ := s.Store().List(context.Background(), persist.Filter{Queue: smeeName})
	for _, r := range recs {
		if r.State != persist.StateDelivered {
			t.Errorf("webhook %s is %v, want delivered", r.ID, r.State)
		}
	}
	// No stream ever ended: a first stream gets what the store holds (within keep_done).
	st := openStream(t, s.url("/h/events/"+smeeName), "")
	for i := range 5 {
		ev := st.next(t)
		var m struct{ BodyB string }
		json.Unmarshal(ev.Data, &m)
		if b, _ := base64.StdEncoding.DecodeString(m.BodyB); string(b) != fmt.Sprintf(`{"n":%d}`, i) {
			t.Errorf("backlog event %d body %q", i, b)
		}
	}
}

// TestSmeeResume: Last-Event-ID resumes after that webhook; a stream without it starts after
// what the endpoint's last stream sent (less the last smeeOverlap), also across a restart.
func TestSmeeResume(t *testing.T) {
	dir := t.TempDir()
	s := smeeServer(t, nil, func(c *Config) { c.DataDir = dir })
	var ids []string
	for i := range 4 {
		ids = append(ids, accept(t, s, "/h/"+smeeName, fmt.Appendf(nil, `{"n":%d}`, i)))
	}
	st := openStream(t, s.url("/h/events/"+smeeName), ids[1])
	if ev := st.next(t); ev.ID != ids[2] {
		t.Fatalf("after Last-Event-ID %s got %s, want %s", ids[1], ev.ID, ids[2])
	}
	if ev := st.next(t); ev.ID != ids[3] {
		t.Fatalf("got %s, want %s", ev.ID, ids[3])
	}
	st.close()
	// Wait for the relay to see the stream end (its mark is written then).
	testutil.WaitFor(t, 10*time.Second, "the stream detached", func() bool { return s.smee.attached(smeeName) == 0 })
	later := accept(t, s, "/h/"+smeeName, []byte(`{"n":4}`))
	st2 := openStream(t, s.url("/h/events/"+smeeName), "")
	// ids[2] and ids[3] were sent less than smeeOverlap before the end: sent again.
	for _, want := range []string{ids[2], ids[3], later} {
		if ev := st2.next(t); ev.ID != want {
			t.Fatalf("resumed stream got %s, want %s", ev.ID, want)
		}
	}
}

// TestSmeeStreamLeavesAgentDelivery: an endpoint with tokens keeps its webhooks pending for
// the agent while a stream reads them.
func TestSmeeStreamLeavesAgentDelivery(t *testing.T) {
	s := smeeServer(t, []string{hashOf(tokenA)}, nil)
	st := openStream(t, s.url("/h/"+smeeName), "")
	id := accept(t, s, "/h/"+smeeName, []byte(`{}`))
	if ev := st.next(t); ev.ID != id {
		t.Fatalf("got %s, want %s", ev.ID, id)
	}
	r, err := s.Store().Get(context.Background(), id)
	if err != nil || r.State != persist.StateReady {
		t.Fatalf("webhook %v (%v), want still ready for the agent", r.State, err)
	}
}

func TestSmeeConfig(t *testing.T) {
	for _, tc := range []struct {
		ep   Endpoint
		want string
	}{
		{Endpoint{Name: "short-name", Smee: true}, "endpoints[0].smee: endpoint name \"short-name\" has 10 characters"},
		{Endpoint{Name: "events"}, "endpoints[0].name: \"events\" is reserved"},
	} {
		c := &Config{Endpoints: []Endpoint{tc.ep}}
		if err := c.Validate(); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%+v: %v, want %q", tc.ep, err, tc.want)
		}
	}
	c := &Config{Endpoints: []Endpoint{{Name: smeeName, Smee: true}}}
	if err := c.Validate(); err != nil {
		t.Errorf("a 28-character smee endpoint: %v", err)
	}
}

// TestSmeeUnknown: /h/events/{name} of an endpoint that is not smee is 404; a GET accepting
// event streams on a plain endpoint is a webhook, as before.
func TestSmeeUnknown(t *testing.T) {
	s := startServer(t, nil)
	resp, err := http.Get(s.url("/h/events/ep"))
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusNotFound {
		t.Errorf("/h/events/ep: %d, want 404", resp.StatusCode)
	}
	code, _, _ := post(t, s, "GET", "/h/ep", nil, http.Header{"Accept": {"text/event-stream"}})
	if code != http.StatusAccepted {
		t.Errorf("GET /h/ep accepting event streams: %d, want 202 (stored)", code)
	}
}

// TestSmeeStreamOnlySweep: a stream-only webhook left pending (a crash between storing and
// finishing it) is finished by the next retention sweep.
func TestSmeeStreamOnlySweep(t *testing.T) {
	s := smeeServer(t, nil, func(c *Config) { c.RetentionInterval = 50 * time.Millisecond })
	rec := &persist.Record{Queue: smeeName, Method: "POST", Body: []byte(`{}`)}
	if err := s.Store().Append(context.Background(), rec); err != nil {
		t.Fatal(err)
	}
	testutil.WaitFor(t, 10*time.Second, "the sweep to finish the webhook", func() bool {
		r, err := s.Store().Get(context.Background(), rec.ID)
		return err == nil && r.State == persist.StateDelivered
	})
}
