package procinfo

import (
	"os"
	"slices"
	"strings"
	"testing"
)

func TestStatusAndCleanEnv(t *testing.T) {
	if _, err := os.Stat("/proc/self/status"); err != nil {
		t.Skip("no /proc here")
	}
	if rss, peak := Status(os.Getpid(), "VmRSS"), Status(os.Getpid(), "VmHWM"); rss <= 0 || peak < rss {
		t.Fatalf("VmRSS %d KiB, VmHWM %d KiB: want 0 < rss <= peak", rss, peak)
	}
	if n := Status(os.Getpid(), "NoSuchField"); n != 0 {
		t.Fatalf("a missing field gave %d", n)
	}
	t.Setenv("HTTPS_PROXY", "http://proxy.invalid")
	t.Setenv("HOOKAGENT_TOKEN", "secret")
	t.Setenv("PROCINFO_KEEP", "1")
	env := CleanEnv()
	if !slices.Contains(env, "PROCINFO_KEEP=1") {
		t.Fatal("CleanEnv dropped an ordinary variable")
	}
	for _, kv := range env {
		if strings.HasPrefix(kv, "HTTPS_PROXY=") || strings.HasPrefix(kv, "HOOKAGENT_TOKEN=") {
			t.Fatalf("CleanEnv kept %s", kv)
		}
	}
}
