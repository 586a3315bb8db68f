package e2e

import (
	"bufio"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/hookrelay/hookrelay/internal/testutil"
)

// autoAgent starts another agent of w's endpoint toward relayURL, with relay_fingerprint fp
// when set and extra YAML lines.
func (w *world) autoAgent(name, relayURL, fp, extra string) *proc {
	w.t.Helper()
	p := newProc(w.t, name, bin.agent, "run", "--config", w.agentConfig(name, relayURL, fp, extra))
	p.start()
	return p
}

// agentConfig writes the config of agent name (see autoAgent) and returns its path.
func (w *world) agentConfig(name, relayURL, fp, extra string) string {
	w.t.Helper()
	pin := ""
	if fp != "" {
		pin = fmt.Sprintf("relay_fingerprint: %q\n", fp)
	}
	return writeFile(w.t, filepath.Join(w.dir, name+".yaml"), fmt.Sprintf(`relay: %s
token: %q
agent_id: %s
data_dir: %s
admin_addr: 127.0.0.1:0
%s%sroutes:
  - endpoint: e2e
    target: %s/base
    concurrency: 16
    backoff_min: 50ms
    backoff_max: 500ms
`, relayURL, w.token, name, filepath.Join(w.dir, name+"-data"), pin, extra, w.target.srv.URL))
}

// transportChoices returns the reasons an agent logged for choosing transport tr, in order.
func transportChoices(p *proc, tr string) []string {
	f, err := os.Open(p.log)
	if err != nil {
		return nil
	}
	defer f.Close()
	var reasons []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		var line struct{ Msg, Transport, Reason string }
		if json.Unmarshal(sc.Bytes(), &line) == nil && line.Msg == "tunnel transport" && line.Transport == tr {
			reasons = append(reasons, line.Reason)
		}
	}
	return reasons
}

// waitChoice waits until p logs that it uses transport tr for a reason containing why.
func waitChoice(t *testing.T, p *proc, tr, why string) {
	t.Helper()
	testutil.CheckFor(t, 30*time.Second, 50*time.Millisecond, func() error {
		reasons := transportChoices(p, tr)
		for _, r := range reasons {
			if strings.Contains(r, why) {
				return nil
			}
		}
		return fmt.Errorf("%s has not logged transport %s because %q (reasons logged: %q)", p.name, tr, why, reasons)
	})
}

func stopAgent(t *testing.T, p *proc) {
	t.Helper()
	if !p.signal(syscall.SIGTERM, 20*time.Second) {
		t.Fatalf("%s did not stop", p.name)
	}
}

// TestAutoMode: an http:// relay URL takes QUIC only when the relay has a quic_addr and the
// agent can verify its certificate (here: pinned); otherwise WebSocket, saying why. Every
// accepted webhook arrives either way.
func TestAutoMode(t *testing.T) {
	t.Run("pinned", func(t *testing.T) {
		w := newWorld(t, worldOpts{transport: "http"})
		stopAgent(t, w.agents[0])
		a := w.autoAgent("auto", w.relayURL(), w.fingerprint(), "")
		waitChoice(t, a, "quic", "matches relay_fingerprint")
		s := &sender{w: w}
		s.sendN(200, 8)
		if dups := w.verify(s, 60*time.Second); dups != 0 {
			t.Errorf("%d duplicate deliveries", dups)
		}
	})
	t.Run("not verifiable", func(t *testing.T) {
		w := newWorld(t, worldOpts{transport: "http"}) // agent0: http://, no relay_fingerprint
		waitChoice(t, w.agents[0], "websocket", "quic certificate cannot be verified: no relay_fingerprint and not CA-valid")
		s := &sender{w: w}
		s.sendN(200, 8)
		if dups := w.verify(s, 60*time.Second); dups != 0 {
			t.Errorf("%d duplicate deliveries", dups)
		}
	})
	t.Run("no quic_addr", func(t *testing.T) {
		w := newWorld(t, worldOpts{transport: "ws"}) // the relay has no quic_addr
		stopAgent(t, w.agents[0])
		fp := w.fingerprint()
		a := w.autoAgent("auto", fmt.Sprintf("http://127.0.0.1:%d", w.relayPort), fp, "")
		waitChoice(t, a, "websocket", "relay has no quic_addr")
		s := &sender{w: w}
		s.sendN(200, 8)
		if dups := w.verify(s, 60*time.Second); dups != 0 {
			t.Errorf("%d duplicate deliveries", dups)
		}
	})
}

