package agent

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hookrelay/hookrelay/internal/testutil"
	"github.com/hookrelay/hookrelay/persist"
	"github.com/hookrelay/hookrelay/protocol"
)

func testLogger(t *testing.T) *slog.Logger {
	if testing.Verbose() {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

// newTestAgent makes an agent with a real store in a temp dir, admin on a free port.
func newTestAgent(t *testing.T, relay string, routes ...Route) *Agent {
	t.Helper()
	return newTestAgentWith(t, relay, nil, routes...)
}

// newTestAgentWith is newTestAgent with a chance to change the config (mutate may be nil).
func newTestAgentWith(t *testing.T, relay string, mutate func(*Config), routes ...Route) *Agent {
	t.Helper()
	cfg := &Config{
		Relay:         relay,
		Token:         "secret-token",
		DataDir:       t.TempDir(),
		AdminAddr:     "127.0.0.1:0",
		ShutdownGrace: 200 * time.Millisecond,
		Routes:        routes,
	}
	if mutate != nil {
		mutate(cfg)
	}
	a, err := New(cfg, testLogger(t))
	if err != nil {
		t.Fatalf("new agent: %v", err)
	}
	t.Cleanup(func() { a.Close() })
	return a
}

// testContext is cancelled when the test ends, if not before.
func testContext(t *testing.T) (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	return ctx, cancel
}

// runDeliverers runs only the agent's deliverers (no relay) until the test ends.
func runDeliverers(t *testing.T, a *Agent) {
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	for _, d := range a.routes.all {
		wg.Go(func() { d.run(ctx) })
	}
	t.Cleanup(func() { cancel(); wg.Wait() })
}

// runOnFakeRelay runs an agent delivering to tg (fastRoute) through a new fake relay, until
// the test ends.
func runOnFakeRelay(t *testing.T, tg *target) (*Agent, *fakeRelay) {
	fr := newFakeRelay(t)
	a := newTestAgent(t, fr.url(), fastRoute(tg.URL))
	runAgent(t, a)
	return a, fr
}

// runAgent runs the whole agent until the test ends.
func runAgent(t *testing.T, a *Agent) { testutil.RunUntilCleanup(t, a.Run) }

// seen is one request as the target saw it.
type seen struct {
	Method     string
	RequestURI string
	Header     http.Header
	Body       []byte
	At         time.Time
}

// target is an httptest server recording requests; respond picks the answer to the n-th
// request (1-based) for an id.
type target struct {
	*httptest.Server
	mu      sync.Mutex
	reqs    []seen
	respond func(r *http.Request, n int) (int, http.Header)
	count   map[string]int
}

func newTarget(t *testing.T, respond func(r *http.Request, n int) (int, http.Header)) *target {
	tg := &target{respond: respond, count: map[string]int{}}
	tg.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		id := r.Header.Get("Hookrelay-Id")
		tg.mu.Lock()
		tg.reqs = append(tg.reqs, seen{r.Method, r.RequestURI, r.Header.Clone(), body, time.Now()})
		tg.count[id]++
		n := tg.count[id]
		tg.mu.Unlock()
		status := http.StatusOK
		if tg.respond != nil {
			var h http.Header
			status, h = tg.respond(r, n)
			for k, v := range h {
				w.Header()[k] = v
			}
		}
		w.WriteHeader(status)
	}))
	t.Cleanup(tg.Close)
	return tg
}

// order returns the ids of the requests seen so far, in order, joined by commas.
func (tg *target) order() string {
	var ids []string
	for _, r := range tg.all() {
		ids = append(ids, r.Header.Get("Hookrelay-Id"))
	}
	return strings.Join(ids, ",")
}

// requests returns the requests seen for id so far.
func (tg *target) requests(id string) []seen {
	tg.mu.Lock()
	defer tg.mu.Unlock()
	var out []seen
	for _, r := range tg.reqs {
		if r.Header.Get("Hookrelay-Id") == id {
			out = append(out, r)
		}
	}
	return out
}

func (tg *target) all() []seen {
	tg.mu.Lock()
	defer tg.mu.Unlock()
	return append([]seen(nil), tg.reqs...)
}

// appendRecord stores a webhook in the agent's store as the receiver would.
func appendRecord(t *testing.T, a *Agent, r *persist.Record) {
	t.Helper()
	if r.Method == "" {
		r.Method = http.MethodPost
	}
	if r.ReceivedAt.IsZero() {
		r.ReceivedAt = time.Now()
	}
	if err := a.Store().Append(context.Background(), r); err != nil {
		t.Fatalf("append %s: %v", r.ID, err)
	}
}

