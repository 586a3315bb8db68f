package relay

import (
	"bytes"
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hookrelay/hookrelay/internal/testutil"
	"github.com/hookrelay/hookrelay/persist"
	"github.com/hookrelay/hookrelay/protocol"
)

// rawAgent speaks the tunnel protocol by hand, to test the relay without the real agent.
// A goroutine reads frames into a channel, closed when the tunnel ends; it answers the
// relay's keepalive Pings itself, as any agent must, and does not pass them on.
type rawAgent struct {
	t       *testing.T
	tun     protocol.Tunnel
	frames  chan protocol.Frame
	done    chan struct{}
	welcome *protocol.Welcome
	asm     protocol.Assembler
	// recorded gets the ids of each Recorded frame (version 2), which the reader does not
	// pass on as frames: they may come between any two others.
	recorded chan []string
}

// startRawAgent reads tun's frames into a new rawAgent until it closes, and sends hello.
func startRawAgent(t *testing.T, tun protocol.Tunnel, hello protocol.Hello) *rawAgent {
	a := &rawAgent{t: t, tun: tun, frames: make(chan protocol.Frame, 1024), done: make(chan struct{}),
		recorded: make(chan []string, 1024)}
	go func() {
		defer close(a.done)
		defer close(a.frames)
		for {
			f, err := tun.ReadFrame()
			if err != nil {
				return
			}
			if p, ok := f.(*protocol.Ping); ok {
				tun.WriteFrame(&protocol.Pong{Nonce: p.Nonce})
				continue
			}
			if r, ok := f.(*protocol.Recorded); ok {
				a.recorded <- r.IDs
				continue
			}
			a.frames <- f
		}
	}()
	t.Cleanup(a.close)
	if hello.Version == 0 {
		hello.Version = protocol.Version
	}
	a.send(&hello)
	return a
}

// connect dials the relay's /v1/tunnel and sends Hello; it does not read the answer.
func connect(t *testing.T, s *Server, hello protocol.Hello) *rawAgent {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	tun, err := protocol.DialWebSocket(ctx, "ws://"+s.Addr()+"/v1/tunnel", protocol.WSDialConfig{})
	if err != nil {
		t.Fatal(err)
	}
	return startRawAgent(t, tun, hello)
}

// dial connects with token and agent id and expects a Welcome.
func dial(t *testing.T, s *Server, token, agentID string, endpoints ...string) *rawAgent {
	t.Helper()
	a := connect(t, s, protocol.Hello{AgentID: agentID, Token: token, Endpoints: endpoints})
	w, ok := a.frame().(*protocol.Welcome)
	if !ok {
		t.Fatalf("no welcome for agent %s", agentID)
	}
	a.welcome = w
	return a
}

func (a *rawAgent) close() {
	a.tun.Close()
	<-a.done
}

func (a *rawAgent) send(f protocol.Frame) {
	a.t.Helper()
	if err := a.tun.WriteFrame(f); err != nil {
		a.t.Fatalf("send %T: %v", f, err)
	}
}

// frame returns the next frame, or nil once the tunnel has ended; it fails after 10s.
func (a *rawAgent) frame() protocol.Frame {
	a.t.Helper()
	select {
	case f := <-a.frames:
		return f
	case <-time.After(10 * time.Second):
		a.t.Fatal("no frame within 10s")
		return nil
	}
}

// webhook returns the next whole webhook; any other frame fails the test.
func (a *rawAgent) webhook() *protocol.Webhook {
	a.t.Helper()
	for {
		f := a.frame()
		switch f.(type) {
		case *protocol.Webhook, *protocol.Chunk:
			w, done, err := a.asm.Add(f)
			if err != nil {
				a.t.Fatal(err)
			}
			if done {
				return w
			}
		default:
			a.t.Fatalf("got %#v, want a webhook", f)
		}
	}
}

