package relay

import (
	"strings"
	"testing"
	"time"
)

func TestConfigSyncYAML(t *testing.T) {
	for _, tc := range []struct {
		yaml string
		want SyncConfig
		wait time.Duration
	}{
		{"", SyncConfig{}, DefaultSyncTimeout},
		{"sync: true\n", SyncConfig{Enabled: true}, DefaultSyncTimeout},
		{"sync: false\n", SyncConfig{}, DefaultSyncTimeout},
		{"sync: {timeout: 2500ms}\n", SyncConfig{Enabled: true, Timeout: 2500 * time.Millisecond}, 2500 * time.Millisecond},
		{"sync: {timeout: 60s}\n", SyncConfig{Enabled: true, Timeout: time.Minute}, time.Minute},
		{"sync: {}\n", SyncConfig{Enabled: true}, DefaultSyncTimeout},
	} {
		c, err := parseConfig([]byte("data_dir: /tmp/x\nendpoints:\n  - name: a\n    " + tc.yaml))
		if err != nil {
			t.Fatalf("%q: %v", tc.yaml, err)
		}
		if got := c.Endpoints[0].Sync; got != tc.want || got.wait() != tc.wait {
			t.Errorf("%q: %+v (wait %v), want %+v (wait %v)", tc.yaml, got, got.wait(), tc.want, tc.wait)
		}
	}
}

func TestConfigSyncErrors(t *testing.T) {
	for _, tc := range []struct{ yaml, want string }{
		{"sync: {timeout: 61s}\n", "endpoints[0].sync.timeout: 1m1s is out of range"},
		{"sync: {timeout: -1s}\n", "endpoints[0].sync.timeout: -1s is out of range"},
		{"sync: {timeout: soon}\n", `sync.timeout: "soon" is not a duration`},
		{"sync: {wait: 1s}\n", "sync.wait: unknown key"},
		{"sync: maybe\n", `sync: "maybe" is not true, false or {timeout: 10s}`},
		{"sync: [1]\n", "sync: use true, false or {timeout: 10s}"},
	} {
		_, err := parseConfig([]byte("data_dir: /tmp/x\nendpoints:\n  - name: a\n    " + tc.yaml))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q: %v, want an error with %q", tc.yaml, err, tc.want)
		}
	}
}
