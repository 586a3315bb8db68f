package agent

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/hookrelay/hookrelay/internal/testutil"
	"github.com/hookrelay/hookrelay/relay"
)

const groupsAdminToken = "hr_admin_groups_test"

// groupsRelay runs a relay whose endpoint ep declares the groups default and audit.
func groupsRelay(t *testing.T) *relay.Server {
	sum := sha256.Sum256([]byte(groupsAdminToken))
	return startRelayWith(t, false, func(c *relay.Config) {
		c.Endpoints[0].Groups = []string{relay.DefaultGroup, "audit"}
		c.AdminToken = "sha256:" + hex.EncodeToString(sum[:])
	})
}

// groupAgent runs an agent of group toward s, delivering ep to tg, until stop (or the test's
// end); stop cancels it without its shutdown grace.
func groupAgent(t *testing.T, s *relay.Server, id, group string, tg *target, mutate func(*Config)) (stop func(), logs *testutil.SyncBuffer) {
	t.Helper()
	logs = &testutil.SyncBuffer{}
	cfg := &Config{
		Relay: "ws://" + s.Addr(), Token: autoToken, AgentID: id, Group: group, DataDir: t.TempDir(),
		AdminAddr: "off", ShutdownGrace: time.Millisecond,
		Routes: []Route{{Endpoint: "ep", Target: tg.URL}},
	}
	if mutate != nil {
		mutate(cfg)
	}
	a, err := New(cfg, slog.New(slog.NewTextHandler(logs, nil)))
	if err != nil {
		t.Fatal(err)
	}
	run := testutil.Start(t, a.Run, nil)
	stop = func() { run(); a.Close() }
	t.Cleanup(func() {
		stop()
		if t.Failed() {
			t.Logf("agent %s log:\n%s", id, logs)
		}
	})
	return stop, logs
}

// adminCall sends an admin API request to s and decodes the JSON answer into out (when set).
func relayAdmin(t *testing.T, s *relay.Server, method, path string, out any) int {
	t.Helper()
	req, _ := http.NewRequest(method, "http://"+s.Addr()+path, nil)
	req.Header.Set("Authorization", "Bearer "+groupsAdminToken)
	req.Header.Set("X-Requested-With", "hookrelay")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if out != nil && resp.StatusCode < 300 {
		if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
			t.Fatalf("%s %s: %v", method, path, err)
		}
	}
	return resp.StatusCode
}

type groupsView struct {
	State  string            `json:"state"`
	Groups map[string]string `json:"groups"`
}

func waitGroups(t *testing.T, s *relay.Server, id, state string, groups map[string]string) {
	t.Helper()
	testutil.CheckFor(t, 20*time.Second, 20*time.Millisecond, func() error {
		var v groupsView
		if code := relayAdmin(t, s, "GET", "/admin/api/webhooks/"+id, &v); code != http.StatusOK {
			return fmt.Errorf("get %s: %d", id, code)
		}
		if v.State != state || fmt.Sprint(v.Groups) != fmt.Sprint(groups) {
			return fmt.Errorf("%s: %s %v, want %s %v", id, v.State, v.Groups, state, groups)
		}
		return nil
	})
}

// Two groups, two agents sharing the default one and one in audit: each group gets every
// webhook once; an agent of the default group going away changes nothing for audit.
func TestConsumerGroupsDeliverToEachGroup(t *testing.T) {
	s := groupsRelay(t)
	main, audit := newTarget(t, nil), newTarget(t, nil)
	stop1, _ := groupAgent(t, s, "main-1", "", main, nil)
	groupAgent(t, s, "main-2", relay.DefaultGroup, main, nil)
	groupAgent(t, s, "audit-1", "audit", audit, nil)

	var ids []string
	for i := range 30 {
		ids = append(ids, postWebhook(t, s, fmt.Sprintf("first %d", i)))
	}
	waitDelivered(t, main, ids...)
	waitDelivered(t, audit, ids...)
	waitGroups(t, s, ids[0], "delivered", map[string]string{"audit": "delivered", "default": "delivered"})

	// One default agent killed (cancelled with no grace) while webhooks arrive.
	var more []string
	for i := range 30 {
		if i == 5 {
			stop1()
		}
		more = append(more, postWebhook(t, s, fmt.Sprintf("second %d", i)))
	}
	// Audit: each exactly once. (Requests are counted by id: a target's port may be one that
	// a process elsewhere on the machine still retries toward.)
	waitDelivered(t, audit, append(ids, more...)...)
	testutil.CheckFor(t, 20*time.Second, 20*time.Millisecond, func() error {
		for _, id := range more {
			if len(main.requests(id)) == 0 {
				return fmt.Errorf("%s not delivered to the default group", id)
			}
		}
		return nil
	})
}

