package agent

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hookrelay/hookrelay/internal/testutil"
	"github.com/hookrelay/hookrelay/persist"
	"github.com/hookrelay/hookrelay/protocol"
	"github.com/hookrelay/hookrelay/relay"
)

// postTo sends a webhook with body and header to the relay's endpoint ep and returns its id.
func postTo(t *testing.T, s *relay.Server, header http.Header, body []byte) string {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, "http://"+s.Addr()+"/h/ep/x", bytes.NewReader(body))
	if err != nil {
		t.Error(err)
		return ""
	}
	for k, v := range header {
		req.Header[k] = v
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Error(err)
		return ""
	}
	defer resp.Body.Close()
	var out struct{ ID string }
	json.NewDecoder(resp.Body).Decode(&out)
	if resp.StatusCode != http.StatusAccepted || out.ID == "" {
		t.Errorf("ingress answered %d %q", resp.StatusCode, out.ID)
	}
	return out.ID
}

// waitRelayState waits until the relay holds every id in state st, and returns their records.
func waitRelayState(t *testing.T, s *relay.Server, st persist.State, ids ...string) map[string]*persist.Record {
	t.Helper()
	out := map[string]*persist.Record{}
	testutil.CheckFor(t, 30*time.Second, 20*time.Millisecond, func() error {
		for _, id := range ids {
			r, err := s.Store().Get(context.Background(), id)
			if err != nil {
				return err
			}
			if r.State != st {
				return fmt.Errorf("%s is %v at the relay, want %v", id, r.State, st)
			}
			out[id] = r
		}
		return nil
	})
	return out
}