// sync sends a Ping and returns the webhooks that arrived before its Pong. The relay answers
// after handling every frame sent before the Ping (Pongs may overtake queued webhooks).
func (a *rawAgent) sync() []*protocol.Webhook {
	a.t.Helper()
	a.send(&protocol.Ping{Nonce: 42})
	var got []*protocol.Webhook
	for {
		f := a.frame()
		if p, ok := f.(*protocol.Pong); ok && p.Nonce == 42 {
			return got
		}
		w, done, err := a.asm.Add(f)
		if err != nil {
			a.t.Fatalf("got %#v before the pong: %v", f, err)
		}
		if done {
			got = append(got, w)
		}
	}
}

// ended waits for the tunnel to end and returns the frames sent before.
func (a *rawAgent) ended() []protocol.Frame {
	a.t.Helper()
	var got []protocol.Frame
	for {
		f := a.frame()
		if f == nil {
			return got
		}
		got = append(got, f)
	}
}

func state(t *testing.T, s *Server, id string) persist.State {
	t.Helper()
	r, err := s.Store().Get(t.Context(), id)
	if err != nil {
		t.Fatal(err)
	}
	return r.State
}

func TestTunnelRefusesWrongToken(t *testing.T) {
	s := startServer(t, func(c *Config) {
		c.Endpoints = append(c.Endpoints, Endpoint{Name: "other", Tokens: []string{hashOf(tokenB)}})
	})
	accept(t, s, "/h/ep", []byte("secret"))
	for name, hello := range map[string]protocol.Hello{
		"wrong token":           {AgentID: "x", Token: "hr_wrong"},
		"empty token":           {AgentID: "x"},
		"endpoint not allowed":  {AgentID: "x", Token: tokenB, Endpoints: []string{"ep"}},
		"unknown endpoint only": {AgentID: "x", Token: tokenA, Endpoints: []string{"nope"}},
	} {
		a := connect(t, s, hello)
		got := a.ended()
		if len(got) != 1 {
			t.Fatalf("%s: got %d frames %v, want one Error", name, len(got), got)
		}
		if e, ok := got[0].(*protocol.Error); !ok || e.Code != protocol.CodeUnauthorized {
			t.Errorf("%s: got %#v, want Error{unauthorized}", name, got[0])
		}
	}
	a := connect(t, s, protocol.Hello{Version: 99, AgentID: "x", Token: tokenA})
	if got := a.ended(); len(got) != 1 || got[0].(*protocol.Error).Code != protocol.CodeVersion {
		t.Errorf("wrong version: got %v, want one Error{version}", got)
	}
}

func TestTunnelDeliversBeforeAndAfterConnect(t *testing.T) {
	s := startServer(t, nil)
	big := make([]byte, 3*protocol.DefaultChunk+17) // several Chunk frames
	for i := range big {
		big[i] = byte(i % 251)
	}
	before := accept(t, s, "/h/ep/a%2Fb?x=1", []byte("first"))
	bigID := accept(t, s, "/h/ep", big)
	a := dial(t, s, tokenA, "edge-1")
	if fmt.Sprint(a.welcome.Endpoints) != "[ep]" || a.welcome.Window != DefaultWindow || a.welcome.SessionID == "" {
		t.Errorf("welcome %+v", a.welcome)
	}
	w := a.webhook()
	if w.ID != before || w.Endpoint != "ep" || w.Method != "POST" || w.Path != "/a%2Fb" || w.Query != "x=1" ||
		string(w.Body) != "first" || w.Replay || w.ReceivedAt.IsZero() {
		t.Errorf("first webhook %+v", w)
	}
	if len(w.Headers) == 0 || !strings.Contains(fmt.Sprint(w.Headers), "Content-Length") {
		t.Errorf("headers not sent: %v", w.Headers)
	}
	if w := a.webhook(); w.ID != bigID || !bytes.Equal(w.Body, big) {
		t.Errorf("big webhook %s: %d bytes, want %s %d bytes", w.ID, len(w.Body), bigID, len(big))
	}
	after := accept(t, s, "/h/ep", []byte("second"))
	if w := a.webhook(); w.ID != after || string(w.Body) != "second" {
		t.Errorf("webhook posted after connect: %s %q", w.ID, w.Body)
	}
	a.send(&protocol.Ack{IDs: []string{before, bigID, after}})
	for _, id := range []string{before, bigID, after} {
		testutil.WaitFor(t, 10*time.Second, "acked state", func() bool { return state(t, s, id) == persist.StateAcked })
	}
	if got := s.Agents(); len(got) != 1 || got[0].AgentID != "edge-1" || got[0].Transport != "websocket" {
		t.Errorf("agents %+v", got)
	}
}

