// Package systemd holds the hardened unit files of hookagent and hookrelay,
// so the packages (which ship the .service files as they are) and
// `hookagent install` (which renders the agent unit with its own ExecStart)
// share one source of truth.
package systemd

import (
	_ "embed"
	"fmt"
	"strings"
)

// Agent is systemd/hookagent.service as shipped in the packages.
//
//go:embed hookagent.service
var Agent string

// Relay is systemd/hookrelay.service as shipped in the packages.
//
//go:embed hookrelay.service
var Relay string

// AgentExecStart is the ExecStart line of Agent, which AgentTemplate replaces.
const AgentExecStart = "ExecStart=/usr/bin/hookagent run --config /etc/hookagent/agent.yaml"

// kardianosExecStart is ExecStart in the template language of
// kardianos/service (its own engine: keys without a leading dot, functions
// cmd and cmdEscape only).
const kardianosExecStart = "ExecStart={{Path|cmdEscape}}{{range Arguments}} {{.|cmd}}{{end}}"

// AgentTemplate returns Agent as a kardianos/service SystemdScript: the same
// unit with ExecStart taken from the installing binary and its arguments.
func AgentTemplate() (string, error) {
	if strings.Count(Agent, AgentExecStart+"\n") != 1 {
		return "", fmt.Errorf("hookagent.service: want exactly one %q line", AgentExecStart)
	}
	if strings.Contains(Agent, "{{") {
		return "", fmt.Errorf("hookagent.service: contains template braces")
	}
	return strings.Replace(Agent, AgentExecStart+"\n", kardianosExecStart+"\n", 1), nil
}
