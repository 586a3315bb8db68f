package admin

import (
	"encoding/base64"
	"encoding/json"
	"net/url"
	"slices"
	"testing"
	"time"

	"github.com/hookrelay/hookrelay/persist"
)

// stateCase makes a record that the API must name state on its side.
type stateCase struct {
	state string
	make  func(e *env, queue string) string
}

func finished(st persist.State, reason string) func(e *env, queue string) string {
	return func(e *env, queue string) string {
		r := e.add(queue, `{}`)
		d := &persist.Delivery{At: time.Now(), Status: 500, Millis: 3, Error: "500"}
		if err := e.store.Complete(r.ID, st, d, reason); err != nil {
			e.t.Fatalf("complete: %v", err)
		}
		return r.ID
	}
}

func leased(e *env, queue string) string {
	r := e.add(queue, `{}`)
	got, err := e.store.Lease(queue, 1, time.Minute)
	if err != nil || len(got) != 1 || got[0].ID != r.ID {
		e.t.Fatalf("lease: %v %v", got, err)
	}
	return r.ID
}

func TestStateNames(t *testing.T) {
	sides := []struct {
		side  Side
		cases []stateCase
	}{
		{Relay, []stateCase{
			{"accepted", func(e *env, q string) string { return e.add(q, `{}`).ID }},
			{"sent", leased},
			{"acked", func(e *env, q string) string {
				id := e.add(q, `{}`).ID
				if err := e.store.Ack(id); err != nil {
					e.t.Fatalf("ack: %v", err)
				}
				return id
			}},
			{"delivered", finished(persist.StateDelivered, "")},
			{"dead", finished(persist.StateDead, "max attempts")},
		}},
		{Agent, []stateCase{
			{"queued", func(e *env, q string) string { return e.add(q, `{}`).ID }},
			{"retrying", func(e *env, q string) string {
				id := e.add(q, `{}`).ID
				d := &persist.Delivery{At: time.Now(), Status: 502, Millis: 5, Error: "502"}
				if err := e.store.Nack(id, time.Now().Add(time.Hour), d); err != nil {
					e.t.Fatalf("nack: %v", err)
				}
				return id
			}},
			{"delivering", leased},
			{"delivered", finished(persist.StateDelivered, "")},
			{"dead", finished(persist.StateDead, "max age")},
		}},
	}
	for _, sd := range sides {
		t.Run(sd.side.String(), func(t *testing.T) {
			e := newEnv(t, sd.side, "")
			want := map[string]string{} // id → state name
			for i, c := range sd.cases {
				want[c.make(e, "q"+string(rune('a'+i)))] = c.state
			}
			var all listResp
			e.getJSON("/admin/api/webhooks", 200, &all)
			if len(all.Webhooks) != len(want) {
				t.Fatalf("listed %d webhooks, want %d: %+v", len(all.Webhooks), len(want), all.Webhooks)
			}
			for _, s := range all.Webhooks {
				if s.State != want[s.ID] {
					t.Errorf("%s: state %q, want %q", s.ID, s.State, want[s.ID])
				}
			}
			for id, name := range want {
				var l listResp
				e.getJSON("/admin/api/webhooks?state="+name, 200, &l)
				if got := ids(l); !slices.Equal(got, []string{id}) {
					t.Errorf("state=%s: got %v, want [%s]", name, got, id)
				}
			}
			code, b := e.do("GET", "/admin/api/webhooks?state=bogus", nil)
			wantError(t, "state=bogus", code, b, 400, "state", sd.cases[0].state, "dead")
		})
	}
}

