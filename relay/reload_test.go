package relay

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/hookrelay/hookrelay/internal/testutil"
	"github.com/hookrelay/hookrelay/protocol"
	"github.com/hookrelay/hookrelay/relay/verify"
)

// captureLogs returns a logger writing at debug level to the returned buffer as well as to
// the test's output.
func captureLogs(t *testing.T) (*testutil.SyncBuffer, *slog.Logger) {
	buf := &testutil.SyncBuffer{}
	h := slog.NewTextHandler(buf, &slog.HandlerOptions{Level: slog.LevelDebug})
	return buf, slog.New(teeHandler{h, testLogger(t).Handler()})
}

type teeHandler struct{ a, b slog.Handler }

func (t teeHandler) Enabled(ctx context.Context, l slog.Level) bool {
	return t.a.Enabled(ctx, l) || t.b.Enabled(ctx, l)
}
func (t teeHandler) Handle(ctx context.Context, r slog.Record) error {
	t.a.Handle(ctx, r.Clone())
	return t.b.Handle(ctx, r)
}
func (t teeHandler) WithAttrs(as []slog.Attr) slog.Handler {
	return teeHandler{t.a.WithAttrs(as), t.b.WithAttrs(as)}
}
func (t teeHandler) WithGroup(n string) slog.Handler {
	return teeHandler{t.a.WithGroup(n), t.b.WithGroup(n)}
}

// twoEndpoints: ep for token A; shared for tokens A and B.
func twoEndpoints(c *Config) {
	c.Endpoints = []Endpoint{
		{Name: "ep", Tokens: []string{hashOf(tokenA)}},
		{Name: "shared", Tokens: []string{hashOf(tokenA), hashOf(tokenB)}},
	}
}

// reloaded returns a copy of s's config with endpoints replaced.
func reloaded(s *Server, eps ...Endpoint) *Config {
	c := *s.Config()
	c.Endpoints = eps
	return &c
}

func TestReloadRevokesToken(t *testing.T) {
	logs, log := captureLogs(t)
	s := startServerLog(t, twoEndpoints, log)
	a := dial(t, s, tokenA, "edge-a")
	b := dial(t, s, tokenB, "edge-b")
	if fmt.Sprint(a.welcome.Endpoints) != "[ep shared]" || fmt.Sprint(b.welcome.Endpoints) != "[shared]" {
		t.Fatalf("granted a %v b %v", a.welcome.Endpoints, b.welcome.Endpoints)
	}
	// Token A is removed everywhere.
	err := s.Reload(reloaded(s,
		Endpoint{Name: "ep"},
		Endpoint{Name: "shared", Tokens: []string{hashOf(tokenB)}}))
	if err != nil {
		t.Fatal(err)
	}
	got := a.ended()
	if len(got) == 0 {
		t.Fatal("revoked session ended without an Error")
	}
	if e, ok := got[len(got)-1].(*protocol.Error); !ok || e.Code != protocol.CodeUnauthorized || e.Reason != "token revoked" {
		t.Fatalf("revoked session's last frame %#v, want Error{unauthorized, token revoked}", got[len(got)-1])
	}
	// B's grants did not change: its session stays and keeps receiving.
	id := accept(t, s, "/h/shared", []byte("for b"))
	if w := b.webhook(); w.ID != id {
		t.Fatalf("b got %s, want %s", w.ID, id)
	}
	// A cannot come back, and what arrives for ep meanwhile waits.
	waiting := accept(t, s, "/h/ep", []byte("waits"))
	r := connect(t, s, protocol.Hello{AgentID: "edge-a", Token: tokenA})
	if got := r.ended(); len(got) != 1 || got[0].(*protocol.Error).Code != protocol.CodeUnauthorized {
		t.Fatalf("revoked token reconnecting got %v, want Error{unauthorized}", got)
	}
	// B is granted ep too: its session is asked to reconnect, and then receives it.
	err = s.Reload(reloaded(s,
		Endpoint{Name: "ep", Tokens: []string{hashOf(tokenB)}},
		Endpoint{Name: "shared", Tokens: []string{hashOf(tokenB)}}))
	if err != nil {
		t.Fatal(err)
	}
	got = b.ended()
	if g, ok := got[len(got)-1].(*protocol.GoAway); !ok || g.ReconnectAfter > 2*time.Second {
		t.Fatalf("regranted session's last frame %#v, want a prompt GoAway", got[len(got)-1])
	}
	b2 := dial(t, s, tokenB, "edge-b")
	if fmt.Sprint(b2.welcome.Endpoints) != "[ep shared]" {
		t.Fatalf("after reconnect b granted %v", b2.welcome.Endpoints)
	}
	if w := b2.webhook(); w.ID != waiting {
		t.Fatalf("b got %s, want the waiting %s", w.ID, waiting)
	}
	if counterValue(t, s.metrics.sessionsEnded.WithLabelValues("revoked")) != 1 {
		t.Error("revoked session not counted")
	}
	for _, tok := range []string{tokenA, tokenB} {
		if strings.Contains(logs.String(), tok) {
			t.Errorf("a token was logged:\n%s", logs.String())
		}
	}
}