// waitState waits until record id is in state st and returns it.
func waitState(t *testing.T, a *Agent, id string, st persist.State) *persist.Record {
	t.Helper()
	var rec *persist.Record
	testutil.CheckFor(t, 10*time.Second, 10*time.Millisecond, func() error {
		r, err := a.Store().Get(id)
		if err != nil {
			return err
		}
		if r.State != st {
			return fmt.Errorf("%s is %v, want %v", id, r.State, st)
		}
		rec = r
		return nil
	})
	return rec
}

// fakeRelay accepts agent tunnels at /v1/tunnel; the test plays the relay on each.
type fakeRelay struct {
	*httptest.Server
	conns chan *relayConn
}

// relayConn is one accepted tunnel; a goroutine reads its frames into frames.
type relayConn struct {
	tun    protocol.Tunnel
	frames chan protocol.Frame
}

func newFakeRelay(t *testing.T) *fakeRelay {
	fr := &fakeRelay{conns: make(chan *relayConn, 16)}
	var wg sync.WaitGroup
	var mu sync.Mutex
	var tuns []protocol.Tunnel
	fr.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/v1/tunnel" {
			http.NotFound(w, r)
			return
		}
		tun, err := protocol.AcceptWebSocket(w, r, protocol.WSConfig{})
		if err != nil {
			t.Errorf("accept: %v", err)
			return
		}
		mu.Lock()
		tuns = append(tuns, tun)
		mu.Unlock()
		c := &relayConn{tun: tun, frames: make(chan protocol.Frame, 1024)}
		wg.Go(func() {
			defer close(c.frames)
			for {
				f, err := tun.ReadFrame()
				if err != nil {
					return
				}
				c.frames <- f
			}
		})
		fr.conns <- c
	}))
	t.Cleanup(func() {
		mu.Lock()
		for _, tun := range tuns {
			tun.Close()
		}
		mu.Unlock()
		fr.Close()
		wg.Wait()
	})
	return fr
}

func (fr *fakeRelay) url() string { return "ws://" + strings.TrimPrefix(fr.URL, "http://") }

// accept waits for the agent's next tunnel and its Hello.
func (fr *fakeRelay) accept(t *testing.T) (*relayConn, *protocol.Hello) {
	t.Helper()
	select {
	case c := <-fr.conns:
		f := c.next(t)
		h, ok := f.(*protocol.Hello)
		if !ok {
			t.Fatalf("first frame is %T, want Hello", f)
		}
		return c, h
	case <-time.After(15 * time.Second):
		t.Fatal("no tunnel from the agent")
	}
	return nil, nil
}

// welcome accepts a tunnel and welcomes it for the endpoints it asked for.
func (fr *fakeRelay) welcome(t *testing.T) *relayConn {
	t.Helper()
	c, h := fr.accept(t)
	c.write(t, &protocol.Welcome{SessionID: "s1", Endpoints: h.Endpoints, Window: 100, MaxFrame: protocol.DefaultMaxFrame, ServerTime: time.Now()})
	return c
}

func (c *relayConn) write(t *testing.T, f protocol.Frame) {
	t.Helper()
	if err := c.tun.WriteFrame(f); err != nil {
		t.Fatalf("relay write %T: %v", f, err)
	}
}

func (c *relayConn) send(t *testing.T, w *protocol.Webhook) {
	t.Helper()
	if err := protocol.SendWebhook(c.tun, w, 0); err != nil {
		t.Fatalf("relay send webhook: %v", err)
	}
}

// next returns the next frame from the agent.
func (c *relayConn) next(t *testing.T) protocol.Frame {
	t.Helper()
	select {
	case f, ok := <-c.frames:
		if !ok {
			t.Fatal("tunnel closed by the agent")
		}
		return f
	case <-time.After(15 * time.Second):
		t.Fatal("no frame from the agent")
	}
	return nil
}

// nextOf returns the next frame of type T; the frames before it go to skip when set.
func nextOf[T protocol.Frame](t *testing.T, c *relayConn, skip func(protocol.Frame)) T {
	t.Helper()
	for {
		f := c.next(t)
		if v, ok := f.(T); ok {
			return v
		}
		if skip != nil {
			skip(f)
		}
	}
}