func TestTunnelRedeliversUnacked(t *testing.T) {
	s := startServer(t, nil)
	id1 := accept(t, s, "/h/ep", []byte("1"))
	id2 := accept(t, s, "/h/ep", []byte("2"))
	a := dial(t, s, tokenA, "edge-1")
	if a.webhook().ID != id1 || a.webhook().ID != id2 {
		t.Fatal("webhooks out of order")
	}
	a.send(&protocol.Ack{IDs: []string{id1}})
	testutil.WaitFor(t, 10*time.Second, "ack", func() bool { return state(t, s, id1) == persist.StateAcked })
	a.close()

	b := dial(t, s, tokenA, "edge-1")
	if w := b.webhook(); w.ID != id2 || string(w.Body) != "2" {
		t.Fatalf("after reconnect got %s, want the unacked %s", w.ID, id2)
	}
	b.send(&protocol.Ack{IDs: []string{id2}})
	id3 := accept(t, s, "/h/ep", []byte("3"))
	if w := b.webhook(); w.ID != id3 {
		t.Fatalf("got %s, want the new %s (an acked webhook was sent again?)", w.ID, id3)
	}
}

// Acks are held back a moment (a report may make them moot); one held when the session
// ends is still recorded, so the webhook is not sent again.
func TestTunnelHeldAckRecordedAtSessionEnd(t *testing.T) {
	s := startServer(t, nil)
	id := accept(t, s, "/h/ep", []byte("1"))
	a := dial(t, s, tokenA, "edge-1")
	a.webhook()
	a.send(&protocol.Ack{IDs: []string{id}})
	a.close() // at once: well within ackHold
	testutil.WaitFor(t, 10*time.Second, "ack recorded", func() bool { return state(t, s, id) == persist.StateAcked })
	b := dial(t, s, tokenA, "edge-1")
	next := accept(t, s, "/h/ep", []byte("2"))
	if w := b.webhook(); w.ID != next {
		t.Fatalf("got %s, want the new %s (the acked webhook was sent again)", w.ID, next)
	}
}

func TestTunnelTwoAgentsShareEndpoint(t *testing.T) {
	s := startServer(t, nil)
	agents := []*rawAgent{dial(t, s, tokenA, "edge-1"), dial(t, s, tokenA, "edge-2")}
	const n = 40
	var mu sync.Mutex
	seen := map[string]int{}
	var wg sync.WaitGroup
	stop := make(chan struct{})
	for _, a := range agents {
		wg.Go(func() {
			for {
				select {
				case <-stop:
					return
				case f, ok := <-a.frames:
					if !ok {
						return
					}
					if w, ok := f.(*protocol.Webhook); ok { // small bodies: no chunks
						a.tun.WriteFrame(&protocol.Ack{IDs: []string{w.ID}})
						mu.Lock()
						seen[w.ID]++
						mu.Unlock()
					}
				}
			}
		})
	}
	var ids []string
	for i := range n {
		ids = append(ids, accept(t, s, "/h/ep", []byte(fmt.Sprint(i))))
	}
	for _, id := range ids {
		testutil.WaitFor(t, 10*time.Second, "every webhook acked", func() bool { return state(t, s, id) == persist.StateAcked })
	}
	close(stop)
	wg.Wait()
	mu.Lock()
	defer mu.Unlock()
	for _, id := range ids {
		if seen[id] != 1 {
			t.Errorf("webhook %s went out %d times, want once", id, seen[id])
		}
	}
	if len(seen) != n {
		t.Errorf("%d webhooks went out, want %d", len(seen), n)
	}
}

