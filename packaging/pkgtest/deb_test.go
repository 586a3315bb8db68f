package pkgtest

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// debScript installs, upgrades and purges one package with dpkg in a
// namespace that looks like a systemd machine (see fakeSystemdSetup), so the
// maintainer scripts' systemctl calls are recorded. The operator's edit of
// the config between install and upgrade must survive the upgrade.
const debScript = `
step install dpkg -i "$DEB1"
calls install
step version1 /usr/bin/$PROG --version
step files sh -c "stat -c '%a %U:%G %n' /usr/bin/$PROG /usr/lib/systemd/system/$PROG.service /etc/$PROG/$CONF /etc/$PROG/env"
step conffiles dpkg-query -W -f '${Conffiles}\n' $PROG
cp /usr/lib/systemd/system/$PROG.service "$OUT/unit"
cp /etc/$PROG/$CONF "$OUT/config1"
echo "# edited by the operator" >> /etc/$PROG/$CONF
echo active > /srv/fake/state
step upgrade dpkg -i "$DEB2"
calls upgrade
step version2 /usr/bin/$PROG --version
cp /etc/$PROG/$CONF "$OUT/config2"
step purge dpkg -P $PROG
calls purge
step left sh -c "ls -d /usr/bin/$PROG /usr/lib/systemd/system/$PROG.service /etc/$PROG 2>/dev/null; true"
step status dpkg -s $PROG
`

// TestDebPackage builds each program's .deb with nfpm, installs it with
// dpkg, upgrades it over an edited config and purges it; then checks the
// .rpm's contents with rpm when rpm is installed.
func TestDebPackage(t *testing.T) {
	requireRoot(t)
	unshare := requireTool(t, "unshare")
	requireTool(t, "dpkg")
	nfpm := nfpmCommand(t)
	for _, tc := range []struct{ prog, conf string }{
		{"hookagent", "agent.yaml"},
		{"hookrelay", "relay.yaml"},
	} {
		t.Run(tc.prog, func(t *testing.T) {
			if _, err := runErr("", nil, "dpkg", "-s", tc.prog); err == nil {
				t.Fatalf("%s is already installed here: this test would replace it", tc.prog)
			}
			t.Cleanup(func() { runErr("", nil, "dpkg", "-P", tc.prog) })
			v1, v2 := "1.0.0~test1", "1.0.0~test2"
			deb1 := buildPackage(t, nfpm, "deb", tc.prog, v1, buildProgram(t, tc.prog, v1))
			deb2 := buildPackage(t, nfpm, "deb", tc.prog, v2, buildProgram(t, tc.prog, v2))

			out := t.TempDir()
			script := filepath.Join(out, "script.sh")
			if err := os.WriteFile(script, []byte(fakeSystemdSetup+debScript), 0o755); err != nil {
				t.Fatal(err)
			}
			run(t, "", []string{
				"OUT=" + out, "FAKE_SYSTEMCTL=" + fakeSystemctl,
				"PROG=" + tc.prog, "CONF=" + tc.conf, "DEB1=" + deb1, "DEB2=" + deb2,
			}, unshare, "--mount", "--propagation", "private", "bash", script)
			r := results{t, out}
			unit := tc.prog + ".service"

			// First install: files in place, the service neither enabled nor started.
			r.ok("install")
			r.hasLines("install.calls", "daemon-reload")
			r.ok("version1", tc.prog+" "+v1)
			r.ok("files",
				"755 root:root /usr/bin/"+tc.prog,
				"644 root:root /usr/lib/systemd/system/"+unit,
				"644 root:root /etc/"+tc.prog+"/"+tc.conf,
				"600 root:root /etc/"+tc.prog+"/env")
			r.ok("conffiles", "/etc/"+tc.prog+"/"+tc.conf, "/etc/"+tc.prog+"/env")
			r.equal("unit", readRepo(t, "systemd/"+unit))
			r.equal("config1", readRepo(t, "packaging/"+tc.conf))

			// Upgrade: new binary, the edited config kept, a running service restarted.
			r.ok("upgrade")
			r.ok("version2", tc.prog+" "+v2)
			r.equal("config2", readRepo(t, "packaging/"+tc.conf)+"# edited by the operator\n")
			r.hasLines("upgrade.calls", "daemon-reload", "try-restart "+unit)

			// Purge: stopped and disabled, every file gone.
			r.ok("purge")
			r.hasLines("purge.calls", "disable --now "+unit, "daemon-reload")
			r.equal("left.out", "")
			if r.code("status") == 0 {
				t.Errorf("dpkg -s %s after purge: still installed", tc.prog)
			}
		})
	}
	t.Run("rpm", func(t *testing.T) { checkRPM(t, nfpm) })
}

// checkRPM inspects the .rpm packages: files, modes, config flags, scripts.
func checkRPM(t *testing.T, nfpm []string) {
	rpm := requireTool(t, "rpm")
	for _, tc := range []struct{ prog, conf string }{
		{"hookagent", "agent.yaml"},
		{"hookrelay", "relay.yaml"},
	} {
		pkg := buildPackage(t, nfpm, "rpm", tc.prog, "1.0.0~test1", buildProgram(t, tc.prog, "1.0.0~test1"))
		files := run(t, "", nil, rpm, "-qp", "--qf", `[%{FILEMODES:perms} %{FILEFLAGS:fflags} %{FILENAMES}\n]`, pkg)
		for _, want := range []string{
			"-rwxr-xr-x  /usr/bin/" + tc.prog,
			"-rw-r--r--  /usr/lib/systemd/system/" + tc.prog + ".service",
			"-rw-r--r-- cn /etc/" + tc.prog + "/" + tc.conf, // config(noreplace)
			"-rw------- cn /etc/" + tc.prog + "/env",
		} {
			if !strings.Contains(files, want+"\n") {
				t.Errorf("%s: no %q in\n%s", filepath.Base(pkg), want, files)
			}
		}
		scripts := run(t, "", nil, rpm, "-qp", "--scripts", pkg)
		for _, want := range []string{"postinstall scriptlet", "preuninstall scriptlet", "postuninstall scriptlet", "try-restart " + tc.prog + ".service"} {
			if !strings.Contains(scripts, want) {
				t.Errorf("%s: scripts lack %q:\n%s", filepath.Base(pkg), want, scripts)
			}
		}
	}
}

func readRepo(t *testing.T, rel string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(repoRoot, rel))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}
