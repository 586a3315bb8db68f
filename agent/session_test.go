package agent

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/hookrelay/hookrelay/internal/testutil"
	"github.com/hookrelay/hookrelay/persist"
	"github.com/hookrelay/hookrelay/protocol"
)

// view is what the fake relay has heard from the agent so far.
type view struct {
	acked   map[string]int
	reports map[string][]*protocol.Report
	nacks   []*protocol.Nack
	pongs   []uint64
	onAck   func(ids []string) // called as each Ack frame is read
}

func newView() *view {
	return &view{acked: map[string]int{}, reports: map[string][]*protocol.Report{}}
}

func (v *view) add(f protocol.Frame) {
	switch f := f.(type) {
	case *protocol.Ack:
		if v.onAck != nil {
			v.onAck(f.IDs)
		}
		for _, id := range f.IDs {
			v.acked[id]++
		}
	case *protocol.Report:
		v.reports[f.ID] = append(v.reports[f.ID], f)
	case *protocol.Nack:
		v.nacks = append(v.nacks, f)
	case *protocol.Pong:
		v.pongs = append(v.pongs, f.Nonce)
	}
}

// until reads the agent's frames into v until cond holds.
func (c *relayConn) until(t *testing.T, v *view, cond func() bool) {
	t.Helper()
	for !cond() {
		v.add(c.next(t))
	}
}

func webhook(id string, body []byte) *protocol.Webhook {
	return &protocol.Webhook{
		ID: id, Endpoint: "ep", ReceivedAt: time.Now(), Method: "POST", Path: "/p", Query: "q=1",
		Headers: []protocol.Header{{Name: "X-Sig", Value: "s-" + id}},
		BodyLen: int64(len(body)), Body: body,
	}
}