func TestTunnelWindow(t *testing.T) {
	s := startServer(t, func(c *Config) { c.Window = 3 })
	var ids []string
	for i := range 10 {
		ids = append(ids, accept(t, s, "/h/ep", []byte(fmt.Sprint(i))))
	}
	a := dial(t, s, tokenA, "slow")
	if a.welcome.Window != 3 {
		t.Errorf("welcome window %d, want 3", a.welcome.Window)
	}
	got := []*protocol.Webhook{a.webhook(), a.webhook(), a.webhook()}
	got = append(got, a.sync()...)
	if len(got) != 3 || s.Agents()[0].InFlight != 3 {
		t.Fatalf("an agent that never acks got %d webhooks (%d in flight), want the window of 3", len(got), s.Agents()[0].InFlight)
	}
	a.send(&protocol.Ack{IDs: []string{got[0].ID, got[1].ID}})
	more := []*protocol.Webhook{a.webhook(), a.webhook()}
	more = append(more, a.sync()...)
	if len(more) != 2 || more[0].ID != ids[3] || more[1].ID != ids[4] {
		t.Fatalf("after acking 2, got %d more webhooks, want the next 2", len(more))
	}
}

// The bodies a session has sent and the agent not yet acked stay near maxInflightBytes,
// however large the window: an agent holds them in memory until its commit.
func TestTunnelInflightBytes(t *testing.T) {
	s := startServer(t, nil) // window 256
	body := bytes.Repeat([]byte("x"), 256<<10)
	const n = 40 // 10 MiB
	for range n {
		accept(t, s, "/h/ep", body)
	}
	a := dial(t, s, tokenA, "slow")
	perBody := int64(len(body))
	most := int((maxInflightBytes + leaseBatch*perBody) / perBody) // one lease round may go over
	least := int(maxInflightBytes / perBody)
	inFlight := func() int { return s.Agents()[0].InFlight }
	var got []*protocol.Webhook
	for len(got) < least {
		got = append(got, a.webhook())
	}
	time.Sleep(300 * time.Millisecond) // what else the dispatcher would send
	if f := inFlight(); f > most || f < least {
		t.Fatalf("%d webhooks of %d KiB in flight to an agent that does not ack, want %d to %d (%d MiB)",
			f, perBody>>10, least, most, maxInflightBytes>>20)
	}
	for len(got) < inFlight() {
		got = append(got, a.webhook())
	}
	var acks []string
	for _, w := range got[:least/2] {
		acks = append(acks, w.ID)
	}
	before := inFlight()
	a.send(&protocol.Ack{IDs: acks})
	testutil.WaitFor(t, 10*time.Second, "more webhooks once some are acked", func() bool {
		return inFlight() > before-len(acks)
	})
}

func TestTunnelSameAgentReplaced(t *testing.T) {
	s := startServer(t, nil)
	old := dial(t, s, tokenA, "edge-1")
	id := accept(t, s, "/h/ep", []byte("x"))
	if old.webhook().ID != id {
		t.Fatal("old session did not get the webhook")
	}
	nu := dial(t, s, tokenA, "edge-1")
	got := old.ended()
	if len(got) != 1 {
		t.Fatalf("old session got %v, want one Error{replaced}", got)
	}
	if e, ok := got[0].(*protocol.Error); !ok || e.Code != protocol.CodeReplaced {
		t.Fatalf("old session got %#v, want Error{replaced}", got[0])
	}
	if w := nu.webhook(); w.ID != id {
		t.Fatalf("new session got %s, want the old session's unacked %s", w.ID, id)
	}
	if a := s.Agents(); len(a) != 1 || a[0].SessionID != nu.welcome.SessionID {
		t.Errorf("agents %+v, want only the new session", a)
	}
}