func TestReloadKeepsHealthySessions(t *testing.T) {
	s := startServer(t, twoEndpoints)
	a := dial(t, s, tokenA, "edge-a")
	// New limits and a new endpoint; A's grants are the same.
	c := reloaded(s,
		Endpoint{Name: "ep", Tokens: []string{hashOf(tokenA)}, MaxBody: 10},
		Endpoint{Name: "shared", Tokens: []string{hashOf(tokenA), hashOf(tokenB)}},
		Endpoint{Name: "new", Tokens: []string{hashOf(tokenB)}})
	if err := s.Reload(c); err != nil {
		t.Fatal(err)
	}
	id := accept(t, s, "/h/ep", []byte("small"))
	if w := a.webhook(); w.ID != id {
		t.Fatalf("session after reload got %s, want %s", w.ID, id)
	}
	if code, _, _ := post(t, s, "POST", "/h/ep", make([]byte, 11), nil); code != 413 {
		t.Errorf("new max_body not applied: %d, want 413", code)
	}
	accept(t, s, "/h/new", []byte("x"))
	if got := s.Agents(); len(got) != 1 || got[0].AgentID != "edge-a" {
		t.Errorf("agents after reload %+v", got)
	}
}

func TestReloadRefusesBadConfig(t *testing.T) {
	logs, log := captureLogs(t)
	s := startServerLog(t, twoEndpoints, log)
	a := dial(t, s, tokenA, "edge-a")
	for name, c := range map[string]*Config{
		"token not a hash": reloaded(s, Endpoint{Name: "ep", Tokens: []string{tokenA}}),
		"no endpoints":     reloaded(s),
		"bad verify": reloaded(s, Endpoint{Name: "ep", Tokens: []string{hashOf(tokenA)},
			Verify: &verify.Config{HMAC: &verify.HMACConfig{Secrets: verify.Secrets{Secret: "s"}, Algorithm: "md5", Header: "X"}}}),
	} {
		if err := s.Reload(c); err == nil {
			t.Errorf("%s: reload accepted", name)
		}
	}
	if !strings.Contains(logs.String(), "config reload refused") || !strings.Contains(logs.String(), "endpoints[0].tokens[0]") ||
		!strings.Contains(logs.String(), "verify.hmac.algorithm") {
		t.Errorf("refusals not logged with the key at fault:\n%s", logs.String())
	}
	if strings.Contains(logs.String(), tokenA) {
		t.Error("a token given in place of a hash was logged")
	}
	// The old config stays in force: the session and both endpoints work.
	id := accept(t, s, "/h/ep", []byte("still"))
	if w := a.webhook(); w.ID != id {
		t.Fatalf("got %s, want %s", w.ID, id)
	}
	accept(t, s, "/h/shared", []byte("still"))
	if counterValue(t, s.metrics.reloads.WithLabelValues("refused")) != 3 {
		t.Error("refused reloads not counted")
	}
}

func TestReloadKeepsRestartKeys(t *testing.T) {
	logs, log := captureLogs(t)
	s := startServerLog(t, nil, log)
	c := *s.Config()
	addr, dir := c.Addr, c.DataDir
	c.Addr, c.DataDir = "127.0.0.1:1", t.TempDir()
	c.Endpoints = []Endpoint{{Name: "ep", Tokens: []string{hashOf(tokenA)}, Rate: 1000}}
	if err := s.Reload(&c); err != nil {
		t.Fatal(err)
	}
	if got := s.Config(); got.Addr != addr || got.DataDir != dir || got.Endpoints[0].Rate != 1000 {
		t.Errorf("after reload addr %q data_dir %q rate %v; want the running addr and dir, the new rate", got.Addr, got.DataDir, got.Endpoints[0].Rate)
	}
	if !strings.Contains(logs.String(), "need a restart") || !strings.Contains(logs.String(), "data_dir") {
		t.Errorf("no warning naming the keys kept:\n%s", logs.String())
	}
}
