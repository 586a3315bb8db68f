//go:build unix

package main

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"net/http"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/hookrelay/hookrelay/internal/testutil"
)

// TestServeReloadsOnSIGHUP: a SIGHUP re-reads the file (flags still applied over it); a file
// that fails validation is refused and the running config stays.
func TestServeReloadsOnSIGHUP(t *testing.T) {
	addr := testutil.FreeAddr(t)
	sum := sha256.Sum256([]byte("hr_token"))
	hash := "sha256:" + hex.EncodeToString(sum[:])
	cfg := writeConfig(t, "addr: 127.0.0.1:1\nendpoints: [{name: a, tokens: [\""+hash+"\"]}]\n")
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	var logs testutil.SyncBuffer
	go func() {
		done <- run(ctx, []string{"serve", "--config", cfg, "--addr", addr, "--data", t.TempDir(), "--log-level", "info"}, &logs, &logs)
	}()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("serve: %v", err)
		}
	}()
	status := func(path string) int {
		resp, err := http.Post("http://"+addr+path, "text/plain", strings.NewReader("x"))
		if err != nil {
			return 0
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	waitUntil(t, "serving", func() bool { return status("/h/a") == 202 })
	if got := status("/h/b"); got != 404 {
		t.Fatalf("endpoint b before reload: %d, want 404", got)
	}

	os.WriteFile(cfg, []byte("addr: 127.0.0.1:1\nendpoints: [{name: a}, {name: b}]\n"), 0o600)
	syscall.Kill(os.Getpid(), syscall.SIGHUP)
	waitUntil(t, "endpoint b after SIGHUP", func() bool { return status("/h/b") == 202 })

	os.WriteFile(cfg, []byte("endpoints: [{name: c, tokens: [not-a-hash]}]\n"), 0o600)
	syscall.Kill(os.Getpid(), syscall.SIGHUP)
	waitUntil(t, "refusal logged", func() bool { return strings.Contains(logs.String(), "config reload refused") })
	if status("/h/b") != 202 || status("/h/c") != 404 {
		t.Error("a refused reload changed the running config")
	}
	if !strings.Contains(logs.String(), "endpoints[0].tokens[0]") {
		t.Errorf("the refusal does not name the key:\n%s", logs.String())
	}
}

func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
