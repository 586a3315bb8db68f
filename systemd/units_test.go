package systemd

import (
	"strings"
	"testing"
)

func TestAgentTemplate(t *testing.T) {
	tmpl, err := AgentTemplate()
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(tmpl, AgentExecStart) || !strings.Contains(tmpl, kardianosExecStart+"\n") {
		t.Fatalf("ExecStart not replaced:\n%s", tmpl)
	}
	// Only ExecStart differs: the installed unit is the packaged unit.
	if back := strings.Replace(tmpl, kardianosExecStart, AgentExecStart, 1); back != Agent {
		t.Fatal("template differs from hookagent.service beyond ExecStart")
	}
}

// TestUnitsMatchPackages pins the paths the units, the packages and
// `hookagent install` agree on.
func TestUnitsMatchPackages(t *testing.T) {
	for _, tc := range []struct {
		unit string
		want []string
	}{
		{Agent, []string{
			"\n" + AgentExecStart + "\n",
			"\nType=notify\n", "\nWatchdogSec=30s\n",
			"\nDynamicUser=yes\n", "\nStateDirectory=hookagent\n", "\nConfigurationDirectory=hookagent\n",
			"\nEnvironmentFile=-/etc/hookagent/env\n", "\nRestart=on-failure\n",
			"\nCapabilityBoundingSet=\n", "\nAmbientCapabilities=\n",
		}},
		{Relay, []string{
			"\nExecStart=/usr/bin/hookrelay serve --config /etc/hookrelay/relay.yaml\n",
			"\nDynamicUser=yes\n", "\nStateDirectory=hookrelay\n", "\nConfigurationDirectory=hookrelay\n",
			"\nEnvironmentFile=-/etc/hookrelay/env\n", "\nRestart=on-failure\n",
			"\nCapabilityBoundingSet=CAP_NET_BIND_SERVICE\n", "\nAmbientCapabilities=CAP_NET_BIND_SERVICE\n",
		}},
	} {
		for _, w := range tc.want {
			if !strings.Contains(tc.unit, w) {
				t.Errorf("unit lacks %q", strings.TrimSpace(w))
			}
		}
	}
}