func TestListFilters(t *testing.T) {
	e := newEnv(t, Relay, "")
	now := time.Now()
	old := e.add("github", `{}`, func(r *persist.Record) { r.ReceivedAt = now.Add(-2 * time.Hour) })
	mid := e.add("stripe", `{}`, func(r *persist.Record) { r.ReceivedAt = now.Add(-30 * time.Minute) })
	newest := e.add("github", `{}`)

	var l listResp
	e.getJSON("/admin/api/webhooks", 200, &l)
	if got, want := ids(l), []string{newest.ID, mid.ID, old.ID}; !slices.Equal(got, want) {
		t.Fatalf("list: %v, want newest first %v", got, want)
	}
	s := l.Webhooks[2]
	if s.Endpoint != "github" || s.State != "accepted" || s.Attempts != 0 {
		t.Errorf("summary %+v", s)
	}
	if at, err := time.Parse(time.RFC3339, s.ReceivedAt); err != nil || !at.Equal(old.ReceivedAt) {
		t.Errorf("received_at %q (%v), want RFC 3339 of %v", s.ReceivedAt, err, old.ReceivedAt)
	}

	e.getJSON("/admin/api/webhooks?endpoint=github", 200, &l)
	if got, want := ids(l), []string{newest.ID, old.ID}; !slices.Equal(got, want) {
		t.Errorf("endpoint=github: %v, want %v", got, want)
	}
	since := url.QueryEscape(now.Add(-time.Hour).Format(time.RFC3339))
	e.getJSON("/admin/api/webhooks?since="+since, 200, &l)
	if got, want := ids(l), []string{newest.ID, mid.ID}; !slices.Equal(got, want) {
		t.Errorf("since: %v, want %v", got, want)
	}
	e.getJSON("/admin/api/webhooks?limit=1", 200, &l)
	if got, want := ids(l), []string{newest.ID}; !slices.Equal(got, want) {
		t.Errorf("limit=1: %v, want %v", got, want)
	}
	e.getJSON("/admin/api/webhooks?endpoint=nope", 200, &l)
	if l.Webhooks == nil || len(l.Webhooks) != 0 {
		t.Errorf("endpoint=nope: want an empty list, got %v", l.Webhooks)
	}

	for _, c := range []struct{ query, word string }{
		{"since=yesterday", "since"},
		{"since=2024-01-01", "since"},
		{"limit=0", "limit"},
		{"limit=ten", "limit"},
		{"limit=-3", "limit"},
	} {
		code, b := e.do("GET", "/admin/api/webhooks?"+c.query, nil)
		wantError(t, c.query, code, b, 400, c.word)
	}
}

// TestAgentStateFilterScans checks that queued/retrying, which share a store state, fill the
// limit even when the newest ready records are of the other kind.
func TestAgentStateFilterScans(t *testing.T) {
	e := newEnv(t, Agent, "")
	queued := e.add("q", `{}`).ID
	for range 5 {
		id := e.add("q", `{}`).ID
		if err := e.store.Nack(id, time.Now().Add(time.Hour), &persist.Delivery{Status: 500}); err != nil {
			t.Fatal(err)
		}
	}
	var l listResp
	e.getJSON("/admin/api/webhooks?state=queued&limit=1", 200, &l)
	if got := ids(l); !slices.Equal(got, []string{queued}) {
		t.Errorf("state=queued&limit=1: %v, want [%s]", got, queued)
	}
	e.getJSON("/admin/api/webhooks?state=retrying&limit=3", 200, &l)
	if len(l.Webhooks) != 3 {
		t.Errorf("state=retrying&limit=3: %d webhooks", len(l.Webhooks))
	}
}

func TestDetail(t *testing.T) {
	e := newEnv(t, Relay, "")
	body := []byte{0xff, 0x00, 'h', 'i'}
	r := e.add("github", "", func(r *persist.Record) { r.Body = body })
	at := time.Now().Add(-time.Minute).Truncate(time.Millisecond)
	if err := e.store.Nack(r.ID, time.Now(), &persist.Delivery{At: at, Status: 503, Millis: 12, Error: "503 Service Unavailable"}); err != nil {
		t.Fatal(err)
	}
	if err := e.store.Complete(r.ID, persist.StateDead, &persist.Delivery{At: at, Error: "connection refused"}, "max attempts"); err != nil {
		t.Fatal(err)
	}
	var d struct {
		ID, Endpoint, State, Method, Path, Query string
		ReceivedAt                               string      `json:"received_at"`
		Attempts                                 int         `json:"attempts"`
		Headers                                  [][2]string `json:"headers"`
		BodyBase64                               string      `json:"body_base64"`
		DeadReason                               string      `json:"dead_reason"`
		Deliveries                               []struct {
			At     string `json:"at"`
			Status int    `json:"status"`
			Ms     int64  `json:"ms"`
			Error  string `json:"error"`
		} `json:"deliveries"`
	}
	e.getJSON("/admin/api/webhooks/"+r.ID, 200, &d)
	if d.ID != r.ID || d.Endpoint != "github" || d.State != "dead" || d.Method != "POST" ||
		d.Path != "/push" || d.Query != "a=1&b=2" || d.Attempts != 2 || d.ReceivedAt == "" {
		t.Errorf("detail %+v", d)
	}
	wantHeaders := [][2]string{{"Content-Type", "application/json"}, {"X-B", "2"}, {"X-A", "1"}}
	if !slices.Equal(d.Headers, wantHeaders) {
		t.Errorf("headers %v, want %v (order kept)", d.Headers, wantHeaders)
	}
	if got, err := base64.StdEncoding.DecodeString(d.BodyBase64); err != nil || !slices.Equal(got, body) {
		t.Errorf("body %q (%v), want %q", got, err, body)
	}
	if d.DeadReason != "max attempts" {
		t.Errorf("dead_reason %q", d.DeadReason)
	}
	if len(d.Deliveries) != 2 {
		t.Fatalf("deliveries %+v", d.Deliveries)
	}
	first := d.Deliveries[0]
	if a, err := time.Parse(time.RFC3339, first.At); err != nil || !a.Equal(at) ||
		first.Status != 503 || first.Ms != 12 || first.Error != "503 Service Unavailable" {
		t.Errorf("delivery %+v", first)
	}

	code, b := e.do("GET", "/admin/api/webhooks/01NOPE", nil)
	wantError(t, "unknown id", code, b, 404)

	// a live record has no dead_reason key at all
	live := e.add("github", `{"x":1}`)
	_, raw := e.do("GET", "/admin/api/webhooks/"+live.ID, nil)
	var m map[string]any
	if err := json.Unmarshal(raw, &m); err != nil {
		t.Fatal(err)
	}
	if _, ok := m["dead_reason"]; ok {
		t.Errorf("dead_reason on a live record: %s", raw)
	}
}

