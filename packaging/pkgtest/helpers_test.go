package pkgtest

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"

	"github.com/hookrelay/hookrelay/internal/testutil"
)

// repoRoot is the module root, two levels up from this package.
var repoRoot = func() string {
	dir, err := filepath.Abs("../..")
	if err != nil {
		panic(err)
	}
	return dir
}()

func requireRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		testutil.Missing(t, "this test needs root (it installs into /etc and /usr)")
	}
}

// requireTool returns the path of a tool on PATH.
func requireTool(t *testing.T, name string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		testutil.Missing(t, "%s is not installed", name)
	}
	return p
}

// nfpmCommand is how to run nfpm: $NFPM, else `go tool nfpm` (the module's
// tool), else nfpm on PATH.
func nfpmCommand(t *testing.T) []string {
	t.Helper()
	if p := os.Getenv("NFPM"); p != "" {
		return strings.Fields(p)
	}
	cmd := exec.Command("go", "tool", "-n", "nfpm")
	cmd.Dir = repoRoot
	if cmd.Run() == nil {
		return []string{"go", "tool", "nfpm"}
	}
	if p, err := exec.LookPath("nfpm"); err == nil {
		return []string{p}
	}
	testutil.Missing(t, "nfpm not found: add it with `go get -tool github.com/goreleaser/nfpm/v2/cmd/nfpm@v2.45.2`, or set NFPM")
	return nil
}

// run runs a command in dir (repoRoot when empty) and returns its combined
// output, failing the test on a non-zero exit.
func run(t *testing.T, dir string, env []string, name string, args ...string) string {
	t.Helper()
	out, err := runErr(dir, env, name, args...)
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return out
}

func runErr(dir string, env []string, name string, args ...string) (string, error) {
	cmd := exec.Command(name, args...)
	cmd.Dir = dir
	if dir == "" {
		cmd.Dir = repoRoot
	}
	cmd.Env = append(os.Environ(), env...)
	var buf bytes.Buffer
	cmd.Stdout, cmd.Stderr = &buf, &buf
	err := cmd.Run()
	return buf.String(), err
}

var (
	buildMu sync.Mutex
	built   = map[string]string{} // "prog version" -> path
	binDir  string
)

// TestMain owns the directory of binaries built once for all tests.
func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "pkgtest-bin-")
	if err != nil {
		panic(err)
	}
	binDir = dir
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// buildProgram builds cmd/prog for this machine, stamped with version, and
// returns the binary's path (shared between tests: do not modify it).
func buildProgram(t *testing.T, prog, version string) string {
	t.Helper()
	buildMu.Lock()
	defer buildMu.Unlock()
	key := prog + " " + version
	if p, ok := built[key]; ok {
		return p
	}
	dir := filepath.Join(binDir, prog+"-"+version)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(dir, prog)
	run(t, "", []string{"CGO_ENABLED=0"}, "go", "build", "-trimpath",
		"-ldflags", "-s -w -X main.version="+version+" -X main.commit=pkgtest",
		"-o", out, "./cmd/"+prog)
	built[key] = out
	return out
}

// nfpmArch is nfpm's name for this machine's architecture.
func nfpmArch() string { return runtime.GOARCH }

// buildPackage builds prog's package of format (deb, rpm) at version from
// the binary at binPath, and returns its path.
func buildPackage(t *testing.T, nfpm []string, format, prog, version, binPath string) string {
	t.Helper()
	dir := t.TempDir()
	env := []string{"VERSION=" + version, "ARCH=" + nfpmArch(), "BINDIR=" + filepath.Dir(binPath)}
	args := append(append([]string{}, nfpm[1:]...), "package", "-f", "packaging/"+prog+".nfpm.yaml", "-p", format, "-t", dir)
	run(t, "", env, nfpm[0], args...)
	matches, _ := filepath.Glob(filepath.Join(dir, "*."+format))
	if len(matches) != 1 {
		t.Fatalf("want one .%s in %s, have %v", format, dir, matches)
	}
	return matches[0]
}
