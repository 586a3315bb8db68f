package relay

import (
	"strings"
	"testing"

	"github.com/hookrelay/hookrelay/protocol"
)

// An agent naming a group an endpoint it asks for does not declare is refused at hello with
// an Error naming both; one of a declared group is welcomed; a version-1 agent (no group)
// is in the default group.
func TestHelloGroupDeclared(t *testing.T) {
	s := startServer(t, func(c *Config) {
		c.Endpoints = []Endpoint{
			{Name: "ep", Tokens: []string{hashOf(tokenA)}, Groups: []string{DefaultGroup, "audit"}},
			{Name: "other", Tokens: []string{hashOf(tokenA)}},
		}
	})
	a := connect(t, s, protocol.Hello{AgentID: "stray", Token: tokenA, Group: "audit"})
	e, ok := a.frame().(*protocol.Error)
	if !ok || e.Code != protocol.CodeUnauthorized || !strings.Contains(e.Reason, `group "audit" is not declared on endpoint "other"`) {
		t.Fatalf("hello of audit for every endpoint: %#v, want an Error naming the group and the endpoint", e)
	}
	b := connect(t, s, protocol.Hello{AgentID: "aud", Token: tokenA, Group: "audit", Endpoints: []string{"ep"}})
	if _, ok := b.frame().(*protocol.Welcome); !ok {
		t.Fatal("audit agent on ep not welcomed")
	}
	c := connect(t, s, protocol.Hello{Version: 1, AgentID: "old", Token: tokenA})
	if _, ok := c.frame().(*protocol.Welcome); !ok {
		t.Fatal("version-1 agent not welcomed")
	}
	// Both get the same webhook, each for its group.
	id := accept(t, s, "/h/ep", []byte("x"))
	if w := b.webhook(); w.ID != id {
		t.Fatalf("audit got %s, want %s", w.ID, id)
	}
	if w := c.webhook(); w.ID != id {
		t.Fatalf("default got %s, want %s", w.ID, id)
	}
}

// A reload that takes a group off an endpoint closes the sessions of that group with an
// Error naming it.
func TestReloadDropsGroup(t *testing.T) {
	s := startServer(t, func(c *Config) {
		c.Endpoints = []Endpoint{{Name: "ep", Tokens: []string{hashOf(tokenA)}, Groups: []string{DefaultGroup, "audit"}}}
	})
	a := connect(t, s, protocol.Hello{AgentID: "aud", Token: tokenA, Group: "audit"})
	if _, ok := a.frame().(*protocol.Welcome); !ok {
		t.Fatal("not welcomed")
	}
	if err := s.Reload(reloaded(s, Endpoint{Name: "ep", Tokens: []string{hashOf(tokenA)}})); err != nil {
		t.Fatal(err)
	}
	got := a.ended()
	if len(got) == 0 {
		t.Fatal("session ended without an Error")
	}
	if e, ok := got[len(got)-1].(*protocol.Error); !ok || !strings.Contains(e.Reason, `group "audit" is not declared on endpoint "ep"`) {
		t.Fatalf("last frame %#v", got[len(got)-1])
	}
}

// Group names are checked at load.
func TestConfigGroups(t *testing.T) {
	for _, bad := range [][]string{{"a.b"}, {""}, {"x", "x"}, {strings.Repeat("g", 65)}} {
		c := &Config{DataDir: t.TempDir(), Endpoints: []Endpoint{{Name: "ep", Groups: bad}}}
		c.applyDefaults()
		if err := c.Validate(); err == nil || !strings.Contains(err.Error(), "groups[") {
			t.Errorf("groups %q: %v, want an error naming groups[i]", bad, err)
		}
	}
}
