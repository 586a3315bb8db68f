package e2e

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/time/rate"

	"github.com/hookrelay/hookrelay/internal/testutil"
)

const orderedWebhooks = 1000

// TestOrderedSoak: an ordered endpoint (relay) and an ordered route (agent) over QUIC with
// the relay's certificate pinned. One sender posts 1,000 webhooks one after the other, each
// after the previous one's 202, while the agent is killed with SIGKILL twice and the relay
// is restarted (SIGTERM) once. The target sees them in the order of their 202s; a
// redelivery may repeat only the webhook just delivered.
func TestOrderedSoak(t *testing.T) {
	needSoak(t)
	dir := t.TempDir()
	tg := newSoakTarget(2 * time.Millisecond) // slower than the sender: the agent lags, a crash finds a backlog
	srv := httptest.NewServer(tg)
	t.Cleanup(srv.Close)
	relayPort, quicPort := testutil.FreePort(t), testutil.FreePort(t)
	token, hash := newToken(t)
	adminToken, adminHash := newToken(t)
	relayCfg := writeFile(t, filepath.Join(dir, "relay.yaml"), fmt.Sprintf(`addr: 127.0.0.1:%d
quic_addr: 127.0.0.1:%d
data_dir: %s
admin_token: %q
endpoints:
  - name: ordered
    tokens: [%q]
    ordered: true
`, relayPort, quicPort, filepath.Join(dir, "relay-data"), adminHash, hash))
	client := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{Proxy: nil}}
	admin := relayAdmin{client: client, base: fmt.Sprintf("http://127.0.0.1:%d", relayPort), token: adminToken}
	relay := newProc(t, "relay", bin.relay, "serve", "--config", relayCfg)
	relay.start()
	waitServing(t, relay, admin)

	fp, err := runCmd(bin.relay, "fingerprint", "--config", relayCfg)
	if err != nil {
		t.Fatalf("hookrelay fingerprint: %v", err)
	}
	agentCfg := writeFile(t, filepath.Join(dir, "agent.yaml"), fmt.Sprintf(`relay: quic://127.0.0.1:%d
relay_fingerprint: %q
token: %q
agent_id: ordered-agent
data_dir: %s
admin_addr: 127.0.0.1:0
routes:
  - endpoint: ordered
    target: %s/t
    ordered: true
    backoff_min: 50ms
    backoff_max: 500ms
`, quicPort, strings.TrimSpace(fp), token, filepath.Join(dir, "agent-data"), srv.URL))
	agent := newProc(t, "agent", bin.agent, "run", "--config", agentCfg)
	agent.start()
	waitSession(t, agent, admin, 0)
	if tr, err := admin.agentTransport("ordered-agent"); err != nil || tr != "quic" {
		t.Fatalf("the relay lists the agent's session with transport %q (%v), want quic", tr, err)
	}

	s := newSoakSender(client, admin.base+"/h/ordered")
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	done := make(chan struct{})
	t.Cleanup(func() { cancel(); <-done })
	go func() {
		defer close(done)
		lim := rate.NewLimiter(100, 1) // about 10 s of sending: the restarts come while it goes on
		for seq := 1; seq <= orderedWebhooks; seq++ {
			if lim.Wait(ctx) != nil || !s.post(ctx, seq) {
				return
			}
		}
	}()
	// The chaos runs here, on the test's goroutine, when the sender has got that many 202s.
	steps := []struct {
		after int
		what  string
	}{{250, "agent"}, {500, "relay"}, {750, "agent"}}
	for _, st := range steps {
		testutil.WaitFor(t, 2*time.Minute, fmt.Sprintf("%d webhooks accepted", st.after), func() bool { return len(s.accepted()) >= st.after })
		before := tunnelUps(agent)
		tg.mu.Lock()
		t.Logf("%s restart after %d accepted, %d delivered", st.what, len(s.accepted()), len(tg.arrivals))
		tg.mu.Unlock()
		switch st.what {
		case "agent":
			agent.kill()
			pause(ctx, time.Duration(100+rand.IntN(900))*time.Millisecond)
			agent.start()
		case "relay":
			if !relay.signal(syscall.SIGTERM, 20*time.Second) {
				t.Fatal("the relay did not stop within 20 s of SIGTERM")
			}
			relay.start()
			waitServing(t, relay, admin)
		}
		waitSession(t, agent, admin, before)
	}
	<-done
	acc := s.accepted()
	if len(acc) != orderedWebhooks {
		t.Fatalf("%d of %d webhooks accepted; %s", len(acc), orderedWebhooks, s.summary())
	}
	t.Logf("sent: %s", s.summary())
	testutil.CheckFor(t, 90*time.Second, 100*time.Millisecond, func() error {
		if m := tg.missing(acc); len(m) > 0 {
			return fmt.Errorf("%d of %d accepted webhooks have not reached the target (first missing: %s)", len(m), len(acc), m[0])
		}
		return nil
	})

	want := make([]string, 0, len(acc))
	for _, a := range acc {
		want = append(want, a.id)
	}
	if !slices.IsSorted(want) {
		t.Errorf("the ids of one sender's webhooks, in the order of their 202s, are not in id order")
	}
	tg.mu.Lock()
	got := make([]string, 0, len(tg.arrivals))
	for _, a := range tg.arrivals {
		got = append(got, a.id)
	}
	if tg.badN > 0 {
		t.Errorf("%d deliveries were not byte-exact, first: %s", tg.badN, strings.Join(tg.bad, "; "))
	}
	tg.mu.Unlock()
	if unknown := tg.checkUnknown(t, s); unknown > 0 {
		// Stored from an attempt the sender saw fail: its place in the 202 order is unknown.
		t.Logf("%d ids arrived that the sender never got a 202 for; left out of the order check", unknown)
		got = slices.DeleteFunc(got, func(id string) bool { _, ok := s.ids[id]; return !ok })
	}
	for _, p := range orderProblems(want, got) {
		t.Error(p)
	}
	t.Logf("%d deliveries of %d webhooks", len(got), len(want))
}