func readyz(t *testing.T, a *Agent) int {
	t.Helper()
	resp, err := http.Get("http://" + a.AdminAddr() + "/readyz")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

func TestSessionStoresBeforeAck(t *testing.T) {
	tg := newTarget(t, nil)
	a, fr := runOnFakeRelay(t, tg)

	c, hello := fr.accept(t)
	if hello.Token != "secret-token" || hello.AgentID != a.AgentID() || hello.Version != protocol.Version ||
		!slices.Equal(hello.Endpoints, []string{"ep"}) {
		t.Fatalf("hello: %+v", hello)
	}
	if code := readyz(t, a); code != http.StatusServiceUnavailable {
		t.Fatalf("readyz before welcome: %d", code)
	}
	c.write(t, &protocol.Welcome{SessionID: "s1", Endpoints: []string{"ep"}, Window: 64, ServerTime: time.Now()})
	testutil.CheckFor(t, 5*time.Second, 5*time.Millisecond, func() error {
		if !a.Connected() || a.Transport() != "websocket" || readyz(t, a) != http.StatusOK {
			return fmt.Errorf("not ready: connected %v transport %q", a.Connected(), a.Transport())
		}
		return nil
	})

	big := bytes.Repeat([]byte("0123456789abcdef"), 700<<10/16) // several Chunk frames
	v := newView()
	v.onAck = func(ids []string) {
		for _, id := range ids {
			if ok, err := a.Store().Has(id); err != nil || !ok {
				t.Errorf("ack for %s before it was stored (%v)", id, err)
			}
		}
	}
	var ids []string
	for i := range 20 {
		id := fmt.Sprintf("w%02d", i)
		ids = append(ids, id)
		body := []byte("body " + id)
		if i == 7 {
			body = big
		}
		c.send(t, webhook(id, body))
	}
	c.until(t, v, func() bool { return len(v.acked) == 20 })
	c.until(t, v, func() bool { return len(v.reports) == 20 })
	for _, id := range ids {
		r := v.reports[id][0]
		if r.Outcome != protocol.OutcomeDelivered || r.Status != 200 || r.Attempts != 1 {
			t.Errorf("report %s: %+v", id, r)
		}
		got := tg.requests(id)
		if len(got) != 1 || got[0].RequestURI != "/p?q=1" || got[0].Header.Get("X-Sig") != "s-"+id {
			t.Fatalf("%s at the target: %+v", id, got)
		}
	}
	if !bytes.Equal(tg.requests("w07")[0].Body, big) {
		t.Error("chunked body differs at the target")
	}
	testutil.CheckFor(t, 5*time.Second, 10*time.Millisecond, func() error {
		if n, _ := a.Store().Unreported(10); len(n) != 0 {
			return fmt.Errorf("%d records not marked reported", len(n))
		}
		return nil
	})
}

func TestSessionDuplicateReplayNoRoute(t *testing.T) {
	tg := newTarget(t, nil)
	a, fr := runOnFakeRelay(t, tg)
	c := fr.welcome(t)
	v := newView()

	c.send(t, webhook("d1", []byte("one")))
	c.until(t, v, func() bool { return len(v.reports["d1"]) == 1 })

	// A redelivery (no replay mark) of the finished d1 is answered with its outcome again
	// (second-wave contract: never just an ack), without a second delivery.
	c.send(t, webhook("d1", []byte("one")))
	c.until(t, v, func() bool { return len(v.reports["d1"]) == 2 })
	c.send(t, webhook("d2", []byte("two")))
	c.until(t, v, func() bool { return len(v.reports["d2"]) == 1 })
	if n := len(tg.requests("d1")); n != 1 {
		t.Fatalf("duplicate delivered: d1 reached the target %d times", n)
	}
	if n := v.acked["d1"]; n != 1 {
		t.Fatalf("d1 acked %d times, want once (the redelivery gets its outcome)", n)
	}

	// A replay of an id the agent holds is delivered again, marked.
	w := webhook("d1", []byte("one"))
	w.Replay = true
	c.send(t, w)
	c.until(t, v, func() bool { return len(v.reports["d1"]) == 3 })
	reqs := tg.requests("d1")
	if len(reqs) != 2 || reqs[0].Header.Get("Hookrelay-Replay") != "" || reqs[1].Header.Get("Hookrelay-Replay") != "1" {
		t.Fatalf("replay: %d deliveries, replay headers %q", len(reqs), reqs[len(reqs)-1].Header["Hookrelay-Replay"])
	}

	// No route for the endpoint: nack, nothing stored.
	nr := webhook("n1", nil)
	nr.Endpoint = "other"
	c.send(t, nr)
	c.write(t, &protocol.Ping{Nonce: 42})
	c.until(t, v, func() bool { return len(v.nacks) == 1 && len(v.pongs) == 1 })
	if v.nacks[0].ID != "n1" || v.nacks[0].RetryAfter <= 0 || v.pongs[0] != 42 {
		t.Fatalf("nack %+v, pong %v", v.nacks[0], v.pongs)
	}
	if ok, _ := a.Store().Has("n1"); ok || v.acked["n1"] != 0 {
		t.Fatal("webhook without a route was stored or acked")
	}
}

func TestSessionDeadReport(t *testing.T) {
	tg := newTarget(t, func(r *http.Request, n int) (int, http.Header) { return 422, nil })
	_, fr := runOnFakeRelay(t, tg)
	c := fr.welcome(t)
	v := newView()
	c.send(t, webhook("x1", []byte("{}")))
	c.until(t, v, func() bool { return len(v.reports["x1"]) == 1 })
	r := v.reports["x1"][0]
	if r.Outcome != protocol.OutcomeDead || r.Status != 422 || r.Attempts != 1 || !strings.Contains(r.Error, "422") || r.At.IsZero() {
		t.Fatalf("dead report: %+v", r)
	}
}

func TestSessionReconnectKeepsReports(t *testing.T) {
	release := make(chan struct{})
	tg := newTarget(t, func(r *http.Request, n int) (int, http.Header) {
		<-release
		return 200, nil
	})
	a, fr := runOnFakeRelay(t, tg)
	c := fr.welcome(t)
	v := newView()
	c.send(t, webhook("k1", []byte("k")))
	c.until(t, v, func() bool { return v.acked["k1"] == 1 })
	testutil.CheckFor(t, 5*time.Second, 5*time.Millisecond, func() error {
		if len(tg.requests("k1")) == 0 {
			return fmt.Errorf("not at the target yet")
		}
		return nil
	})

	// The relay drops the tunnel; the delivery finishes while the agent is disconnected.
	c.tun.Close()
	testutil.CheckFor(t, 5*time.Second, 5*time.Millisecond, func() error {
		if a.Connected() {
			return fmt.Errorf("still connected")
		}
		return nil
	})
	close(release)
	waitState(t, a, "k1", persist.StateDelivered)

	// The agent reconnects, and the next session reports the outcome.
	c2, hello := fr.accept(t)
	if hello.AgentID != a.AgentID() {
		t.Fatalf("agent id changed across reconnects: %q", hello.AgentID)
	}
	c2.write(t, &protocol.Welcome{SessionID: "s2", Endpoints: hello.Endpoints, ServerTime: time.Now()})
	v2 := newView()
	c2.until(t, v2, func() bool { return len(v2.reports["k1"]) == 1 })

	// GoAway: the agent waits the given time, then reconnects.
	sent := time.Now()
	c2.write(t, &protocol.GoAway{Reason: "restart", ReconnectAfter: 300 * time.Millisecond})
	c3, _ := fr.accept(t)
	if d := time.Since(sent); d < 250*time.Millisecond {
		t.Fatalf("reconnected %v after GoAway{300ms}", d)
	}

	// Unauthorized: the agent keeps trying.
	c3.write(t, &protocol.Error{Code: protocol.CodeUnauthorized, Reason: "bad token"})
	fr.welcome(t)
	testutil.CheckFor(t, 5*time.Second, 5*time.Millisecond, func() error {
		if !a.Connected() {
			return fmt.Errorf("not connected again")
		}
		return nil
	})
}

func TestReportsSurviveRestart(t *testing.T) {
	tg := newTarget(t, nil)
	dir := t.TempDir()
	cfg := func(relay string) *Config {
		return &Config{Relay: relay, Token: "t", DataDir: dir, AdminAddr: "off", Routes: []Route{fastRoute(tg.URL)}}
	}
	// First run: no relay reachable; a stored webhook is delivered and not reported.
	a1, err := New(cfg("ws://127.0.0.1:1"), testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a1.Run(ctx) }()
	appendRecord(t, a1, &persist.Record{ID: "keep", Queue: "ep"})
	waitState(t, a1, "keep", persist.StateDelivered)
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("run: %v", err)
	}
	id := a1.AgentID()
	if err := a1.Close(); err != nil {
		t.Fatal(err)
	}

	// Second run, same data dir: the first session reports it.
	fr := newFakeRelay(t)
	a2, err := New(cfg(fr.url()), testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { a2.Close() })
	runAgent(t, a2)
	if a2.AgentID() != id {
		t.Fatalf("agent id %q after restart, was %q", a2.AgentID(), id)
	}
	c := fr.welcome(t)
	v := newView()
	c.until(t, v, func() bool { return len(v.reports["keep"]) == 1 })
	if r := v.reports["keep"][0]; r.Outcome != protocol.OutcomeDelivered || r.Status != 200 {
		t.Fatalf("report after restart: %+v", r)
	}
	if n := len(tg.requests("keep")); n != 1 {
		t.Fatalf("delivered %d times across the restart", n)
	}
}