func TestReplay(t *testing.T) {
	e := newEnv(t, Relay, "")
	r := e.add("github", `{}`)
	code, b := e.do("POST", "/admin/api/webhooks/"+r.ID+"/replay", nil)
	wantError(t, "replay of a ready record", code, b, 409)

	if err := e.store.Complete(r.ID, persist.StateDelivered, nil, ""); err != nil {
		t.Fatal(err)
	}
	code, b = e.do("POST", "/admin/api/webhooks/"+r.ID+"/replay", nil)
	var res struct{ ID string }
	if code != 202 || json.Unmarshal(b, &res) != nil || res.ID != r.ID {
		t.Fatalf("replay: %d %s", code, b)
	}
	got := get(t, e.store, r.ID)
	if got.State != persist.StateReady || !got.Replay {
		t.Errorf("after replay: state %v replay %v, want ready with replay set", got.State, got.Replay)
	}
	select {
	case id := <-e.replays:
		if id != r.ID {
			t.Errorf("OnReplay(%q), want %q", id, r.ID)
		}
	default:
		t.Error("OnReplay not called")
	}
	code, b = e.do("POST", "/admin/api/webhooks/01NOPE/replay", nil)
	wantError(t, "replay unknown", code, b, 404)
}

func TestDeadLetters(t *testing.T) {
	e := newEnv(t, Relay, "")
	dead := func(q string) string { return finished(persist.StateDead, "max attempts")(e, q) }
	a1, a2, b1 := dead("a"), dead("a"), dead("b")
	delivered := finished(persist.StateDelivered, "")(e, "a")
	e.add("a", `{}`)

	var l listResp
	e.getJSON("/admin/api/dead", 200, &l)
	if got, want := ids(l), []string{b1, a2, a1}; !slices.Equal(got, want) {
		t.Errorf("dead: %v, want %v", got, want)
	}
	e.getJSON("/admin/api/dead?endpoint=a", 200, &l)
	if got, want := ids(l), []string{a2, a1}; !slices.Equal(got, want) {
		t.Errorf("dead?endpoint=a: %v, want %v", got, want)
	}
	for _, s := range l.Webhooks {
		if s.State != "dead" || s.Endpoint != "a" {
			t.Errorf("dead summary %+v", s)
		}
	}
	code, b := e.do("GET", "/admin/api/dead?limit=x", nil)
	wantError(t, "dead?limit=x", code, b, 400, "limit")

	// delete: only a dead record
	code, b = e.do("DELETE", "/admin/api/dead/"+delivered, nil)
	wantError(t, "delete delivered", code, b, 409, "not dead")
	code, b = e.do("DELETE", "/admin/api/dead/01NOPE", nil)
	wantError(t, "delete unknown", code, b, 404)
	if code, b = e.do("DELETE", "/admin/api/dead/"+a1, nil); code != 204 {
		t.Fatalf("delete dead: %d %s", code, b)
	}
	if _, err := e.store.Get(a1); err == nil {
		t.Error("deleted dead letter still stored")
	}

	// replay by endpoint, then all
	var res struct{ Count int }
	code, b = e.do("POST", "/admin/api/dead/replay?endpoint=a", nil)
	if code != 202 || json.Unmarshal(b, &res) != nil || res.Count != 1 {
		t.Fatalf("dead/replay?endpoint=a: %d %s, want 202 count 1", code, b)
	}
	if r := get(t, e.store, a2); r.State != persist.StateReady || !r.Replay {
		t.Errorf("a2 after replay: %v replay=%v", r.State, r.Replay)
	}
	if r := get(t, e.store, b1); r.State != persist.StateDead {
		t.Errorf("b1 replayed by endpoint=a: %v", r.State)
	}
	code, b = e.do("POST", "/admin/api/dead/replay", nil)
	if code != 202 || json.Unmarshal(b, &res) != nil || res.Count != 1 {
		t.Fatalf("dead/replay: %d %s, want 202 count 1", code, b)
	}
	if r := get(t, e.store, b1); r.State != persist.StateReady || !r.Replay {
		t.Errorf("b1 after replay all: %v replay=%v", r.State, r.Replay)
	}
	e.getJSON("/admin/api/dead", 200, &l)
	if len(l.Webhooks) != 0 {
		t.Errorf("dead after replay all: %v", ids(l))
	}
}

