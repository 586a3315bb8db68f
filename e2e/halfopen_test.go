package e2e

import (
	"bufio"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/hookrelay/hookrelay/internal/testutil"
)

// deadAfter is how long a silent peer may take to be noticed (protocol.Conn's DeadAfter);
// detectSlack covers scheduling and polling on a loaded machine.
const (
	deadAfter   = 15 * time.Second
	detectSlack = 5 * time.Second
)

// TestHalfOpenTunnel: a peer that vanishes without a FIN or RST (a cable pulled, a NAT entry
// dropped) is noticed on both sides within 15 s, on WebSocket and on QUIC. The agent runs in
// its own network namespace, joined to the relay's by a veth pair; once its tunnel is up,
// iptables drops every packet in and out of that namespace. The relay must drop the session
// (gone from /admin/api/agents) and the agent must log its tunnel down, both within 15 s
// (+ slack). Webhooks accepted during the cut are delivered once the rules are removed and
// the agent reconnects.
func TestHalfOpenTunnel(t *testing.T) {
	for _, tr := range []string{"ws", "quic"} {
		t.Run(tr, func(t *testing.T) { halfOpen(t, tr) })
	}
}

func halfOpen(t *testing.T, tr string) {
	ns := newNetns(t)
	w := &world{t: t, dir: t.TempDir(), transport: tr, host: ns.hostIP, relayPort: testutil.FreePort(t), quicPort: testutil.FreePort(t)}
	w.target = newTargetAt(t, 0, ns.hostIP) // the agent reaches it over the veth pair
	token, hash := newToken(t)
	adminToken, adminHash := newToken(t)
	w.token = token
	w.client = &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 64, Proxy: nil}}
	adminAddr := fmt.Sprintf("127.0.0.1:%d", testutil.FreePort(t))
	cfg := writeFile(t, filepath.Join(w.dir, "relay.yaml"), fmt.Sprintf(`addr: %s:%d
quic_addr: %s:%d
admin_addr: %s
admin_token: %q
data_dir: %s
endpoints:
  - name: e2e
    tokens: [%q]
`, ns.hostIP, w.relayPort, ns.hostIP, w.quicPort, adminAddr, adminHash, filepath.Join(w.dir, "relay-data"), hash))
	w.relay = newProc(t, "relay", bin.relay, "serve", "--config", cfg)
	w.relay.start()
	w.waitRelay()
	admin := relayAdmin{client: healthClient, base: "http://" + adminAddr, token: adminToken}
	agents := func() map[string]string {
		t.Helper()
		m, err := admin.agents()
		if err != nil {
			t.Fatalf("relay agents: %v", err)
		}
		return m
	}

	relayURL, fp := fmt.Sprintf("ws://%s:%d", ns.hostIP, w.relayPort), ""
	transport := "websocket"
	if tr == "quic" {
		relayURL, fp, transport = fmt.Sprintf("quic://%s:%d", ns.hostIP, w.quicPort), w.fingerprint(), "quic"
	}
	a := newProc(t, "agent", "ip", "netns", "exec", ns.name, bin.agent, "run", "--config",
		w.agentConfig("cut", relayURL, fp, ""))
	a.start()
	testutil.CheckFor(t, 30*time.Second, 50*time.Millisecond, func() error {
		if got := agents(); got["cut"] != transport {
			return fmt.Errorf("relay lists agents %v, want cut over %s", got, transport)
		}
		return nil
	})
	s := &sender{w: w}
	s.sendN(5, 1)
	if dups := w.verify(s, 30*time.Second); dups != 0 {
		t.Fatalf("%d duplicate deliveries before the cut", dups)
	}

	// Pull the cable: what reaches the agent's namespace, and what reaches ours over the veth
	// pair from it, is dropped on arrival, so no FIN or RST passes. (Dropping the agent's
	// OUTPUT instead would fail its sends with EPERM: a local error, not a silent peer.)
	rules := [][]string{
		{"ip", "netns", "exec", ns.name, "iptables", "-A", "INPUT", "-j", "DROP"},
		{"iptables", "-A", "INPUT", "-i", ns.hostIf, "-j", "DROP"}, // only our veth
	}
	for _, rule := range rules {
		mustRun(t, rule...)
	}
	cut := time.Now()
	uncut := func() {
		for _, rule := range rules {
			del := slices.Clone(rule)
			del[slices.Index(del, "-A")] = "-D"
			exec.Command(del[0], del[1:]...).Run() // also in cleanup, where it may be gone
		}
	}
	t.Cleanup(uncut)
	s.sendN(5, 1) // leased to the half-open session: held there until it is noticed dead

	var relaySaw, agentSaw time.Duration
	testutil.CheckFor(t, deadAfter+detectSlack, 50*time.Millisecond, func() error {
		if relaySaw == 0 {
			if _, ok := agents()["cut"]; !ok {
				relaySaw = time.Since(cut)
			}
		}
		if agentSaw == 0 && len(logMessages(a, "tunnel down")) > 0 {
			agentSaw = time.Since(cut)
		}
		switch {
		case relaySaw == 0 && agentSaw == 0:
			return fmt.Errorf("neither side noticed the cut")
		case relaySaw == 0:
			return fmt.Errorf("the relay still lists the agent (the agent noticed after %v)", agentSaw.Round(time.Millisecond))
		case agentSaw == 0:
			return fmt.Errorf("the agent has not logged its tunnel down (the relay noticed after %v)", relaySaw.Round(time.Millisecond))
		}
		return nil
	})
	t.Logf("%s: the relay noticed the cut after %v, the agent after %v", tr, relaySaw.Round(time.Millisecond),
		agentSaw.Round(time.Millisecond))
	ended, err := admin.sessionsEnded()
	if err != nil {
		t.Fatal(err)
	}
	if n := ended["peer_timeout"] + ended["closed"]; n != 1 || len(ended) != 1 {
		t.Errorf("relay sessions ended by reason %v, want one: peer_timeout, or closed by the transport's idle timeout", ended)
	}
	if tr == "ws" && ended["peer_timeout"] != 1 {
		t.Errorf("relay sessions ended by reason %v, want peer_timeout (a WebSocket has no idle timeout of 15 s)", ended)
	}
	down := logMessages(a, "tunnel down")[0]
	t.Logf("agent: tunnel down: %s", down["reason"])

	// Plug it back: the agent reconnects and gets what was accepted meanwhile.
	uncut()
	if out, err := exec.Command("iptables", "-S", "INPUT").Output(); err != nil || strings.Contains(string(out), ns.hostIf) {
		t.Fatalf("our iptables rule is still there (%v): %s", err, out)
	}
	testutil.CheckFor(t, 60*time.Second, 100*time.Millisecond, func() error {
		if got := agents(); got["cut"] != transport {
			return fmt.Errorf("relay lists agents %v, want cut back over %s", got, transport)
		}
		return nil
	})
	if dups := w.verify(s, 60*time.Second); dups != 0 {
		t.Errorf("%d duplicate deliveries", dups)
	}
}

// mustRun runs a command, failing the test with its output when it fails.
func mustRun(t *testing.T, args ...string) {
	t.Helper()
	if out, err := exec.Command(args[0], args[1:]...).CombinedOutput(); err != nil {
		t.Fatalf("%s: %v: %s", strings.Join(args, " "), err, out)
	}
}

// logMessages returns p's JSON log lines whose msg is msg, in order.
func logMessages(p *proc, msg string) []map[string]any {
	f, err := os.Open(p.log)
	if err != nil {
		return nil
	}
	defer f.Close()
	var out []map[string]any
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		var line map[string]any
		if json.Unmarshal(sc.Bytes(), &line) == nil && line["msg"] == msg {
			out = append(out, line)
		}
	}
	return out
}
