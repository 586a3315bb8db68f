package e2e

import (
	"bytes"
	"cmp"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httptest"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hookrelay/hookrelay/internal/procinfo"
	"github.com/hookrelay/hookrelay/internal/testutil"
)

// world is one relay, one or more agents and a recording target, all on loopback.
type world struct {
	t         testing.TB
	dir       string
	relayPort int
	quicPort  int
	relay     *proc
	agents    []*proc
	target    *target
	token     string
	client    *http.Client
	transport string // agent relay URL scheme: "ws", "quic" or "http" (auto)
	host      string // the relay's IP address; "" = 127.0.0.1
	agentBin  string // the agent binary: bin.agent unless worldOpts says
}

// relayHost is the address the relay's addr listens on.
func (w *world) relayHost() string {
	if w.host == "" {
		return "127.0.0.1"
	}
	return w.host
}

type worldOpts struct {
	transport string        // "ws" (default), "quic", "http"
	agents    int           // default 1
	delay     time.Duration // target answer delay
	extraEP   string        // extra YAML under the endpoint
	relayBin  string        // default bin.relay (a previous release's, in upgrade tests)
	agentBin  string        // default bin.agent
}

func newWorld(t testing.TB, o worldOpts) *world {
	t.Helper()
	if o.transport == "" {
		o.transport = "ws"
	}
	if o.agents == 0 {
		o.agents = 1
	}
	w := &world{t: t, dir: t.TempDir(), transport: o.transport, agentBin: cmp.Or(o.agentBin, bin.agent)}
	w.target = newTarget(t, o.delay)
	w.relayPort, w.quicPort = testutil.FreePort(t), testutil.FreePort(t)
	token, hash := newToken(t)
	w.token = token
	quic := ""
	if o.transport != "ws" {
		quic = fmt.Sprintf("quic_addr: 127.0.0.1:%d\n", w.quicPort)
	}
	relayCfg := writeFile(t, filepath.Join(w.dir, "relay.yaml"), fmt.Sprintf(`addr: 127.0.0.1:%d
%sdata_dir: %s
endpoints:
  - name: e2e
    tokens: [%q]
%s`, w.relayPort, quic, filepath.Join(w.dir, "relay-data"), hash, o.extraEP))
	w.relay = newProc(t, "relay", cmp.Or(o.relayBin, bin.relay), "serve", "--config", relayCfg)
	w.relay.start()
	w.waitRelay()
	for i := range o.agents {
		w.agents = append(w.agents, w.newAgent(i))
	}
	w.client = &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 64, Proxy: nil}}
	return w
}

func (w *world) relayURL() string {
	switch w.transport {
	case "quic":
		return fmt.Sprintf("quic://127.0.0.1:%d", w.quicPort)
	case "http":
		return fmt.Sprintf("http://127.0.0.1:%d", w.relayPort)
	}
	return fmt.Sprintf("ws://127.0.0.1:%d", w.relayPort)
}

func (w *world) newAgent(i int) *proc {
	fp := ""
	if w.transport == "quic" {
		fp = fmt.Sprintf("relay_fingerprint: %q\n", w.fingerprint())
	}
	cfg := writeFile(w.t, filepath.Join(w.dir, fmt.Sprintf("agent%d.yaml", i)), fmt.Sprintf(`relay: %s
token: %q
agent_id: agent-%d
data_dir: %s
admin_addr: 127.0.0.1:0
%sroutes:
  - endpoint: e2e
    target: %s/base
    concurrency: 16
    backoff_min: 50ms
    backoff_max: 500ms
    headers: {X-Agent: agent-%d}
`, w.relayURL(), w.token, i, filepath.Join(w.dir, fmt.Sprintf("agent%d-data", i)), fp, w.target.srv.URL, i))
	p := newProc(w.t, fmt.Sprintf("agent%d", i), w.agentBin, "run", "--config", cfg)
	p.start()
	return p
}