// Two routes on one endpoint each deliver every webhook of a burst once, byte-exact, and the
// relay hears "delivered" for each.
func TestRoutesFanOutBurst(t *testing.T) {
	s := startRelay(t, false)
	ci, audit := newTarget(t, nil), newTarget(t, nil)
	a, _ := autoAgent(t, "ws://"+s.Addr(), "", ci, func(c *Config) {
		c.Routes = []Route{{Endpoint: "ep", Target: ci.URL}, {Endpoint: "ep", Name: "audit", Target: audit.URL}}
	})
	const n = 200
	bodies := map[string][]byte{}
	var mu sync.Mutex
	var wg sync.WaitGroup
	for w := range 8 {
		wg.Go(func() {
			for i := w; i < n; i += 8 {
				size := 100 + i*50 // up to ~10 KB, binary
				switch {
				case i%100 == 7:
					size = 1<<20 + 3*i // streamed into a body file, then copied into another
				case i%50 == 7:
					size = 600<<10 + i // streamed through the store, stored inline, then copied
				}
				body := make([]byte, size)
				rand.Read(body)
				id := postTo(t, s, nil, body)
				mu.Lock()
				bodies[id] = body
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if t.Failed() {
		t.FailNow()
	}
	ids := make([]string, 0, n)
	for id := range bodies {
		ids = append(ids, id)
	}
	for name, tg := range map[string]*target{"ci": ci, "audit": audit} {
		waitDelivered(t, tg, ids...) // each once
		for _, id := range ids {
			if got := tg.requests(id)[0].Body; !bytes.Equal(got, bodies[id]) {
				t.Fatalf("route %s: %s arrived with %d bytes, sent %d (or different)", name, id, len(got), len(bodies[id]))
			}
		}
	}
	waitRelayState(t, s, persist.StateDelivered, ids...)
	// The relay's confirmations mark every copy reported.
	testutil.CheckFor(t, 10*time.Second, 20*time.Millisecond, func() error {
		if recs, err := a.Store().Unreported(10); err != nil || len(recs) > 0 {
			return fmt.Errorf("%d copies unreported (%v)", len(recs), err)
		}
		return nil
	})
}

// One route dead and one delivered: the relay hears "dead", with the dead route named.
func TestRoutesOneDeadIsDead(t *testing.T) {
	s := startRelay(t, false)
	ok := newTarget(t, nil)
	gone := newTarget(t, func(*http.Request, int) (int, http.Header) { return http.StatusGone, nil })
	autoAgent(t, "ws://"+s.Addr(), "", ok, func(c *Config) {
		c.Routes = []Route{{Endpoint: "ep", Target: ok.URL}, {Endpoint: "ep", Name: "old", Target: gone.URL}}
	})
	id := postTo(t, s, nil, []byte("x"))
	waitDelivered(t, ok, id)
	recs := waitRelayState(t, s, persist.StateDead, id)
	if r := recs[id]; !strings.Contains(r.DeadReason, "route old") {
		t.Fatalf("relay's dead reason %q does not name the route", r.DeadReason)
	}
}

// routeAnswer is GET /admin/api/webhooks/{id} with its routes.
type routeAnswer struct {
	ID, State string
	Routes    map[string]struct {
		State      string
		Attempts   int
		Reason     string
		Deliveries []struct{ Status int }
	}
}

// A filter passes only the matching events (headers and JSON body); the others show
// "filtered" in the admin API and are reported delivered; a replay ?route= goes to that route
// alone.
func TestRouteFilterAndReplay(t *testing.T) {
	s := startRelay(t, false)
	all, build := newTarget(t, nil), newTarget(t, nil)
	a, _ := autoAgent(t, "ws://"+s.Addr(), "", all, func(c *Config) {
		c.AdminAddr = "127.0.0.1:0"
		c.Routes = []Route{
			{Endpoint: "ep", Name: "all", Target: all.URL},
			{Endpoint: "ep", Name: "build", Target: build.URL,
				Filter: `headers["x-github-event"] == "push" && body.ref == "refs/heads/main"`},
		}
	})
	event := func(ev, ref string) string {
		return postTo(t, s, http.Header{"X-Github-Event": {ev}}, []byte(`{"ref":"`+ref+`"}`))
	}
	push := event("push", "refs/heads/main")
	other := event("push", "refs/heads/dev")
	issue := event("issues", "refs/heads/main")
	notJSON := postTo(t, s, http.Header{"X-Github-Event": {"push"}}, []byte("not json"))
	// A body past the lease's (streamed from the store) but within the filter's 1 MiB.
	bigPush := postTo(t, s, http.Header{"X-Github-Event": {"push"}},
		[]byte(`{"ref":"refs/heads/main","pad":"`+strings.Repeat("x", 400<<10)+`"}`))
	ids := []string{push, other, issue, notJSON}
	waitDelivered(t, all, append(ids, bigPush)...)
	waitDelivered(t, build, push, bigPush)
	waitRelayState(t, s, persist.StateDelivered, ids...)
	for _, id := range ids[1:] {
		if n := len(build.requests(id)); n != 0 {
			t.Fatalf("filtered %s reached the build target %d times", id, n)
		}
		var w routeAnswer
		if code := adminCall(t, a, "GET", "/admin/api/webhooks/"+id, &w); code != http.StatusOK {
			t.Fatalf("get %s: %d", id, code)
		}
		b := w.Routes["build"]
		if w.State != "delivered" || w.Routes["all"].State != "delivered" || b.State != "filtered" ||
			b.Attempts != 0 || !strings.HasPrefix(b.Reason, "filter") {
			t.Fatalf("%s: %+v, want delivered with routes all delivered, build filtered", id, w)
		}
	}
	var w routeAnswer
	adminCall(t, a, "GET", "/admin/api/webhooks/"+push, &w)
	if w.State != "delivered" || w.Routes["build"].State != "delivered" || w.Routes["build"].Attempts != 1 {
		t.Fatalf("push: %+v", w)
	}
	var list struct{ Webhooks []routeAnswer }
	adminCall(t, a, "GET", "/admin/api/webhooks?endpoint=ep&state=delivered", &list)
	if len(list.Webhooks) != len(ids)+1 {
		t.Fatalf("listed %d delivered webhooks, want %d (one entry per webhook): %+v", len(list.Webhooks), len(ids)+1, list)
	}

	// Replay to one route.
	if code := adminCall(t, a, "POST", "/admin/api/webhooks/"+issue+"/replay?route=all", nil); code != http.StatusAccepted {
		t.Fatalf("replay ?route=all: %d", code)
	}
	testutil.CheckFor(t, 10*time.Second, 10*time.Millisecond, func() error {
		if n := len(all.requests(issue)); n != 2 {
			return fmt.Errorf("route all saw %s %d times, want 2", issue, n)
		}
		return nil
	})
	if r := all.requests(issue)[1]; r.Header.Get("Hookrelay-Replay") != "1" {
		t.Fatalf("replay without hookrelay-replay: %v", r.Header)
	}
	if code := adminCall(t, a, "POST", "/admin/api/webhooks/"+issue+"/replay?route=nope", nil); code != http.StatusNotFound {
		t.Fatalf("replay to an unknown route: %d, want 404", code)
	}
	// The build route filters the replay again; nothing reaches its target.
	if code := adminCall(t, a, "POST", "/admin/api/webhooks/"+issue+"/replay?route=build", nil); code != http.StatusAccepted {
		t.Fatalf("replay ?route=build: %d", code)
	}
	testutil.CheckFor(t, 10*time.Second, 10*time.Millisecond, func() error {
		var w routeAnswer
		adminCall(t, a, "GET", "/admin/api/webhooks/"+issue, &w)
		if w.Routes["build"].State != "filtered" {
			return fmt.Errorf("build is %q after its replay", w.Routes["build"].State)
		}
		return nil
	})
	if n := len(build.requests(issue)); n != 0 {
		t.Fatalf("a replay of a filtered webhook reached the build target")
	}
}

// A store written by an agent with one route per endpoint (queue = endpoint, record id = the
// relay's id) is read as it is: its first route delivers the records waiting there, also
// once a second route is added.
func TestRoutesReadOldStore(t *testing.T) {
	dir := t.TempDir()
	st, err := persist.Open(persist.Options{Dir: dir, Small: true})
	if err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{"old1", "old2"} {
		if err := st.Append(context.Background(), &persist.Record{ID: id, Queue: "ep", Method: "POST", Body: []byte(id)}); err != nil {
			t.Fatal(err)
		}
	}
	st.Close()

	first, second := newTarget(t, nil), newTarget(t, nil)
	a := newTestAgentWith(t, "ws://127.0.0.1:1", func(c *Config) { c.DataDir = dir },
		Route{Endpoint: "ep", Target: first.URL}, Route{Endpoint: "ep", Name: "audit", Target: second.URL})
	runAgent(t, a) // no relay: the admin API and the deliverers
	waitDelivered(t, first, "old1", "old2")
	if got := first.requests("old1")[0].Body; string(got) != "old1" {
		t.Fatalf("old1 arrived as %q", got)
	}
	// The target answers before the agent records the outcome: poll for it.
	testutil.CheckFor(t, 10*time.Second, 10*time.Millisecond, func() error {
		var w routeAnswer
		if code := adminCall(t, a, "GET", "/admin/api/webhooks/old1", &w); code != http.StatusOK {
			return fmt.Errorf("get old1: %d", code)
		}
		if len(w.Routes) != 1 || w.Routes["0"].State != "delivered" || w.State != "delivered" {
			return fmt.Errorf("old1: %+v, want route 0 delivered", w)
		}
		return nil
	})
	if n := len(second.requests("old1")); n != 0 {
		t.Fatalf("a route added later delivered an old webhook")
	}
}

// With two routes, the relay hears one report per webhook, only once both copies finished
// (dead when one died), and a redelivery of the finished webhook is answered with that
// combined outcome; the relay's confirmation marks both copies reported.
func TestRoutesReportOncePerWebhook(t *testing.T) {
	ok := newTarget(t, nil)
	release := make(chan struct{})
	slow := newTarget(t, func(*http.Request, int) (int, http.Header) {
		<-release
		return http.StatusBadRequest, nil
	})
	fr := newFakeRelay(t)
	r2 := fastRoute(slow.URL)
	r2.Name = "slow"
	a := newTestAgent(t, fr.url(), fastRoute(ok.URL), r2)
	runAgent(t, a)
	c := welcomeV2(t, fr, "s1")
	v := newView()
	c.send(t, webhook("w1", []byte("x")))
	c.until(t, v, func() bool { return v.acked["w1"] == 1 })
	waitDelivered(t, ok, "w1")
	testutil.CheckFor(t, 5*time.Second, 5*time.Millisecond, func() error {
		if len(slow.requests("w1")) == 0 {
			return fmt.Errorf("slow route not attempted yet")
		}
		return nil
	})
	if len(v.reports["w1"]) != 0 {
		t.Fatalf("reported %+v before every route finished", v.reports["w1"][0])
	}
	close(release)
	c.until(t, v, func() bool { return len(v.reports["w1"]) == 1 })
	rep := v.reports["w1"][0]
	if rep.Outcome != protocol.OutcomeDead || rep.Attempts != 2 || !strings.HasPrefix(rep.Error, "route slow: ") {
		t.Fatalf("report %+v, want dead after 2 attempts naming route slow", rep)
	}

	c.send(t, webhook("w1", []byte("x")))
	c.until(t, v, func() bool { return len(v.reports["w1"]) == 2 })
	if r := v.reports["w1"][1]; r.Outcome != protocol.OutcomeDead || v.acked["w1"] != 1 {
		t.Fatalf("redelivery answered %+v (acks %d), want the dead outcome and no ack", r, v.acked["w1"])
	}
	if len(ok.requests("w1")) != 1 || len(slow.requests("w1")) != 1 {
		t.Fatal("a redelivered finished webhook was delivered again")
	}

	c.write(t, &protocol.Recorded{IDs: []string{"w1"}})
	testutil.CheckFor(t, 5*time.Second, 5*time.Millisecond, func() error {
		for _, id := range []string{"w1", "w1~slow"} {
			if !reported(t, a, id) {
				return fmt.Errorf("copy %s not marked reported after Recorded", id)
			}
		}
		return nil
	})
	waitMetric(t, a, `hookagent_route_deliveries_total{endpoint="ep",outcome="dead",route="slow",status_class="4xx"}`, 1)
	waitMetric(t, a, `hookagent_route_deliveries_total{endpoint="ep",outcome="delivered",route="0",status_class="2xx"}`, 1)
	waitMetric(t, a, `hookagent_route_dead_letters{endpoint="ep",route="slow"}`, 1)
	waitMetric(t, a, `hookagent_dead_letters{endpoint="ep"}`, 1)
}
