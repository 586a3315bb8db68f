package e2e

import (
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/hookrelay/hookrelay/internal/testutil"
)

// newGroupAgent runs agent i of group (its deliveries carry X-Group) toward w's relay.
func (w *world) newGroupAgent(i int, group string) *proc {
	cfg := writeFile(w.t, filepath.Join(w.dir, fmt.Sprintf("agent%d.yaml", i)), fmt.Sprintf(`relay: %s
token: %q
agent_id: agent-%d
group: %s
data_dir: %s
admin_addr: 127.0.0.1:0
routes:
  - endpoint: e2e
    target: %s/base
    concurrency: 16
    backoff_min: 50ms
    backoff_max: 500ms
    headers: {X-Group: %s}
`, w.relayURL(), w.token, i, group, filepath.Join(w.dir, fmt.Sprintf("agent%d-data", i)), w.target.srv.URL, group))
	p := newProc(w.t, fmt.Sprintf("agent%d", i), w.agentBin, "run", "--config", cfg)
	p.start()
	return p
}

// byGroup counts each accepted webhook's deliveries per group (X-Group; none: default).
func (w *world) byGroup(s *sender) map[string]map[string]int {
	w.target.mu.Lock()
	defer w.target.mu.Unlock()
	out := map[string]map[string]int{"default": {}, "audit": {}}
	for _, a := range s.accepted() {
		for _, r := range w.target.got[a.id] {
			g := r.header.Get("X-Group")
			if g == "" {
				g = "default"
			}
			out[g][a.id]++
		}
	}
	return out
}

// TestConsumerGroupsKill: endpoint groups [default, audit], two agents in default and one in
// audit. Each group gets every webhook once; a default agent killed with SIGKILL mid-stream
// changes nothing for audit, which still gets each webhook exactly once.
func TestConsumerGroupsKill(t *testing.T) {
	w := newWorld(t, worldOpts{agents: 2, extraEP: "    groups: [default, audit]\n"})
	w.agents = append(w.agents, w.newGroupAgent(2, "audit"))
	s := &sender{w: w}
	waitGroups := func(what string, exactDefault bool) {
		t.Helper()
		testutil.CheckFor(t, 60*time.Second, 100*time.Millisecond, func() error {
			got := w.byGroup(s)
			for _, a := range s.accepted() {
				if got["audit"][a.id] == 0 || got["default"][a.id] == 0 {
					return fmt.Errorf("%s: %s delivered to audit %d, default %d times", what, a.id, got["audit"][a.id], got["default"][a.id])
				}
			}
			return nil
		})
		got := w.byGroup(s)
		for _, a := range s.accepted() {
			if n := got["audit"][a.id]; n != 1 {
				t.Errorf("%s: %s delivered %d times to audit", what, a.id, n)
			}
			if n := got["default"][a.id]; exactDefault && n != 1 {
				t.Errorf("%s: %s delivered %d times to default before any crash", what, a.id, n)
			}
		}
	}
	s.sendN(200, 8)
	waitGroups("before the kill", true)

	done := make(chan struct{})
	go func() { defer close(done); s.sendN(300, 8) }()
	waitAccepted(t, s, 350) // 150 of the second batch: the kill lands mid-stream
	w.agents[0].kill()
	<-done
	w.agents[0].start() // what it had acked is its own: it delivers that now
	waitGroups("after a default agent was killed", false)
}
