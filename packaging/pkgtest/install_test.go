package pkgtest

import (
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// installScript runs `hookagent install|status|uninstall` in a namespace
// that looks like a systemd machine (see fakeSystemdSetup); the test reads
// what each step left in $OUT. The binary sits in /srv (the unit cannot run
// one under /tmp) and the config is agent.yaml there.
const installScript = `
mkdir -m 0755 /srv/hookagent
cp "$BIN" /srv/hookagent/hookagent
printf '%s' "$GOOD_CONFIG" > /srv/hookagent/agent.yaml
printf '%s' "$BAD_CONFIG" > /srv/hookagent/bad.yaml
printf '%s' "$GOOD_CONFIG" > /srv/hookagent/private.yaml
chmod 0644 /srv/hookagent/agent.yaml /srv/hookagent/bad.yaml
chmod 0600 /srv/hookagent/private.yaml
A=/srv/hookagent/hookagent
UNIT=/etc/systemd/system/hookagent.service
tree() { find /etc/systemd/system | sort > "$OUT/$1.tree"; }

step install_bad $A install --config /srv/hookagent/bad.yaml
step install_private $A install --config /srv/hookagent/private.yaml
tree before; calls before
step install $A install --config /srv/hookagent/agent.yaml
cp $UNIT "$OUT/unit" || true
tree installed; calls install
step verify systemd-analyze verify $UNIT
step security systemd-analyze security --offline=yes --no-pager $UNIT
step install_again $A install --config /srv/hookagent/agent.yaml
cp $UNIT "$OUT/unit_again" || true
tree again; calls again
echo active > /srv/fake/state
step status_running $A status --config /srv/hookagent/agent.yaml
echo inactive > /srv/fake/state
step status_stopped $A status --config /srv/hookagent/agent.yaml
calls status
step uninstall $A uninstall --config /srv/hookagent/agent.yaml
tree uninstalled; calls uninstall
step status_gone $A status --config /srv/hookagent/agent.yaml
`

// TestInstallSystemd installs hookagent as a systemd service with
// `hookagent install` against a stand-in systemd, and checks what it wrote,
// what it asked systemctl, and that it refuses what it must.
func TestInstallSystemd(t *testing.T) {
	requireRoot(t)
	unshare := requireTool(t, "unshare")
	requireTool(t, "systemd-analyze") // runs in the namespace
	bin := buildProgram(t, "hookagent", "0.0.0-test")

	// The agent's own view, as `hookagent status` fetches it from admin_addr.
	admin := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/admin/api/status" {
			http.NotFound(w, r)
			return
		}
		fmt.Fprint(w, `{"connected":true,"transport":"quic"}`)
	}))
	defer admin.Close()
	good := agentConfig(t, admin.Listener.Addr(), "/var/lib/hookagent")
	bad := "relay: ws://127.0.0.1:9\ntoken: t\ndata_dir: /var/lib/hookagent\n" // no routes

	out := t.TempDir()
	script := filepath.Join(out, "script.sh")
	if err := os.WriteFile(script, []byte(fakeSystemdSetup+installScript), 0o755); err != nil {
		t.Fatal(err)
	}
	run(t, "", []string{
		"OUT=" + out, "BIN=" + bin, "FAKE_SYSTEMCTL=" + fakeSystemctl,
		"GOOD_CONFIG=" + good, "BAD_CONFIG=" + bad,
	}, unshare, "--mount", "--propagation", "private", "bash", script)

	r := results{t, out}
	const unitPath = "/etc/systemd/system/hookagent.service"

	// Refusals come first and leave nothing behind.
	r.fails("install_bad", "routes")
	r.fails("install_private", "dynamic user")
	r.equal("before.tree", "/etc/systemd/system\n")
	r.equal("before.calls", "")

	r.ok("install", "journalctl -u hookagent", "hookagent start")
	r.equal("installed.tree", "/etc/systemd/system\n"+unitPath+"\n")
	r.has("unit", `ExecStart=/srv/hookagent/hookagent "run" "--config" "/srv/hookagent/agent.yaml"`,
		"DynamicUser=yes", "Type=notify", "WatchdogSec=30s")
	r.hasLines("install.calls", "enable hookagent.service", "daemon-reload")
	r.ok("verify")
	if strings.Contains(r.read("verify.out"), "hookagent") {
		t.Errorf("systemd-analyze verify of the written unit:\n%s", r.read("verify.out"))
	}
	r.ok("security")
	if m := exposureLine.FindStringSubmatch(r.read("security.out")); m == nil {
		t.Errorf("no exposure in:\n%s", r.read("security.out"))
	} else if v, _ := strconv.ParseFloat(m[1], 64); v > 2.0 {
		t.Errorf("written unit exposure %s, want ≤ 2.0", m[1])
	} else {
		t.Logf("written unit exposure %s", m[1])
	}

	r.fails("install_again", "already installed")
	r.equal("unit_again", r.read("unit"))
	r.equal("again.tree", r.read("installed.tree"))
	r.equal("again.calls", "")

	r.ok("status_running", "running", `"transport":"quic"`)
	r.exit("status_stopped", 3)
	r.has("status_stopped.out", "stopped")

	r.ok("uninstall")
	r.equal("uninstalled.tree", "/etc/systemd/system\n")
	r.hasLines("uninstall.calls", "stop hookagent.service", "disable hookagent.service", "daemon-reload")
	r.exit("status_gone", 3)
	r.has("status_gone.out", "stopped")
}

