//go:build unix

package main

import (
	"bytes"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/hookrelay/hookrelay/internal/testutil"
)

// TestRunSIGTERM runs the agent in-process and stops it with SIGTERM: a clean exit 0.
func TestRunSIGTERM(t *testing.T) {
	t.Setenv("HOOKAGENT_TOKEN", "")
	admin := testutil.FreeAddr(t)
	dir := t.TempDir()
	path := filepath.Join(dir, "agent.yaml")
	cfg := fmt.Sprintf("relay: ws://127.0.0.1:1\ntoken: t\ndata_dir: %s\nadmin_addr: %s\nroutes: [{endpoint: e, target: 'http://127.0.0.1:1/'}]\n",
		filepath.Join(dir, "data"), admin)
	os.WriteFile(path, []byte(cfg), 0o600)

	var out bytes.Buffer
	var errOut testutil.SyncBuffer
	done := make(chan int, 1)
	go func() { done <- run([]string{"run", "--config", path, "--log-format", "json"}, &out, &errOut) }()
	deadline := time.Now().Add(20 * time.Second)
	for {
		resp, err := http.Get("http://" + admin + "/healthz")
		if err == nil {
			resp.Body.Close()
			break
		}
		select {
		case code := <-done:
			t.Fatalf("exited %d before serving: %s", code, errOut.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatal("agent never served /healthz")
		}
		time.Sleep(20 * time.Millisecond)
	}
	// The agent's signal handlers are installed before it serves, so these do not kill the test.
	// SIGHUP is logged and ignored (no reload): the agent keeps serving.
	syscall.Kill(os.Getpid(), syscall.SIGHUP)
	for !strings.Contains(errOut.String(), "SIGHUP ignored") {
		select {
		case code := <-done:
			t.Fatalf("exited %d after SIGHUP: %s", code, errOut.String())
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatal("SIGHUP was not logged")
		}
	}
	syscall.Kill(os.Getpid(), syscall.SIGTERM)
	select {
	case code := <-done:
		if code != 0 {
			t.Fatalf("exit %d after SIGTERM: %s", code, errOut.String())
		}
	case <-time.After(20 * time.Second):
		t.Fatal("no exit after SIGTERM")
	}
	if !strings.Contains(errOut.String(), `"msg":"agent stopped"`) || strings.Contains(errOut.String(), `"token"`) {
		t.Fatalf("log: %s", errOut.String())
	}
}
