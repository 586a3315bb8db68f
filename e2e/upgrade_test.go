package e2e

import (
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
	"time"
)

// previousRelease is the commit of the release before protocol version 2 (acknowledged
// reports): its agents and relays must keep working against this version's.
const previousRelease = "bc63c79"

var prevBin struct {
	once         sync.Once
	relay, agent string
	err          string
}

// previousBinaries builds previousRelease's hookrelay and hookagent from this repository's
// history (git archive, then go build), once per test process.
func previousBinaries(t *testing.T) (relay, agent string) {
	t.Helper()
	if err := exec.Command("git", "-C", "..", "cat-file", "-e", previousRelease+"^{commit}").Run(); err != nil {
		// A clone without that history (shallow): nothing to build from, whatever CI says.
		t.Skipf("commit %s of the previous release is not in this clone's history: %v", previousRelease, err)
	}
	prevBin.once.Do(func() {
		dir, err := os.MkdirTemp("", "hookrelay-prev-")
		if err != nil {
			prevBin.err = err.Error()
			return
		}
		src := filepath.Join(dir, "src")
		if err := os.Mkdir(src, 0o755); err != nil {
			prevBin.err = err.Error()
			return
		}
		archive := exec.Command("sh", "-c", "git -C .. archive "+previousRelease+" | tar -x -C "+src)
		if out, err := archive.CombinedOutput(); err != nil {
			prevBin.err = "git archive " + previousRelease + ": " + err.Error() + ": " + string(out)
			return
		}
		build := exec.Command("go", "build", "-o", dir+"/", "./cmd/hookrelay", "./cmd/hookagent")
		build.Dir = src
		if out, err := build.CombinedOutput(); err != nil {
			prevBin.err = "build " + previousRelease + ": " + err.Error() + ": " + string(out)
			return
		}
		prevBin.relay, prevBin.agent = filepath.Join(dir, "hookrelay"), filepath.Join(dir, "hookagent")
	})
	if prevBin.err != "" {
		t.Fatalf("the previous release does not build: %s", prevBin.err)
	}
	return prevBin.relay, prevBin.agent
}

// TestMixedVersions: an agent of the previous release (protocol 1) against this relay, and
// this agent against a relay of the previous release (which refuses Hello version 2: the agent
// says Hello again in version 1). Either way every webhook arrives byte-exact, and once.
func TestMixedVersions(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the previous release")
	}
	oldRelay, oldAgent := previousBinaries(t)
	for _, tc := range []struct {
		name string
		o    worldOpts
	}{
		{"old agent, new relay", worldOpts{agentBin: oldAgent}},
		{"new agent, old relay", worldOpts{relayBin: oldRelay}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w := newWorld(t, tc.o)
			s := &sender{w: w}
			s.sendN(60, 4)
			if dups := w.verify(s, 30*time.Second); dups != 0 {
				t.Errorf("%d duplicate deliveries without a crash", dups)
			}
			if tc.o.relayBin != "" && !w.agents[0].logContains("older protocol version") {
				t.Error("the agent did not say it fell back to protocol version 1")
			}
		})
	}
}