// fingerprint asks the relay binary for its certificate fingerprint.
func (w *world) fingerprint() string {
	out, err := runCmd(bin.relay, "fingerprint", "--config", filepath.Join(w.dir, "relay.yaml"))
	if err != nil {
		w.t.Fatalf("hookrelay fingerprint: %v: %s", err, out)
	}
	return strings.TrimSpace(out)
}

// healthClient polls /healthz directly (no proxy), one connection per poll.
var healthClient = &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{Proxy: nil, DisableKeepAlives: true}}

// waitRelay waits until the relay answers /healthz.
func (w *world) waitRelay() {
	w.t.Helper()
	testutil.CheckFor(w.t, 20*time.Second, 50*time.Millisecond, func() error {
		resp, err := healthClient.Get(fmt.Sprintf("http://%s:%d/healthz", w.relayHost(), w.relayPort))
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode != 200 {
			return fmt.Errorf("healthz %d", resp.StatusCode)
		}
		return nil
	})
}

// sent is one webhook the relay accepted (202).
type sent struct {
	id   string
	seq  int
	body []byte
}

// sender posts webhooks and keeps every accepted one.
type sender struct {
	w    *world
	mu   sync.Mutex
	sent []sent
	seq  atomic.Int64
}

// body makes webhook n's body: mostly 1 KiB of binary, sometimes empty.
func body(n int) []byte {
	if n%37 == 0 {
		return nil
	}
	b := make([]byte, 1024)
	r := rand.New(rand.NewPCG(uint64(n), 7))
	for i := range b {
		b[i] = byte(r.UintN(256))
	}
	return b
}

// send posts one webhook, retrying while the relay is down or answers 503, until it gets 202
// or giveUp passes. It reports whether the webhook was accepted.
func (s *sender) send(giveUp time.Duration) bool {
	n := int(s.seq.Add(1))
	b := body(n)
	url := fmt.Sprintf("http://%s:%d/h/e2e/deep/path?n=%d&x=%%2F", s.w.relayHost(), s.w.relayPort, n)
	end := time.Now().Add(giveUp)
	for time.Now().Before(end) {
		req, _ := http.NewRequest("POST", url, bytes.NewReader(b))
		req.Header.Set("Content-Type", "application/octet-stream")
		req.Header.Add("X-Multi", "one")
		req.Header.Add("X-Multi", "two")
		req.Header.Set("X-Seq", fmt.Sprint(n))
		resp, err := s.w.client.Do(req)
		if err != nil {
			time.Sleep(20 * time.Millisecond)
			continue
		}
		var got struct{ ID string }
		json.NewDecoder(resp.Body).Decode(&got)
		resp.Body.Close()
		if resp.StatusCode == 202 && got.ID != "" {
			s.mu.Lock()
			s.sent = append(s.sent, sent{id: got.ID, seq: n, body: b})
			s.mu.Unlock()
			return true
		}
		if resp.StatusCode != 503 && resp.StatusCode != 429 {
			s.w.t.Errorf("ingress answered %d", resp.StatusCode)
			return false
		}
		time.Sleep(20 * time.Millisecond)
	}
	return false
}

// sendN sends n webhooks from c concurrent senders.
func (s *sender) sendN(n, c int) {
	var wg sync.WaitGroup
	var left atomic.Int64
	left.Store(int64(n))
	for range c {
		wg.Go(func() {
			for left.Add(-1) >= 0 {
				if !s.send(60 * time.Second) {
					s.w.t.Errorf("a webhook was never accepted")
				}
			}
		})
	}
	wg.Wait()
}

func (s *sender) accepted() []sent {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.sent)
}

// target records every request it gets.
type target struct {
	srv   *httptest.Server
	delay time.Duration
	mu    sync.Mutex
	got   map[string][]arrival // by hookrelay-id
	total int
	hook  atomic.Value // http.Handler that takes over (benchmarks)
}

type arrival struct {
	method, uri string
	header      http.Header
	body        []byte
}

func newTarget(t testing.TB, delay time.Duration) *target {
	return newTargetAt(t, delay, "")
}

