package agent

import (
	"bufio"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hookrelay/hookrelay/internal/testutil"
	"github.com/hookrelay/hookrelay/protocol"
)

// scrape fetches the agent's /metrics as series → value ("name{labels}" exactly as exposed).
func scrape(t *testing.T, a *Agent) map[string]float64 {
	t.Helper()
	resp, err := http.Get("http://" + a.AdminAddr() + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(resp.Body)
		t.Fatalf("/metrics: %s %s", resp.Status, b)
	}
	out := map[string]float64{}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if err != nil {
			t.Fatalf("metrics line %q: %v", line, err)
		}
		out[line[:i]] = v
	}
	return out
}

// waitMetric polls /metrics until series has value want.
func waitMetric(t *testing.T, a *Agent, series string, want float64) {
	t.Helper()
	testutil.CheckFor(t, 10*time.Second, 10*time.Millisecond, func() error {
		got, ok := scrape(t, a)[series]
		if !ok || got != want {
			return fmt.Errorf("%s = %v (present %v), want %v", series, got, ok, want)
		}
		return nil
	})
}

func TestMetricsMove(t *testing.T) {
	release := make(chan struct{})
	tg := newTarget(t, func(r *http.Request, n int) (int, http.Header) {
		switch r.Header.Get("Hookrelay-Id") {
		case "bad":
			return http.StatusBadRequest, nil
		case "flaky":
			if n == 1 {
				return http.StatusServiceUnavailable, nil
			}
			return http.StatusOK, nil
		}
		<-release
		return http.StatusOK, nil
	})
	var mu sync.Mutex
	var events []Event
	fr := newFakeRelay(t)
	a := newTestAgentWith(t, fr.url(), func(c *Config) {
		c.OnEvent = func(ev Event) {
			mu.Lock()
			events = append(events, ev)
			mu.Unlock()
		}
	}, fastRoute(tg.URL))
	runAgent(t, a)

	m := scrape(t, a)
	for _, s := range []string{
		`hookagent_tunnel_up{transport="websocket"}`, `hookagent_queue_depth{endpoint="ep"}`,
		`hookagent_webhooks_received_total{endpoint="ep"}`, `hookagent_tunnel_reconnects_total`,
	} {
		if v, ok := m[s]; !ok || v != 0 {
			t.Errorf("before any tunnel: %s = %v (present %v), want 0", s, v, ok)
		}
	}
	for s := range m {
		if !strings.HasPrefix(s, "hookagent_") {
			t.Errorf("metric %s does not start with hookagent_", s)
		}
		if strings.Contains(s, `id="`) {
			t.Errorf("metric %s has an id label", s)
		}
	}

	c := fr.welcome(t)
	v := newView()
	waitMetric(t, a, `hookagent_tunnel_up{transport="websocket"}`, 1)

	// Held at the target: the queue fills.
	const n = 5
	for i := range n {
		c.send(t, webhook(fmt.Sprintf("m%d", i), []byte("body")))
	}
	c.until(t, v, func() bool { return len(v.acked) == n })
	m = scrape(t, a)
	for s, want := range map[string]float64{
		`hookagent_webhooks_received_total{endpoint="ep"}`: n,
		`hookagent_webhooks_stored_total{endpoint="ep"}`:   n,
		`hookagent_queue_depth{endpoint="ep"}`:             n,
	} {
		if m[s] != want {
			t.Errorf("while held: %s = %v, want %v", s, m[s], want)
		}
	}
	if m[`hookagent_queue_bytes{endpoint="ep"}`] <= 0 || m[`hookagent_queue_oldest_age_seconds{endpoint="ep"}`] <= 0 {
		t.Errorf("while held: queue bytes %v, oldest age %v", m[`hookagent_queue_bytes{endpoint="ep"}`], m[`hookagent_queue_oldest_age_seconds{endpoint="ep"}`])
	}
	if m[`hookagent_store_commit_records_count`] < 1 || m[`hookagent_store_fsync_duration_seconds_count`] < 1 {
		t.Errorf("group commits not observed: %v, %v", m[`hookagent_store_commit_records_count`], m[`hookagent_store_fsync_duration_seconds_count`])
	}

	// Released: delivered, the queue drains, outcomes are reported.
	close(release)
	waitMetric(t, a, `hookagent_deliveries_total{endpoint="ep",outcome="delivered",status_class="2xx"}`, n)
	waitMetric(t, a, `hookagent_queue_depth{endpoint="ep"}`, 0)
	c.until(t, v, func() bool { return len(v.reports) == n })
	waitMetric(t, a, `hookagent_reports_sent_total`, n)
	waitMetric(t, a, `hookagent_delivery_duration_seconds_count{endpoint="ep"}`, n)

	// A duplicate, a nack, a retry and a dead letter.
	c.send(t, webhook("m0", []byte("body")))
	other := webhook("o1", nil)
	other.Endpoint = "other"
	c.send(t, other)
	c.send(t, webhook("flaky", nil))
	c.send(t, webhook("bad", nil))
	c.until(t, v, func() bool { return len(v.reports) == n+2 && len(v.nacks) == 1 })
	for s, want := range map[string]float64{
		`hookagent_webhooks_duplicates_total{endpoint="ep"}`:                               1,
		`hookagent_webhooks_nacked_total{endpoint="_unknown",reason="no_route"}`:           1,
		`hookagent_deliveries_total{endpoint="ep",outcome="retry",status_class="5xx"}`:     1,
		`hookagent_deliveries_total{endpoint="ep",outcome="delivered",status_class="2xx"}`: n + 1,
		`hookagent_deliveries_total{endpoint="ep",outcome="dead",status_class="4xx"}`:      1,
		`hookagent_dead_letters_total{endpoint="ep"}`:                                      1,
		`hookagent_dead_letters{endpoint="ep"}`:                                            1,
		`hookagent_webhooks_received_total{endpoint="ep"}`:                                 n + 3,
		`hookagent_webhooks_received_total{endpoint="_unknown"}`:                           1,
	} {
		waitMetric(t, a, s, want) // events may trail the reports by a moment
	}

	// The events behind the counters, for one webhook, in order.
	mu.Lock()
	var kinds []string
	for _, ev := range events {
		if ev.ID == "flaky" {
			kinds = append(kinds, ev.Kind.String()+":"+string(ev.Outcome))
		}
	}
	var retry Event
	for _, ev := range events {
		if ev.ID == "flaky" && ev.Outcome == OutcomeRetry {
			retry = ev
		}
	}
	mu.Unlock()
	if want := []string{"received:", "stored:", "attempt:retry", "attempt:delivered"}; !slices.Equal(kinds, want) {
		t.Errorf("events of flaky: %v, want %v", kinds, want)
	}
	if retry.Status != 503 || retry.Attempt != 1 || retry.Method != "POST" || retry.Path != "/p" || retry.Query != "q=1" || retry.RetryIn <= 0 {
		t.Errorf("retry event: %+v", retry)
	}

	// The tunnel drops: down, and a reconnect counted.
	c.tun.Close()
	waitMetric(t, a, `hookagent_tunnel_up{transport="websocket"}`, 0)
	if got := scrape(t, a)[`hookagent_tunnel_reconnects_total`]; got < 1 {
		t.Errorf("reconnects %v after a drop", got)
	}
}

func TestEventTunnelLines(t *testing.T) {
	fr := newFakeRelay(t)
	evs := make(chan Event, 64)
	a := newTestAgentWith(t, fr.url(), func(c *Config) {
		c.OnEvent = func(ev Event) {
			if ev.Kind == EventTunnelUp || ev.Kind == EventTunnelDown {
				evs <- ev
			}
		}
	}, fastRoute("http://127.0.0.1:1"))
	runAgent(t, a)
	c := fr.welcome(t)
	next := func() Event {
		select {
		case ev := <-evs:
			return ev
		case <-time.After(10 * time.Second):
			t.Fatal("no tunnel event")
		}
		return Event{}
	}
	up := next()
	if up.Kind != EventTunnelUp || up.Transport != "websocket" || up.Session != "s1" || up.AgentID != a.AgentID() ||
		up.Relay != fr.url() {
		t.Fatalf("up event: %+v", up)
	}
	c.write(t, &protocol.GoAway{Reason: "restart", ReconnectAfter: time.Hour})
	down := next()
	if down.Kind != EventTunnelDown || !down.WasUp || !strings.Contains(down.Reason, "restart") || down.RetryIn != time.Hour {
		t.Fatalf("down event: %+v", down)
	}
}
