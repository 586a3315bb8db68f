package pkgtest

import (
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
)

// maxExposure is the highest `systemd-analyze security` exposure each unit
// may score (0 = locked down, 10 = unprotected). The relay keeps
// CAP_NET_BIND_SERVICE and so cannot use PrivateUsers=; it scores 1.4.
var maxExposure = map[string]float64{
	"hookagent.service": 2.0,
	"hookrelay.service": 1.5,
}

// TestUnitSecurity checks the shipped units: `systemd-analyze verify` says
// nothing about them and their exposure stays low.
func TestUnitSecurity(t *testing.T) {
	sa := requireTool(t, "systemd-analyze")
	for unit, limit := range maxExposure {
		t.Run(unit, func(t *testing.T) {
			src := filepath.Join(repoRoot, "systemd", unit)
			prog := strings.TrimSuffix(unit, ".service")
			verifyUnit(t, sa, src, map[string]string{"/usr/bin/" + prog: "#!/bin/sh\n"})
			if got := exposure(t, sa, src); got > limit {
				t.Errorf("%s exposure %.1f, want ≤ %.1f", unit, got, limit)
			} else {
				t.Logf("%s exposure %.1f", unit, got)
			}
		})
	}
}

// verifyUnit runs `systemd-analyze verify` on a copy of unit in a root
// holding the system's units and the given files (ExecStart must exist).
// verify exits 0 on unknown keys and bad values, so any output naming the
// unit fails the test.
func verifyUnit(t *testing.T, sa, unit string, files map[string]string) {
	t.Helper()
	root := t.TempDir()
	sys := filepath.Join(root, "usr/lib/systemd/system")
	run(t, "", nil, "mkdir", "-p", filepath.Dir(sys))
	run(t, "", nil, "cp", "-a", "/usr/lib/systemd/system", sys)
	for p, content := range files {
		dst := filepath.Join(root, p)
		if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(dst, []byte(content), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	b, err := os.ReadFile(unit)
	if err != nil {
		t.Fatal(err)
	}
	name := filepath.Base(unit)
	if err := os.WriteFile(filepath.Join(sys, name), b, 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := runErr("", nil, sa, "verify", "--root="+root, name)
	if err != nil || strings.Contains(out, strings.TrimSuffix(name, ".service")) {
		t.Errorf("systemd-analyze verify %s: %v\n%s", name, err, out)
	}
}

var exposureLine = regexp.MustCompile(`Overall exposure level for \S+: ([0-9.]+)`)

// exposure is the "Overall exposure level" of `systemd-analyze security`.
func exposure(t *testing.T, sa, unit string) float64 {
	t.Helper()
	out, _ := runErr("", nil, sa, "security", "--offline=yes", "--no-pager", unit)
	m := exposureLine.FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("systemd-analyze security %s: no exposure line in\n%s", unit, out)
	}
	v, err := strconv.ParseFloat(m[1], 64)
	if err != nil {
		t.Fatalf("exposure %q: %v", m[1], err)
	}
	return v
}
