// Package e2e runs the built hookrelay and hookagent binaries as child processes, the way an
// operator runs them, and checks the delivery contract from outside: kill -9 of either side,
// agents away, slow targets. Only loopback addresses are used.
package e2e

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/hookrelay/hookrelay/internal/procinfo"
)

// bin holds the paths of the binaries TestMain built.
var bin struct {
	dir, relay, agent string
}

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "hookrelay-e2e-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "e2e:", err)
		os.Exit(2)
	}
	cmd := exec.Command("go", "build", "-o", dir+"/", "../cmd/hookrelay", "../cmd/hookagent")
	if out, err := cmd.CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "e2e: go build: %v\n%s", err, out)
		os.RemoveAll(dir)
		os.Exit(2)
	}
	bin.dir, bin.relay, bin.agent = dir, filepath.Join(dir, "hookrelay"), filepath.Join(dir, "hookagent")
	code := m.Run()
	os.RemoveAll(dir)
	if prevBin.relay != "" {
		os.RemoveAll(filepath.Dir(prevBin.relay))
	}
	os.Exit(code)
}

// newToken runs `hookrelay token` and returns the token and its hash.
func newToken(t testing.TB) (token, hash string) {
	t.Helper()
	out, err := exec.Command(bin.relay, "token").Output()
	if err != nil {
		t.Fatalf("hookrelay token: %v", err)
	}
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	if len(lines) != 2 || !strings.HasPrefix(lines[1], "sha256:") {
		t.Fatalf("hookrelay token printed %q", out)
	}
	return lines[0], lines[1]
}

// proc is one child process with its output kept in a file.
type proc struct {
	t    testing.TB
	name string
	args []string
	env  []string
	log  string

	mu   sync.Mutex
	cmd  *exec.Cmd
	done chan struct{}
}

func newProc(t testing.TB, name, path string, args ...string) *proc {
	p := &proc{t: t, name: name, args: append([]string{path}, args...), log: filepath.Join(t.TempDir(), name+".log")}
	t.Cleanup(func() {
		p.kill()
		if t.Failed() {
			p.dumpTail(40)
		}
	})
	return p
}

// start starts the process (again); its output is appended to its log.
func (p *proc) start() {
	p.t.Helper()
	p.mu.Lock()
	defer p.mu.Unlock()
	f, err := os.OpenFile(p.log, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		p.t.Fatal(err)
	}
	fmt.Fprintf(f, "=== start %s at %s\n", p.name, time.Now().Format(time.RFC3339Nano))
	cmd := exec.Command(p.args[0], p.args[1:]...)
	cmd.Stdout, cmd.Stderr = f, f
	cmd.Env = append(procinfo.CleanEnv(), p.env...)
	if err := cmd.Start(); err != nil {
		f.Close()
		p.t.Fatalf("start %s: %v", p.name, err)
	}
	done := make(chan struct{})
	go func() { cmd.Wait(); f.Close(); close(done) }()
	p.cmd, p.done = cmd, done
}

// signal sends sig and waits up to wait for the process to exit; it reports whether it did.
func (p *proc) signal(sig syscall.Signal, wait time.Duration) bool {
	p.mu.Lock()
	cmd, done := p.cmd, p.done
	p.mu.Unlock()
	if cmd == nil {
		return true
	}
	select {
	case <-done:
		return true
	default:
	}
	cmd.Process.Signal(sig)
	select {
	case <-done:
		return true
	case <-time.After(wait):
		return false
	}
}

func (p *proc) kill() { p.signal(syscall.SIGKILL, 10*time.Second) }

// exitCode is the exit code of the last run, or -1 while running or killed by a signal.
func (p *proc) exitCode() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cmd == nil || p.cmd.ProcessState == nil {
		return -1
	}
	return p.cmd.ProcessState.ExitCode()
}

func (p *proc) pid() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.cmd.Process.Pid
}

func (p *proc) dumpTail(n int) {
	b, _ := os.ReadFile(p.log)
	lines := strings.Split(string(b), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	p.t.Logf("--- %s log (tail) ---\n%s", p.name, strings.Join(lines, "\n"))
}

// peakRSS returns the process's peak resident set size in KiB (VmHWM), 0 if unknown.
func (p *proc) peakRSS() int64 { return procinfo.Status(p.pid(), "VmHWM") }

func writeFile(t testing.TB, path, text string) string {
	t.Helper()
	if err := os.WriteFile(path, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// logContains reports whether a process log contains s.
func (p *proc) logContains(s string) bool {
	b, _ := os.ReadFile(p.log)
	return bytes.Contains(b, []byte(s))
}

func errorf(format string, a ...any) error { return fmt.Errorf(format, a...) }
