package pkgtest

import (
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/hookrelay/hookrelay/internal/testutil"
)

// etcCopySetup, run first under `unshare --mount`, puts a copy of /etc over /etc, so that the
// user `hookagent install` creates (useradd) exists only in the namespace.
const etcCopySetup = `set -eu
mount --make-rprivate /
cp -a /etc/. "$ETC_COPY"
mount --bind "$ETC_COPY" /etc
`

// dataDirScript installs hookagent with data_dir /srv/data/hookagent, which already holds a
// file of root's, then checks who owns and who may write what, and uninstalls.
const dataDirScript = `
mkdir -m 0755 /srv/hookagent
cp "$BIN" /srv/hookagent/hookagent
printf '%s' "$GOOD_CONFIG" > /srv/hookagent/agent.yaml
printf '%s' "$HOME_CONFIG" > /srv/hookagent/home.yaml
chmod 0644 /srv/hookagent/agent.yaml /srv/hookagent/home.yaml
mkdir -p /srv/data/hookagent
echo old > /srv/data/hookagent/old-file
A=/srv/hookagent/hookagent
UNIT=/etc/systemd/system/hookagent.service

step install_home $A install --config /srv/hookagent/home.yaml
step user_before getent passwd hookagent
step install $A install --config /srv/hookagent/agent.yaml
cp $UNIT "$OUT/unit" || true
step verify systemd-analyze verify $UNIT
step security systemd-analyze security --offline=yes --no-pager $UNIT
step user getent passwd hookagent
step owner stat -c '%U:%G %a' /srv/data/hookagent /srv/data/hookagent/old-file /srv/data
as() { setpriv --reuid hookagent --regid hookagent --clear-groups "$@"; }
step write_data as sh -c 'echo x > /srv/data/hookagent/new && cat /srv/data/hookagent/old-file'
step write_parent as touch /srv/data/not-mine
step uninstall $A uninstall --config /srv/hookagent/agent.yaml
step kept ls /srv/data/hookagent
`

// TestInstallSystemdDataDir installs hookagent with a data_dir outside /var/lib/hookagent: the
// unit runs as the static user hookagent, which owns exactly that directory, and still passes
// systemd-analyze verify and security.
func TestInstallSystemdDataDir(t *testing.T) {
	requireRoot(t)
	unshare := requireTool(t, "unshare")
	requireTool(t, "systemd-analyze")
	for _, tool := range []string{"useradd", "setpriv", "getent"} {
		if _, err := os.Stat("/usr/sbin/" + tool); err != nil {
			if _, err := os.Stat("/usr/bin/" + tool); err != nil {
				testutil.Missing(t, "%s is not installed", tool)
			}
		}
	}
	bin := buildProgram(t, "hookagent", "0.0.0-test")
	passwd, err := os.ReadFile("/etc/passwd")
	if err != nil {
		t.Fatal(err)
	}

	out, etc := t.TempDir(), t.TempDir()
	script := filepath.Join(out, "script.sh")
	if err := os.WriteFile(script, []byte(etcCopySetup+fakeSystemdSetup+dataDirScript), 0o755); err != nil {
		t.Fatal(err)
	}
	admin := &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: testutil.FreePort(t)} // never dialled
	run(t, "", []string{
		"OUT=" + out, "BIN=" + bin, "FAKE_SYSTEMCTL=" + fakeSystemctl, "ETC_COPY=" + etc,
		"GOOD_CONFIG=" + agentConfig(t, admin, "/srv/data/hookagent"),
		"HOME_CONFIG=" + agentConfig(t, admin, "/home/hookagent-test/data"),
	}, unshare, "--mount", "--propagation", "private", "bash", script)

	r := results{t, out}
	r.fails("install_home", "under /home")
	r.exit("user_before", 2) // getent: no such user, so the refusal created none

	r.ok("install")
	r.has("unit", "\nUser=hookagent\n", "\nGroup=hookagent\n", "\nReadWritePaths=/srv/data/hookagent\n",
		`ExecStart=/srv/hookagent/hookagent "run" "--config" "/srv/hookagent/agent.yaml"`)
	if u := r.read("unit"); strings.Contains(u, "\nDynamicUser=") || strings.Contains(u, "\nStateDirectory") {
		t.Errorf("unit keeps DynamicUser or StateDirectory:\n%s", u)
	}
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
	r.ok("user", "hookagent:x:", "/usr/sbin/nologin")
	r.equal("owner.out", "hookagent:hookagent 700\nhookagent:hookagent 644\nroot:root 755\n")
	r.ok("write_data", "old")
	r.fails("write_parent", "Permission denied")
	r.ok("uninstall")
	r.ok("kept", "new", "old-file")

	if after, _ := os.ReadFile("/etc/passwd"); string(after) != string(passwd) {
		t.Error("the machine's /etc/passwd changed: the user belongs in the namespace's copy")
	}
}