func TestTunnelReportAndNack(t *testing.T) {
	s := startServer(t, nil)
	a := dial(t, s, tokenA, "edge-1")
	ok := accept(t, s, "/h/ep", []byte("ok"))
	a.webhook()
	a.send(&protocol.Ack{IDs: []string{ok}})
	a.send(&protocol.Report{ID: ok, Outcome: protocol.OutcomeDelivered, Status: 200, Attempts: 1, At: time.Now()})
	testutil.WaitFor(t, 10*time.Second, "delivered", func() bool { return state(t, s, ok) == persist.StateDelivered })

	// A report whose ack was lost counts too.
	dead := accept(t, s, "/h/ep", []byte("dead"))
	a.webhook()
	a.send(&protocol.Report{ID: dead, Outcome: protocol.OutcomeDead, Status: 500, Attempts: 20, Error: "max attempts"})
	testutil.WaitFor(t, 10*time.Second, "dead", func() bool { return state(t, s, dead) == persist.StateDead })
	rec, _ := s.Store().Get(t.Context(), dead)
	if rec.DeadReason == "" || len(rec.Deliveries) == 0 || rec.Deliveries[len(rec.Deliveries)-1].Status != 500 {
		t.Errorf("dead record %+v lacks its reason or delivery", rec)
	}
	// Reports for unknown or finished ids are ignored; the session goes on.
	a.send(&protocol.Report{ID: "nope", Outcome: protocol.OutcomeDelivered})
	a.send(&protocol.Report{ID: dead, Outcome: protocol.OutcomeDelivered})

	nacked := accept(t, s, "/h/ep", []byte("full"))
	a.webhook()
	start := time.Now()
	a.send(&protocol.Nack{ID: nacked, Reason: "disk full", RetryAfter: time.Second})
	if w := a.webhook(); w.ID != nacked {
		t.Fatalf("got %s, want the nacked %s again", w.ID, nacked)
	}
	if d := time.Since(start); d < 900*time.Millisecond {
		t.Errorf("nacked webhook came back after %v, before its retry-after of 1s", d)
	}
	if rec, _ := s.Store().Get(t.Context(), nacked); rec.Attempts != 0 {
		t.Errorf("a nack counted %d attempts, want 0", rec.Attempts)
	}
	if st := state(t, s, dead); st != persist.StateDead {
		t.Errorf("a second report changed a finished record to %v", st)
	}
}

func TestShutdownSendsGoAway(t *testing.T) {
	s, stop := runServer(t, &Config{Addr: "127.0.0.1:0", DataDir: t.TempDir(),
		Endpoints: []Endpoint{{Name: "ep", Tokens: []string{hashOf(tokenA)}}}}, testLogger(t))
	a := dial(t, s, tokenA, "edge-1")
	id := accept(t, s, "/h/ep", []byte("x"))
	if a.webhook().ID != id {
		t.Fatal("no webhook")
	}
	if err := stop(); err != nil {
		t.Fatalf("run after cancel: %v, want nil", err)
	}
	got := a.ended()
	if len(got) != 1 {
		t.Fatalf("got %v at shutdown, want one GoAway", got)
	}
	g, ok := got[0].(*protocol.GoAway)
	if !ok || g.ReconnectAfter < time.Second || g.ReconnectAfter > 5*time.Second {
		t.Fatalf("got %#v, want GoAway with reconnect after 1-5s", got[0])
	}
	if len(s.Agents()) != 0 {
		t.Error("sessions left after shutdown")
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
}

func TestTunnelIgnoresForeignAcksAndReports(t *testing.T) {
	s := startServer(t, func(c *Config) {
		c.Endpoints = append(c.Endpoints, Endpoint{Name: "other", Tokens: []string{hashOf(tokenB)}})
	})
	id := accept(t, s, "/h/ep", []byte("not yours"))
	b := dial(t, s, tokenB, "intruder")
	if fmt.Sprint(b.welcome.Endpoints) != "[other]" {
		t.Fatalf("granted %v, want [other]", b.welcome.Endpoints)
	}
	b.send(&protocol.Ack{IDs: []string{id}})
	b.send(&protocol.Report{ID: id, Outcome: protocol.OutcomeDelivered, Status: 200})
	if got := b.sync(); len(got) != 0 {
		t.Fatalf("an agent of another endpoint got %d webhooks", len(got))
	}
	if st := state(t, s, id); st != persist.StateReady {
		t.Fatalf("another endpoint's agent changed the webhook to %v", st)
	}
	a := dial(t, s, tokenA, "owner")
	if w := a.webhook(); w.ID != id {
		t.Fatalf("owner got %s, want %s", w.ID, id)
	}
}
