package e2e

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hookrelay/hookrelay/internal/procinfo"
	"github.com/hookrelay/hookrelay/internal/testutil"
)

// smeeClientBin is the real npm smee-client's CLI, installed by `npm ci` in e2e/clients
// (.ci/run does it).
const smeeClientBin = "clients/node_modules/smee-client/bin/smee.js"

// TestSmeeClient drives the real npm smee-client 5.0.0 against a relay binary: it forwards
// 100 webhooks to its target (JSON-equal bodies, the sender's headers and query); the
// webhooks sent while it is killed arrive once it is started again; and the agent on the
// same endpoint gets every webhook exactly once while the stream is attached.
func TestSmeeClient(t *testing.T) {
	node, err := exec.LookPath("node")
	if err != nil {
		testutil.Missing(t, "node is not installed (apt-get install nodejs npm)")
	}
	// smee-client 5 needs node ^20.18 or >= 22 (its undici 7); Debian 12's nodejs is 18.
	if exec.Command(node, "-e", "const [a, b] = process.versions.node.split('.').map(Number); process.exit(a > 20 || (a == 20 && b >= 18) ? 0 : 1)").Run() != nil {
		testutil.Missing(t, "node is older than 20.18, which smee-client 5 needs")
	}
	if _, err := os.Stat(smeeClientBin); err != nil {
		testutil.Missing(t, "smee-client is not installed: run `npm ci` in e2e/clients")
	}
	const name = "smee-e2e-channel-0123456789"
	dir := t.TempDir()
	token, hash := newToken(t)
	port := testutil.FreePort(t)
	relayCfg := writeFile(t, filepath.Join(dir, "relay.yaml"), fmt.Sprintf(`addr: 127.0.0.1:%d
data_dir: %s
endpoints:
  - name: %s
    tokens: [%q]
    smee: true
channels: {enabled: true}
`, port, filepath.Join(dir, "relay-data"), name, hash))
	relay := newProc(t, "relay", bin.relay, "serve", "--config", relayCfg)
	relay.start()
	w := &world{t: t, relayPort: port}
	w.waitRelay()

	agentTarget, smeeTarget := newTarget(t, 0), newTarget(t, 0)
	agentCfg := writeFile(t, filepath.Join(dir, "agent.yaml"), fmt.Sprintf(`relay: ws://127.0.0.1:%d
token: %q
agent_id: smee-agent
data_dir: %s
admin_addr: 127.0.0.1:0
routes:
  - endpoint: %s
    target: %s/agent
`, port, token, filepath.Join(dir, "agent-data"), name, agentTarget.srv.URL))
	newProc(t, "agent", bin.agent, "run", "--config", agentCfg).start()

	source := fmt.Sprintf("http://127.0.0.1:%d/h/%s", port, name)
	smee := newProc(t, "smee-client", node, smeeClientBin, "--url", source, "--target", smeeTarget.srv.URL+"/smee")
	startSmee := func() {
		t.Helper()
		smee.start()
		testutil.WaitFor(t, 20*time.Second, "smee-client to connect", func() bool {
			log := readLog(smee)
			return bytes.Count(log, []byte("Connected to")) == bytes.Count(log, []byte("=== start "))
		})
	}
	startSmee()

	client := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{Proxy: nil}}
	var mu sync.Mutex
	sent := map[string]any{} // id → the body's JSON value
	send := func(from, to int) {
		var wg sync.WaitGroup
		for i := from; i < to; i++ {
			wg.Go(func() {
				body := fmt.Appendf(nil, `{"n": %d, "ref": "refs/heads/main", "commits": [{"id": "%040d", "msg": "line\nbreak <&>"}], "ok": true, "none": null}`, i, i)
				req, _ := http.NewRequest("POST", fmt.Sprintf("%s?n=%d", source, i), bytes.NewReader(body))
				req.Header.Set("Content-Type", "application/json")
				req.Header.Set("X-GitHub-Event", "push")
				req.Header.Set("X-GitHub-Delivery", fmt.Sprintf("delivery-%d", i))
				resp, err := client.Do(req)
				if err != nil {
					t.Error(err)
					return
				}
				var out struct{ ID string }
				json.NewDecoder(resp.Body).Decode(&out)
				resp.Body.Close()
				if resp.StatusCode != http.StatusAccepted || out.ID == "" {
					t.Errorf("POST webhook %d: %d", i, resp.StatusCode)
					return
				}
				var v any
				json.Unmarshal(body, &v)
				mu.Lock()
				sent[out.ID] = v
				mu.Unlock()
			})
			if i%8 == 7 {
				wg.Wait() // 8 at a time: concurrent ingress, ids out of request order
			}
		}
		wg.Wait()
	}
	// checkSmee waits until every webhook sent reached the smee target, JSON-equal, with the
	// headers and query smee-client keeps.
	checkSmee := func() {
		t.Helper()
		testutil.CheckFor(t, 60*time.Second, 50*time.Millisecond, func() error {
			smeeTarget.mu.Lock()
			defer smeeTarget.mu.Unlock()
			mu.Lock()
			defer mu.Unlock()
			for id, want := range sent {
				got := smeeTarget.got[id]
				if len(got) == 0 {
					return fmt.Errorf("webhook %s not forwarded by smee-client (%d of %d ids seen)", id, len(smeeTarget.got), len(sent))
				}
				a := got[0]
				var v any
				if err := json.Unmarshal(a.body, &v); err != nil || !reflect.DeepEqual(v, want) {
					t.Fatalf("webhook %s: smee-client forwarded %q, want JSON equal to %v", id, a.body, want)
				}
				n := int(want.(map[string]any)["n"].(float64))
				if a.header.Get("X-GitHub-Event") != "push" || a.header.Get("X-GitHub-Delivery") != fmt.Sprintf("delivery-%d", n) ||
					a.uri != fmt.Sprintf("/smee?n=%d", n) {
					t.Fatalf("webhook %s: forwarded to %s with headers %v", id, a.uri, a.header)
				}
			}
			return nil
		})
	}
	// checkAgent waits until the agent delivered every webhook sent, and fails on a second
	// delivery of any.
	checkAgent := func() {
		t.Helper()
		testutil.CheckFor(t, 60*time.Second, 50*time.Millisecond, func() error {
			agentTarget.mu.Lock()
			defer agentTarget.mu.Unlock()
			mu.Lock()
			defer mu.Unlock()
			for id := range sent {
				if len(agentTarget.got[id]) == 0 {
					return fmt.Errorf("webhook %s not delivered by the agent", id)
				}
			}
			for id, got := range agentTarget.got {
				if len(got) != 1 {
					t.Fatalf("agent delivered webhook %s %d times, want once", id, len(got))
				}
			}
			return nil
		})
	}

	send(0, 100)
	checkSmee()
	checkAgent()

	// The client goes away (kill -9); webhooks sent meanwhile wait on the relay. Started again
	// (no Last-Event-ID: a new process), it first gets what arrived since its stream ended.
	smee.kill()
	send(100, 120)
	startSmee()
	checkSmee()
	checkAgent()
	if len(sent) != 120 {
		t.Fatalf("%d webhooks accepted, want 120", len(sent))
	}

	// smee-client's own createChannel (HEAD /new, the Location header) gets a channel.
	cmd := exec.Command(node, "--input-type=module", "-e",
		"import C from 'smee-client'; console.log(await C.createChannel({newChannelUrl: process.argv[1]}))",
		fmt.Sprintf("http://127.0.0.1:%d/new", port))
	cmd.Dir, cmd.Env = "clients", procinfo.CleanEnv()
	out, err := cmd.CombinedOutput()
	channel := strings.TrimSpace(string(out))
	prefix := fmt.Sprintf("http://127.0.0.1:%d/h/", port)
	if err != nil || !strings.HasPrefix(channel, prefix) || len(channel)-len(prefix) < 20 {
		t.Fatalf("smee-client createChannel: %v: %q, want a URL under %s", err, out, prefix)
	}
	resp, err := client.Post(channel, "application/json", strings.NewReader(`{"to":"channel"}`))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusAccepted {
		t.Errorf("POST to the new channel: %d, want 202", resp.StatusCode)
	}
}

func readLog(p *proc) []byte {
	b, _ := os.ReadFile(p.log)
	return b
}
