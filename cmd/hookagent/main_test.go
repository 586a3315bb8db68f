package main

import (
	"bytes"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

func TestVersion(t *testing.T) {
	var out, errOut bytes.Buffer
	if code := run([]string{"--version"}, &out, &errOut); code != 0 {
		t.Fatalf("exit %d: %s", code, errOut.String())
	}
	if !regexp.MustCompile(`^hookagent \S+ \S+\n$`).MatchString(out.String()) {
		t.Fatalf("version line %q", out.String())
	}
}

func TestUsageErrors(t *testing.T) {
	var out, errOut bytes.Buffer
	if code := run(nil, &out, &errOut); code != 2 {
		t.Fatalf("no args: exit %d", code)
	}
	if code := run([]string{"frobnicate"}, &out, &errOut); code != 2 || !strings.Contains(errOut.String(), "frobnicate") {
		t.Fatalf("unknown command: exit %d, %q", code, errOut.String())
	}
}

func TestConfigErrorExits(t *testing.T) {
	t.Setenv("HOOKAGENT_TOKEN", "")
	path := filepath.Join(t.TempDir(), "agent.yaml")
	os.WriteFile(path, []byte("relay: ftp://x\ntoken: t\ndata_dir: /tmp/x\nroutes: [{endpoint: e, target: 'http://127.0.0.1:1/'}]\n"), 0o600)
	var out, errOut bytes.Buffer
	code := run([]string{"run", "--config", path}, &out, &errOut)
	if code == 0 || !strings.Contains(errOut.String(), "config relay") {
		t.Fatalf("bad config: exit %d, stderr %q", code, errOut.String())
	}
	errOut.Reset()
	if code := run([]string{"run", "--config", path + ".missing"}, &out, &errOut); code == 0 {
		t.Fatal("missing config accepted")
	}
	if code := run([]string{"run", "--config", path, "--log-level", "loud"}, &out, &errOut); code == 0 {
		t.Fatal("bad --log-level accepted")
	}
}