// agentConfig is a valid agent.yaml whose admin_addr is admin.
func agentConfig(t *testing.T, admin net.Addr, dataDir string) string {
	t.Helper()
	return fmt.Sprintf(`relay: ws://127.0.0.1:9
token: test-token
data_dir: %s
admin_addr: %s
routes:
  - endpoint: github
    target: http://127.0.0.1:3000/webhooks
`, dataDir, admin)
}

// results reads what a script's steps left in its output directory.
type results struct {
	t   *testing.T
	dir string
}

func (r results) read(name string) string {
	r.t.Helper()
	b, err := os.ReadFile(filepath.Join(r.dir, name))
	if err != nil {
		r.t.Fatalf("step result %s: %v", name, err)
	}
	return string(b)
}

func (r results) code(step string) int {
	r.t.Helper()
	n, err := strconv.Atoi(strings.TrimSpace(r.read(step + ".rc")))
	if err != nil {
		r.t.Fatalf("step %s: exit code: %v", step, err)
	}
	return n
}

// exit checks a step's exit code.
func (r results) exit(step string, want int) {
	r.t.Helper()
	if got := r.code(step); got != want {
		r.t.Errorf("%s: exit %d, want %d; output:\n%s", step, got, want, r.read(step+".out"))
	}
}

// ok checks that a step succeeded and printed each of want.
func (r results) ok(step string, want ...string) {
	r.t.Helper()
	r.exit(step, 0)
	r.has(step+".out", want...)
}

// fails checks that a step failed and said each of want.
func (r results) fails(step string, want ...string) {
	r.t.Helper()
	if r.code(step) == 0 {
		r.t.Errorf("%s: succeeded, want a failure; output:\n%s", step, r.read(step+".out"))
	}
	r.has(step+".out", want...)
}

func (r results) has(name string, want ...string) {
	r.t.Helper()
	got := r.read(name)
	for _, w := range want {
		if !strings.Contains(got, w) {
			r.t.Errorf("%s lacks %q:\n%s", name, w, got)
		}
	}
}

func (r results) equal(name, want string) {
	r.t.Helper()
	if got := r.read(name); got != want {
		r.t.Errorf("%s = %q, want %q", name, got, want)
	}
}

// hasLines checks that a calls log holds exactly these lines, in this order.
func (r results) hasLines(name string, want ...string) {
	r.t.Helper()
	got := strings.Split(strings.TrimSpace(r.read(name)), "\n")
	var filtered []string
	for _, l := range got {
		if l != "--version" && l != "" { // kardianos probes the version
			filtered = append(filtered, l)
		}
	}
	if strings.Join(filtered, "\n") != strings.Join(want, "\n") {
		r.t.Errorf("%s = %q, want %q", name, filtered, want)
	}
}