// An agent whose group the endpoint does not declare is refused at hello, with a reason
// naming the group and the endpoint, which it logs.
func TestConsumerGroupUndeclaredRefused(t *testing.T) {
	s := groupsRelay(t)
	_, logs := groupAgent(t, s, "stray-1", "billing", newTarget(t, nil), nil)
	testutil.CheckFor(t, 20*time.Second, 20*time.Millisecond, func() error {
		if !strings.Contains(logs.String(), `group \"billing\" is not declared on endpoint \"ep\"`) {
			return fmt.Errorf("no refusal logged yet")
		}
		return nil
	})
	var agents struct{ Agents []any }
	relayAdmin(t, s, "GET", "/admin/api/agents", &agents)
	if len(agents.Agents) != 0 {
		t.Fatalf("a refused agent is connected: %v", agents.Agents)
	}
}

// The admin API shows each group's state and takes ?group= on replay and dead letters.
func TestConsumerGroupsAdmin(t *testing.T) {
	s := groupsRelay(t)
	main := newTarget(t, nil)
	audit := newTarget(t, func(r *http.Request, n int) (int, http.Header) {
		if r.Header.Get("X-Die") != "" && n == 1 {
			return http.StatusInternalServerError, nil
		}
		return http.StatusOK, nil
	})
	groupAgent(t, s, "main-1", "", main, nil)
	groupAgent(t, s, "audit-1", "audit", audit, func(c *Config) { c.Routes[0].MaxAttempts = 1 })

	testutil.CheckFor(t, 20*time.Second, 20*time.Millisecond, func() error {
		var agents struct {
			Agents []struct {
				AgentID string `json:"agent_id"`
				Group   string `json:"group"`
			} `json:"agents"`
		}
		relayAdmin(t, s, "GET", "/admin/api/agents", &agents)
		if fmt.Sprint(agents.Agents) != "[{audit-1 audit} {main-1 default}]" && fmt.Sprint(agents.Agents) != "[{main-1 default} {audit-1 audit}]" {
			return fmt.Errorf("agents %v", agents.Agents)
		}
		return nil
	})
	ok := postWebhook(t, s, "fine")
	waitDelivered(t, audit, ok)
	waitGroups(t, s, ok, "delivered", map[string]string{"audit": "delivered", "default": "delivered"})
	// Replay for audit only.
	if code := relayAdmin(t, s, "POST", "/admin/api/webhooks/"+ok+"/replay?group=audit", nil); code != http.StatusAccepted {
		t.Fatalf("replay ?group=audit: %d", code)
	}
	testutil.CheckFor(t, 20*time.Second, 20*time.Millisecond, func() error {
		if n := len(audit.requests(ok)); n != 2 {
			return fmt.Errorf("audit saw it %d times", n)
		}
		return nil
	})
	if code := relayAdmin(t, s, "POST", "/admin/api/webhooks/"+ok+"/replay?group=nope", nil); code != http.StatusBadRequest {
		t.Fatalf("replay of an undeclared group: %d, want 400", code)
	}

	req, _ := http.NewRequest("POST", "http://"+s.Addr()+"/h/ep/x", strings.NewReader("dies"))
	req.Header.Set("X-Die", "1")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	var out struct{ ID string }
	json.NewDecoder(resp.Body).Decode(&out)
	resp.Body.Close()
	dead := out.ID
	waitGroups(t, s, dead, "dead", map[string]string{"audit": "dead", "default": "delivered"})
	var list struct{ Webhooks []groupsView }
	relayAdmin(t, s, "GET", "/admin/api/dead", &list)
	if len(list.Webhooks) != 1 || list.Webhooks[0].Groups["audit"] != "dead" {
		t.Fatalf("dead list: %+v", list.Webhooks)
	}
	if code := relayAdmin(t, s, "DELETE", "/admin/api/dead/"+dead+"?group=default", nil); code != http.StatusConflict {
		t.Fatalf("delete of a group where it is delivered: %d, want 409", code)
	}
	var replayed struct{ Count int }
	if code := relayAdmin(t, s, "POST", "/admin/api/dead/replay?group=audit", &replayed); code != http.StatusAccepted || replayed.Count != 1 {
		t.Fatalf("dead/replay ?group=audit: %d, %d", code, replayed.Count)
	}
	waitGroups(t, s, dead, "delivered", map[string]string{"audit": "delivered", "default": "delivered"})
	if n := len(main.requests(dead)); n != 1 {
		t.Fatalf("the default group got it %d times", n)
	}
}
