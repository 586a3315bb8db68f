package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hookrelay/hookrelay/internal/testutil"
)

func TestToken(t *testing.T) {
	var out, errb bytes.Buffer
	if err := run(context.Background(), []string{"token"}, &out, &errb); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSuffix(out.String(), "\n"), "\n")
	if len(lines) != 2 {
		t.Fatalf("stdout %q, want 2 lines", out.String())
	}
	sum := sha256.Sum256([]byte(lines[0]))
	if lines[1] != "sha256:"+hex.EncodeToString(sum[:]) {
		t.Errorf("line 2 %q is not sha256 of line 1 %q", lines[1], lines[0])
	}
	if len(lines[0]) < 3+52 || !strings.HasPrefix(lines[0], "hr_") {
		t.Errorf("token %q too short for 256 bits", lines[0])
	}
	if !strings.Contains(errb.String(), "relay.yaml") {
		t.Errorf("no note on stderr: %q", errb.String())
	}
	var again bytes.Buffer
	run(context.Background(), []string{"token"}, &again, &errb)
	if again.String() == out.String() {
		t.Error("two tokens are equal")
	}
}

func TestVersion(t *testing.T) {
	var out bytes.Buffer
	if err := run(context.Background(), []string{"--version"}, &out, &out); err != nil {
		t.Fatal(err)
	}
	f := strings.Fields(out.String())
	if len(f) != 3 || f[0] != "hookrelay" || strings.Count(out.String(), "\n") != 1 {
		t.Errorf("version line %q, want \"hookrelay VERSION COMMIT\"", out.String())
	}
}

func TestUsageErrors(t *testing.T) {
	for _, args := range [][]string{nil, {"bogus"}, {"serve"}, {"serve", "--nope"}} {
		var out bytes.Buffer
		if err := run(context.Background(), args, &out, &out); !errors.Is(err, errUsage) {
			t.Errorf("%q: %v, want a usage error", args, err)
		}
	}
}

func writeConfig(t *testing.T, yaml string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "relay.yaml")
	if err := os.WriteFile(p, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestServeConfigErrors(t *testing.T) {
	for _, tc := range []struct{ yaml, want string }{
		{"endpoints: [{name: a/b}]", "endpoints[0].name"},
		{"endpoints: [{name: a}]\nwindw: 3", "windw"},
		{"addr: nope\nendpoints: [{name: a}]", "addr"},
	} {
		var out bytes.Buffer
		err := run(context.Background(), []string{"serve", "--config", writeConfig(t, tc.yaml), "--data", t.TempDir()}, &out, &out)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("config %q: %v, want an error naming %q", tc.yaml, err, tc.want)
		}
	}
}

// TestServe runs serve with the address from --addr (the file's is unusable: flag > file),
// waits for /healthz and stops it with a cancelled context, as SIGTERM does.
func TestServe(t *testing.T) {
	addr := testutil.FreeAddr(t)
	cfg := writeConfig(t, "addr: 127.0.0.1:1\nendpoints: [{name: a}]\n")
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	var out bytes.Buffer
	go func() {
		done <- run(ctx, []string{"serve", "--config", cfg, "--addr", addr, "--data", t.TempDir(), "--log-level", "warn"}, &out, &out)
	}()
	deadline := time.Now().Add(10 * time.Second)
	for {
		resp, err := http.Get("http://" + addr + "/healthz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				break
			}
		}
		select {
		case err := <-done:
			t.Fatalf("serve ended early: %v", err)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatal("serve did not answer /healthz within 10s")
		}
		time.Sleep(20 * time.Millisecond)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("serve after cancel: %v, want nil", err)
	}
}
