package pkgtest

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/hookrelay/hookrelay/agent"
	"github.com/hookrelay/hookrelay/relay"
)

// TestCrossCompile compiles both programs for the platforms whose service
// code differs (kardianos' Windows service and launchd, 32-bit ARM); `make
// cross` links them all.
func TestCrossCompile(t *testing.T) {
	if testing.Short() {
		t.Skip("cross-compiling takes a while; run without -short")
	}
	for _, target := range []struct{ goos, goarch, goarm string }{
		{"windows", "amd64", ""},
		{"darwin", "arm64", ""},
		{"linux", "arm", "7"},
	} {
		t.Run(target.goos+"_"+target.goarch, func(t *testing.T) {
			// Several packages: go build compiles them and discards the result.
			run(t, "", []string{"CGO_ENABLED=0", "GOOS=" + target.goos, "GOARCH=" + target.goarch, "GOARM=" + target.goarm},
				"go", "build", "./cmd/hookagent", "./cmd/hookrelay", "./agent/svc")
		})
	}
}

// TestVersionScript checks packaging/version.sh on a scratch repository at
// each kind of state, and that dpkg takes each result as a version.
func TestVersionScript(t *testing.T) {
	git := requireTool(t, "git")
	dpkg := requireTool(t, "dpkg")
	dir := t.TempDir()
	script := filepath.Join(repoRoot, "packaging/version.sh")
	g := func(args ...string) string {
		return strings.TrimSpace(run(t, dir, []string{
			"GIT_AUTHOR_NAME=t", "GIT_AUTHOR_EMAIL=t@example.com", "GIT_COMMITTER_NAME=t", "GIT_COMMITTER_EMAIL=t@example.com",
		}, git, args...))
	}
	commit := func() string {
		g("commit", "-q", "--allow-empty", "-m", "x")
		return g("rev-parse", "--short", "HEAD")
	}
	g("init", "-q")
	version := func() string {
		v := strings.TrimSpace(run(t, dir, nil, "sh", script))
		if out, err := runErr("", nil, dpkg, "--validate-version", v); err != nil {
			t.Errorf("dpkg rejects %q: %s", v, out)
		}
		return v
	}
	check := func(want string) {
		t.Helper()
		if got := version(); got != want {
			t.Errorf("version.sh = %q, want %q", got, want)
		}
	}
	sha := commit()
	check("0.0.0~git" + sha)
	if err := os.WriteFile(filepath.Join(dir, "f"), []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	g("add", "f")
	check("0.0.0~git" + sha + ".dirty")
	g("commit", "-q", "-m", "f")
	g("tag", "v1.2.3")
	check("1.2.3")
	commit()
	sha = commit()
	check("1.2.3+2.g" + sha)
	g("tag", "v1.3.0-rc1")
	check("1.3.0~rc1")
	// Order: a pre-release sorts before its release, later commits after their tag.
	run(t, "", nil, dpkg, "--compare-versions", "1.3.0~rc1", "lt", "1.3.0")
	run(t, "", nil, dpkg, "--compare-versions", "1.2.3+2.g"+sha, "gt", "1.2.3")
	run(t, "", nil, dpkg, "--compare-versions", "0.0.0~git"+sha, "lt", "0.0.1")
}

// TestExampleConfigs loads the packaged example configs with the programs'
// own loaders, and checks that they fit the hardened units.
func TestExampleConfigs(t *testing.T) {
	t.Setenv(agent.TokenEnv, "token-from-env-file")
	a, err := agent.LoadConfig(filepath.Join(repoRoot, "packaging/agent.yaml"))
	if err != nil {
		t.Fatalf("packaging/agent.yaml: %v", err)
	}
	if a.DataDir != "/var/lib/hookagent" {
		t.Errorf("agent data_dir %q, want the unit's StateDirectory /var/lib/hookagent", a.DataDir)
	}
	if strings.Contains(readRepo(t, "packaging/agent.yaml"), "\ntoken:") {
		t.Error("packaging/agent.yaml sets token: it is world-readable; the token belongs in /etc/hookagent/env")
	}
	r, err := relay.LoadConfig(filepath.Join(repoRoot, "packaging/relay.yaml"))
	if err != nil {
		t.Fatalf("packaging/relay.yaml: %v", err)
	}
	if r.DataDir != "/var/lib/hookrelay" {
		t.Errorf("relay data_dir %q, want the unit's StateDirectory /var/lib/hookrelay", r.DataDir)
	}
}