// newTargetAt is newTarget listening on host ("" = 127.0.0.1), e.g. an address an agent in a
// network namespace can reach.
func newTargetAt(t testing.TB, delay time.Duration, host string) *target {
	tg := &target{delay: delay, got: map[string][]arrival{}}
	tg.srv = httptest.NewUnstartedServer(http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		if h, ok := tg.hook.Load().(http.Handler); ok {
			h.ServeHTTP(rw, r)
			return
		}
		b, err := io.ReadAll(r.Body)
		if err != nil {
			rw.WriteHeader(500)
			return
		}
		if tg.delay > 0 {
			time.Sleep(tg.delay)
		}
		tg.mu.Lock()
		id := r.Header.Get("hookrelay-id")
		tg.got[id] = append(tg.got[id], arrival{r.Method, r.RequestURI, r.Header.Clone(), b})
		tg.total++
		tg.mu.Unlock()
		rw.WriteHeader(200)
	}))
	if host != "" {
		ln, err := net.Listen("tcp", net.JoinHostPort(host, "0"))
		if err != nil {
			t.Fatal(err)
		}
		tg.srv.Listener.Close()
		tg.srv.Listener = ln
	}
	tg.srv.Start()
	t.Cleanup(tg.srv.Close)
	return tg
}

// verify checks that every accepted webhook reached the target byte-exact, and returns how
// many extra (duplicate) deliveries there were. It waits up to total for missing ones.
func (w *world) verify(s *sender, total time.Duration) (dups int) {
	w.t.Helper()
	acc := s.accepted()
	testutil.CheckFor(w.t, total, 100*time.Millisecond, func() error {
		w.target.mu.Lock()
		defer w.target.mu.Unlock()
		missing := 0
		for _, a := range acc {
			if len(w.target.got[a.id]) == 0 {
				missing++
			}
		}
		if missing > 0 {
			return fmt.Errorf("%d of %d accepted webhooks have not reached the target (it got %d requests)", missing, len(acc), w.target.total)
		}
		return nil
	})
	w.target.mu.Lock()
	defer w.target.mu.Unlock()
	for _, a := range acc {
		for _, r := range w.target.got[a.id] {
			wantURI := fmt.Sprintf("/base/deep/path?n=%d&x=%%2F", a.seq)
			switch {
			case r.method != "POST":
				w.t.Errorf("%s: method %s", a.id, r.method)
			case r.uri != wantURI:
				w.t.Errorf("%s: target URI %q, want %q", a.id, r.uri, wantURI)
			case !bytes.Equal(r.body, a.body):
				w.t.Errorf("%s: body not byte-exact (%d bytes, want %d)", a.id, len(r.body), len(a.body))
			case !slices.Equal(r.header.Values("X-Multi"), []string{"one", "two"}):
				w.t.Errorf("%s: X-Multi %q", a.id, r.header.Values("X-Multi"))
			case r.header.Get("X-Seq") != fmt.Sprint(a.seq):
				w.t.Errorf("%s: X-Seq %q want %d", a.id, r.header.Get("X-Seq"), a.seq)
			case r.header.Get("webhook-id") != a.id:
				w.t.Errorf("%s: webhook-id %q", a.id, r.header.Get("webhook-id"))
			case r.header.Get("hookrelay-attempt") == "":
				w.t.Errorf("%s: no hookrelay-attempt", a.id)
			case r.header.Get("Content-Type") != "application/octet-stream":
				w.t.Errorf("%s: content-type %q", a.id, r.header.Get("Content-Type"))
			}
		}
		dups += len(w.target.got[a.id]) - 1
	}
	return dups
}

// runCmd runs a command and returns its stdout; stderr goes into the error.
func runCmd(name string, args ...string) (string, error) {
	var out, errb bytes.Buffer
	cmd := exec.Command(name, args...)
	cmd.Env = procinfo.CleanEnv()
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		return out.String(), fmt.Errorf("%w: %s", err, errb.String())
	}
	return out.String(), nil
}