func TestAgentsAndStatus(t *testing.T) {
	since := time.Date(2025, 5, 1, 12, 0, 0, 0, time.UTC)
	e := newEnv(t, Relay, "", func(c *Config) {
		c.Agents = func() []AgentInfo {
			return []AgentInfo{{AgentID: "edge-1", Endpoints: []string{"github"}, Transport: "quic", ConnectedAt: since, InFlight: 2}}
		}
		c.Status = func() any { return map[string]any{"agents_connected": 1} }
	})
	e.add("github", `{"a":1}`)
	finished(persist.StateDead, "max age")(e, "github")

	var ag struct {
		Agents []map[string]any `json:"agents"`
	}
	e.getJSON("/admin/api/agents", 200, &ag)
	want := map[string]any{"agent_id": "edge-1", "endpoints": []any{"github"}, "transport": "quic",
		"connected_at": "2025-05-01T12:00:00Z", "in_flight": float64(2)}
	if len(ag.Agents) != 1 || !jsonEqual(ag.Agents[0], want) {
		t.Errorf("agents %v, want [%v]", ag.Agents, want)
	}

	var st struct {
		Side   string           `json:"side"`
		Queues []map[string]any `json:"queues"`
		Status map[string]any   `json:"status"`
	}
	e.getJSON("/admin/api/status", 200, &st)
	if st.Side != "relay" || st.Status["agents_connected"] != float64(1) || len(st.Queues) != 1 {
		t.Fatalf("status %+v", st)
	}
	q := st.Queues[0]
	if q["queue"] != "github" || q["pending"] != float64(1) || q["dead"] != float64(1) ||
		q["bytes"].(float64) <= 0 || q["oldest"] == nil {
		t.Errorf("queue stats %v", q)
	}

	a := newEnv(t, Agent, "")
	code, b := a.do("GET", "/admin/api/agents", nil)
	wantError(t, "agents on the agent", code, b, 404)
	a.getJSON("/admin/api/status", 200, &st)
	if st.Side != "agent" || st.Queues == nil {
		t.Errorf("agent status %+v", st)
	}
	code, b = a.do("GET", "/admin/api/nope", nil)
	wantError(t, "unknown route", code, b, 404)
	code, b = a.do("PUT", "/admin/api/webhooks", nil)
	wantError(t, "wrong method", code, b, 404)
}

func jsonEqual(a, b any) bool {
	x, _ := json.Marshal(a)
	y, _ := json.Marshal(b)
	return string(x) == string(y)
}

func TestNewChecksConfig(t *testing.T) {
	st, err := persist.Open(persist.Options{Dir: t.TempDir(), Small: true})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	for _, c := range []Config{
		{},
		{Store: st, TokenHash: "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"},
		{Store: st, TokenHash: "sha256:xyz"},
		{Store: st, Side: Side(7)},
	} {
		if _, err := New(c); err == nil {
			t.Errorf("New(%+v) = nil error", c)
		}
	}
}