// TestAutoFallbackUDPDropped: the relay runs in its own network namespace, reached over a
// veth pair, with an iptables rule dropping its QUIC port. An auto-mode agent that has the
// fingerprint pinned (so it would take QUIC) falls back to WebSocket and delivers every
// webhook; once the rule is deleted it moves to QUIC on its next retry and keeps delivering.
func TestAutoFallbackUDPDropped(t *testing.T) {
	ns := newNetns(t)
	w := &world{t: t, dir: t.TempDir(), transport: "http", host: ns.relayIP, relayPort: 8080, quicPort: 8443}
	w.target = newTarget(t, 0)
	token, hash := newToken(t)
	w.token = token
	w.client = &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 64, Proxy: nil}}
	cfg := writeFile(t, filepath.Join(w.dir, "relay.yaml"), fmt.Sprintf(`addr: %s:%d
quic_addr: %s:%d
data_dir: %s
endpoints:
  - name: e2e
    tokens: [%q]
`, ns.relayIP, w.relayPort, ns.relayIP, w.quicPort, filepath.Join(w.dir, "relay-data"), hash))
	ns.run(t, "iptables", "-A", "INPUT", "-p", "udp", "--dport", fmt.Sprint(w.quicPort), "-j", "DROP")
	w.relay = newProc(t, "relay", "ip", "netns", "exec", ns.name, bin.relay, "serve", "--config", cfg)
	w.relay.start()
	w.waitRelay()

	a := w.autoAgent("auto", fmt.Sprintf("http://%s:%d", ns.relayIP, w.relayPort), w.fingerprint(), "quic_retry: 1s\n")
	waitChoice(t, a, "websocket", "timeout")
	s := &sender{w: w}
	s.sendN(300, 8)
	if dups := w.verify(s, 60*time.Second); dups != 0 {
		t.Errorf("%d duplicate deliveries over the fallback", dups)
	}
	if q := transportChoices(a, "quic"); len(q) > 0 || a.logContains("quic works now") {
		t.Errorf("the agent used QUIC although UDP to the relay was dropped (%q)", q)
	}

	ns.run(t, "iptables", "-D", "INPUT", "-p", "udp", "--dport", fmt.Sprint(w.quicPort), "-j", "DROP")
	testutil.CheckFor(t, 30*time.Second, 50*time.Millisecond, func() error {
		if !a.logContains(`"msg":"quic works now: leaving websocket"`) {
			return fmt.Errorf("the agent has not moved to QUIC since UDP passes again")
		}
		return nil
	})
	s.sendN(300, 8)
	if dups := w.verify(s, 60*time.Second); dups != 0 {
		t.Errorf("%d duplicate deliveries across the move to QUIC", dups)
	}
}

// netns is a network namespace joined to ours by a veth pair with a /30 of its own:
// 10.231.N.1 (hostIP, on interface hostIf) on our side, 10.231.N.2 (relayIP) inside.
// Nothing else is routed.
type netns struct {
	name, relayIP, hostIP, hostIf string
}

