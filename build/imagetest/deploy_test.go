package imagetest

import (
	"testing"

	"github.com/hookrelay/hookrelay/agent"
	"github.com/hookrelay/hookrelay/relay"
)

// TestDeployConfigs loads the example configs of deploy/compose.yaml as the programs in the
// image will, so the documented setup starts.
func TestDeployConfigs(t *testing.T) {
	if _, err := relay.LoadConfig("../../deploy/relay.yaml"); err != nil {
		t.Errorf("deploy/relay.yaml: %v", err)
	}
	t.Setenv(agent.TokenEnv, "hr_example")
	c, err := agent.LoadConfig("../../deploy/agent.yaml")
	if err != nil {
		t.Fatalf("deploy/agent.yaml: %v", err)
	}
	if c.DataDir != "/var/lib/hookagent" {
		t.Errorf("deploy/agent.yaml data_dir %q, want the image's /var/lib/hookagent", c.DataDir)
	}
}
