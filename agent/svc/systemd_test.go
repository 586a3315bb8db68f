package svc

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestHiddenBy(t *testing.T) {
	for path, want := range map[string]string{
		"/home/ann/agent.yaml":      "/home",
		"/root/hookagent":           "/root",
		"/tmp/x/agent.yaml":         "/tmp",
		"/var/tmp/agent.yaml":       "/var/tmp",
		"/run/user/1000/agent.yaml": "/run/user",
		"/etc/hookagent/agent.yaml": "",
		"/homework/agent.yaml":      "",
		"/usr/local/bin/hookagent":  "",
	} {
		if got := hiddenBy(path); got != want {
			t.Errorf("hiddenBy(%q) = %q, want %q", path, got, want)
		}
	}
}

func TestOpenToOthers(t *testing.T) {
	dir := t.TempDir()
	// t.TempDir's own parent is 0700: open both to others.
	for _, d := range []string{filepath.Dir(dir), dir} {
		if err := os.Chmod(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	write := func(rel string, mode fs.FileMode) string {
		p := filepath.Join(dir, rel)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte("x"), mode); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(p, mode); err != nil {
			t.Fatal(err)
		}
		return p
	}
	open := write("open/agent.yaml", 0o644)
	private := write("open/private.yaml", 0o600)
	closedDir := write("closed/agent.yaml", 0o644)
	if err := os.Chmod(filepath.Dir(closedDir), 0o700); err != nil {
		t.Fatal(err)
	}
	exe := write("open/hookagent", 0o755)
	noExec := write("open/hookagent-noexec", 0o744)

	for _, tc := range []struct {
		path string
		perm fs.FileMode
		ok   bool
	}{
		{open, 0o004, true},
		{private, 0o004, false},
		{closedDir, 0o004, false},
		{exe, 0o005, true},
		{noExec, 0o005, false},
		{filepath.Join(dir, "missing"), 0o004, false},
	} {
		err := openToOthers(tc.path, tc.perm)
		if (err == nil) != tc.ok {
			t.Errorf("openToOthers(%s, %o) = %v, want ok=%v", tc.path, tc.perm, err, tc.ok)
		}
		if err != nil && !tc.ok && !errors.Is(err, fs.ErrPermission) && !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("openToOthers(%s): %v is neither ErrPermission nor ErrNotExist", tc.path, err)
		}
	}
}

func TestReachableSaysWhy(t *testing.T) {
	err := reachable("/home/ann/agent.yaml", 0o004, "config", "e.g. /etc/hookagent/agent.yaml")
	if err == nil || !strings.Contains(err.Error(), "ProtectHome") || !strings.Contains(err.Error(), "/etc/hookagent/agent.yaml") {
		t.Fatalf("got %v, want an error naming ProtectHome and the fix", err)
	}
}