// orderProblems compares the arrival order got with want, the order of the 202s: with every
// arrival that repeats the one just before it dropped, got must equal want. It names what
// breaks that: ids repeated later than right after themselves, ids that arrived while an
// id accepted later had already arrived, and the first place the two differ.
func orderProblems(want, got []string) []string {
	pos := make(map[string]int, len(want))
	for i, id := range want {
		pos[id] = i
	}
	var collapsed []string
	var laterRepeats, inversions int
	var firstRepeat, firstInversion string
	seen := map[string]bool{}
	highest := -1
	for i, id := range got {
		if i > 0 && got[i-1] == id {
			continue
		}
		collapsed = append(collapsed, id)
		if seen[id] {
			if laterRepeats++; firstRepeat == "" {
				firstRepeat = fmt.Sprintf("%s (202 #%d) again at arrival #%d", id, pos[id]+1, i+1)
			}
		}
		seen[id] = true
		if p, ok := pos[id]; ok {
			if p < highest {
				if inversions++; firstInversion == "" {
					firstInversion = fmt.Sprintf("%s (202 #%d) arrived at #%d after 202 #%d had", id, p+1, i+1, highest+1)
				}
			}
			highest = max(highest, p)
		}
	}
	if slices.Equal(collapsed, want) {
		return nil
	}
	var out []string
	if laterRepeats > 0 {
		out = append(out, fmt.Sprintf("%d redeliveries of an id other than the one just delivered (first: %s)", laterRepeats, firstRepeat))
	}
	if inversions > 0 {
		out = append(out, fmt.Sprintf("%d arrivals out of 202 order (first: %s)", inversions, firstInversion))
	}
	i := 0
	for i < min(len(want), len(collapsed)) && want[i] == collapsed[i] {
		i++
	}
	ctx := func(s []string) string { return strings.Join(s[max(0, i-2):min(len(s), i+3)], " ") }
	out = append(out, fmt.Sprintf("arrivals (immediate repeats dropped: %d of %d) first differ from the 202 order (%d) at #%d: got …%s…, want …%s…",
		len(collapsed), len(got), len(want), i+1, ctx(collapsed), ctx(want)))
	return out
}

// TestOrderProblems: the order check of TestOrderedSoak accepts exactly the orders the
// contract allows (an immediate repeat of the id just delivered) and names the rest.
func TestOrderProblems(t *testing.T) {
	want := []string{"a", "b", "c", "d"}
	for _, got := range [][]string{{"a", "b", "c", "d"}, {"a", "a", "b", "c", "c", "c", "d"}} {
		if p := orderProblems(want, got); p != nil {
			t.Errorf("%v: %q, want none", got, p)
		}
	}
	for _, c := range []struct {
		got  []string
		name string
	}{
		{[]string{"a", "c", "b", "d"}, "out of 202 order"},
		{[]string{"a", "b", "a", "c", "d"}, "other than the one just delivered"},
		{[]string{"a", "b", "c"}, "first differ"},
		{[]string{"a", "b", "c", "d", "e"}, "first differ"},
	} {
		p := orderProblems(want, c.got)
		if !strings.Contains(strings.Join(p, "\n"), c.name) {
			t.Errorf("%v: %q, want a problem naming %q", c.got, p, c.name)
		}
	}
}

// waitServing waits until the relay answers /readyz; it fails at once, with the relay's
// last words, if the relay exits instead (a config it refuses, say).
func waitServing(t testing.TB, relay *proc, admin relayAdmin) {
	t.Helper()
	testutil.CheckFor(t, 20*time.Second, 50*time.Millisecond, func() error {
		if relay.exited() {
			b, _ := os.ReadFile(relay.log)
			lines := strings.Split(strings.TrimSpace(string(b)), "\n")
			t.Fatalf("the relay exited (code %d) instead of serving: %s", relay.exitCode(), strings.Join(lines[max(0, len(lines)-3):], "\n"))
		}
		var s string
		code, err := admin.get("/readyz", &s)
		if err == nil && code != 200 {
			err = fmt.Errorf("readyz %d", code)
		}
		return err
	})
}

// waitSession waits until the agent has logged more sessions up than before and the relay
// lists it.
func waitSession(t *testing.T, agent *proc, admin relayAdmin, before int) {
	t.Helper()
	testutil.CheckFor(t, 60*time.Second, 50*time.Millisecond, func() error {
		if n := tunnelUps(agent); n <= before {
			return fmt.Errorf("the agent has logged no new session (%d so far)", n)
		}
		return admin.agentConnected("ordered-agent")
	})
}

// exited reports whether the process's last run has ended.
func (p *proc) exited() bool {
	p.mu.Lock()
	done := p.done
	p.mu.Unlock()
	if done == nil {
		return false
	}
	select {
	case <-done:
		return true
	default:
		return false
	}
}
