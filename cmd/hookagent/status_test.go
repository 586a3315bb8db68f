package main

import (
	"crypto/sha256"
	"encoding/hex"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/hookrelay/hookrelay/agent"
	"github.com/hookrelay/hookrelay/internal/testutil"
)

// TestAdminStatusShowsAgentView: what `hookagent status` prints for a running agent comes from
// the agent's own admin API.
func TestAdminStatusShowsAgentView(t *testing.T) {
	t.Setenv("HOOKAGENT_TOKEN", "")
	dir := t.TempDir()
	adminAddr := testutil.FreeAddr(t)
	path := filepath.Join(dir, "agent.yaml")
	yaml := "relay: ws://" + testutil.FreeAddr(t) + "\ntoken: t\nagent_id: edge-test\ndata_dir: " + filepath.Join(dir, "data") +
		"\nadmin_addr: " + adminAddr + "\nroutes:\n  - endpoint: github\n    target: http://127.0.0.1:1/hooks?secret=x\n"
	runAgentWith(t, path, yaml)

	out := adminStatus(path)
	for _, want := range []string{`"side":"agent"`, `"agent_id":"edge-test"`, `"connected":false`,
		`"endpoint":"github"`, `"target":"http://127.0.0.1:1/hooks"`} {
		if !strings.Contains(out, want) {
			t.Errorf("status output lacks %s:\n%s", want, out)
		}
	}
	if strings.Contains(out, "secret=x") {
		t.Errorf("status shows the target's query:\n%s", out)
	}
}

// TestAdminStatusWithAdminToken: an agent with admin_token answers `hookagent status` only
// with the token, taken from HOOKAGENT_ADMIN_TOKEN; without it the output says so.
func TestAdminStatusWithAdminToken(t *testing.T) {
	t.Setenv("HOOKAGENT_TOKEN", "")
	dir := t.TempDir()
	path := filepath.Join(dir, "agent.yaml")
	sum := sha256.Sum256([]byte("admin-secret"))
	yaml := "relay: ws://" + testutil.FreeAddr(t) + "\ntoken: t\ndata_dir: " + filepath.Join(dir, "data") +
		"\nadmin_addr: " + testutil.FreeAddr(t) + "\nadmin_token: sha256:" + hex.EncodeToString(sum[:]) +
		"\nroutes:\n  - endpoint: github\n    target: http://127.0.0.1:1/hooks\n"
	runAgentWith(t, path, yaml)

	t.Setenv("HOOKAGENT_ADMIN_TOKEN", "")
	if out := adminStatus(path); !strings.Contains(out, "HOOKAGENT_ADMIN_TOKEN") {
		t.Errorf("without the token, status does not say how to give it:\n%s", out)
	}
	t.Setenv("HOOKAGENT_ADMIN_TOKEN", "admin-secret")
	if out := adminStatus(path); !strings.Contains(out, `"side":"agent"`) {
		t.Errorf("with the token, status lacks the agent's view:\n%s", out)
	}
}

// runAgentWith writes yaml to path and runs an agent of that config until the test ends.
func runAgentWith(t *testing.T, path, yaml string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := agent.LoadConfig(path)
	if err != nil {
		t.Fatal(err)
	}
	a, err := agent.New(cfg, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Skipf("admin port taken meanwhile: %v", err)
	}
	t.Cleanup(func() { a.Close() }) // after Run has returned: cleanups run last first
	testutil.RunUntilCleanup(t, a.Run)
}
