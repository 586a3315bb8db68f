package buildinfo

import (
	"strings"
	"testing"
)

func TestLine(t *testing.T) {
	if got := Line("hookagent", "v1.2.3", "abc123"); got != "hookagent v1.2.3 abc123" {
		t.Errorf("with ldflags: %q", got)
	}
	got := strings.Fields(Line("hookrelay", "dev", "unknown"))
	if len(got) != 3 || got[0] != "hookrelay" || got[1] == "" || got[2] == "" {
		t.Errorf("without ldflags: %q, want three fields", got)
	}
}