// newNetns needs root, ip and iptables: without them the test is skipped, or fails when
// CI=true. Cleanup deletes the namespace and the veth pair.
func newNetns(t *testing.T) *netns {
	t.Helper()
	needNetns(t)
	pid := os.Getpid()
	n := &netns{name: fmt.Sprintf("hookrelay-e2e-%d", pid), relayIP: fmt.Sprintf("10.231.%d.2", pid%250),
		hostIP: fmt.Sprintf("10.231.%d.1", pid%250)}
	ours, theirs := fmt.Sprintf("hre%d", pid), fmt.Sprintf("hrr%d", pid)
	n.hostIf = ours
	host := func(args ...string) {
		t.Helper()
		if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
			t.Fatalf("ip %s: %v: %s", strings.Join(args, " "), err, out)
		}
	}
	host("netns", "add", n.name)
	t.Cleanup(func() {
		exec.Command("ip", "netns", "del", n.name).Run() // takes the veth pair with it
		exec.Command("ip", "link", "del", ours).Run()
	})
	host("link", "add", ours, "type", "veth", "peer", "name", theirs)
	host("link", "set", theirs, "netns", n.name)
	host("addr", "add", n.hostIP+"/30", "dev", ours)
	host("link", "set", ours, "up")
	n.run(t, "ip", "addr", "add", n.relayIP+"/30", "dev", theirs)
	n.run(t, "ip", "link", "set", theirs, "up")
	n.run(t, "ip", "link", "set", "lo", "up")
	return n
}

// needNetns skips the test without root, ip and iptables, or fails it when CI=true.
func needNetns(t *testing.T) {
	t.Helper()
	var missing []string
	if os.Geteuid() != 0 {
		missing = append(missing, "root")
	}
	for _, tool := range []string{"ip", "iptables"} {
		if _, err := exec.LookPath(tool); err != nil {
			missing = append(missing, tool)
		}
	}
	if len(missing) > 0 {
		testutil.Missing(t, "network namespace test needs %s", strings.Join(missing, ", "))
	}
}

// run runs a command inside the namespace.
func (n *netns) run(t *testing.T, args ...string) {
	t.Helper()
	cmd := exec.Command("ip", append([]string{"netns", "exec", n.name}, args...)...)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("in %s: %s: %v: %s", n.name, strings.Join(args, " "), err, out)
	}
}

// TestFingerprintCommand: `hookrelay fingerprint` prints exactly one line, "sha256:" + 64
// lowercase hex digits, creating the self-signed certificate on first use; the same value
// every time, the one the relay then serves and reports at /v1/info; --data overrides
// data_dir.
func TestFingerprintCommand(t *testing.T) {
	w := &world{t: t, dir: t.TempDir(), relayPort: testutil.FreePort(t), quicPort: testutil.FreePort(t)}
	cfg := writeFile(t, filepath.Join(w.dir, "relay.yaml"), fmt.Sprintf(`addr: 127.0.0.1:%d
quic_addr: 127.0.0.1:%d
data_dir: %s
endpoints:
  - name: e2e
`, w.relayPort, w.quicPort, filepath.Join(w.dir, "relay-data")))
	first := w.fingerprint()
	out, err := runCmd(bin.relay, "fingerprint", "--config", cfg)
	if err != nil {
		t.Fatal(err)
	}
	if !regexp.MustCompile(`^sha256:[0-9a-f]{64}\n$`).MatchString(out) {
		t.Fatalf("stdout %q, want one line sha256:<64 lowercase hex>", out)
	}
	if strings.TrimSpace(out) != first {
		t.Fatalf("second run printed %s, first %s", strings.TrimSpace(out), first)
	}
	other, err := runCmd(bin.relay, "fingerprint", "--config", cfg, "--data", filepath.Join(w.dir, "other"))
	if err != nil {
		t.Fatal(err)
	}
	if strings.TrimSpace(other) == first {
		t.Error("--data did not change the data dir: same certificate")
	}
	relay := newProc(t, "relay", bin.relay, "serve", "--config", cfg)
	relay.start()
	testutil.CheckFor(t, 20*time.Second, 50*time.Millisecond, func() error {
		resp, err := healthClient.Get(fmt.Sprintf("http://127.0.0.1:%d/v1/info", w.relayPort))
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		var info struct{ Fingerprint string }
		json.NewDecoder(resp.Body).Decode(&info)
		if info.Fingerprint != first {
			return fmt.Errorf("/v1/info fingerprint %q, `hookrelay fingerprint` printed %s", info.Fingerprint, first)
		}
		return nil
	})
}
