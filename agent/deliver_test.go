package agent

import (
	"bytes"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hookrelay/hookrelay/internal/testutil"
	"github.com/hookrelay/hookrelay/persist"
)

// fastRoute is a route to url with retries quick enough for tests.
func fastRoute(url string) Route {
	return Route{Endpoint: "ep", Target: url, BackoffMin: 5 * time.Millisecond, BackoffMax: 20 * time.Millisecond}
}

func TestDeliverExact(t *testing.T) {
	tg := newTarget(t, nil)
	a := newTestAgent(t, "ws://127.0.0.1:1", fastRoute(tg.URL+"/base?route=1"))
	runDeliverers(t, a)

	binary := make([]byte, 256*3)
	for i := range binary {
		binary[i] = byte(i)
	}
	appendRecord(t, a, &persist.Record{
		ID: "bin", Queue: "ep", Method: "PUT", Path: "/deep/path", Query: "a=1&b=%2F",
		Headers: []persist.Header{
			{Name: "X-Multi", Value: "one"}, {Name: "Content-Type", Value: "application/octet-stream"}, {Name: "X-Multi", Value: "two"},
			{Name: "x-multi", Value: "three"}, {Name: "Connection", Value: "X-Hop"}, {Name: "X-Hop", Value: "gone"}, {Name: "Transfer-Encoding", Value: "chunked"},
			{Name: "Host", Value: "relay.example.com"}, {Name: "Hookrelay-Attempt", Value: "99"},
		},
		Body: binary,
	})
	appendRecord(t, a, &persist.Record{ID: "empty", Queue: "ep", Method: "POST", Path: "/a%2Fb/c"})

	waitState(t, a, "bin", persist.StateDelivered)
	waitState(t, a, "empty", persist.StateDelivered)

	bin := tg.requests("bin")
	if len(bin) != 1 {
		t.Fatalf("bin delivered %d times", len(bin))
	}
	r := bin[0]
	if r.Method != "PUT" || r.RequestURI != "/base/deep/path?route=1&a=1&b=%2F" {
		t.Errorf("request line %s %s", r.Method, r.RequestURI)
	}
	if !bytes.Equal(r.Body, binary) {
		t.Errorf("body differs (%d bytes)", len(r.Body))
	}
	if got := r.Header["X-Multi"]; strings.Join(got, ",") != "one,two,three" {
		t.Errorf("X-Multi = %q, want one,two,three in order", got)
	}
	for name, want := range map[string]string{
		"Content-Type": "application/octet-stream", "Content-Length": "768",
		"Hookrelay-Id": "bin", "Hookrelay-Attempt": "1", "Webhook-Id": "bin",
		"Hookrelay-Replay": "", "X-Hop": "", "Connection": "", "User-Agent": "",
	} {
		if got := strings.Join(r.Header[name], ","); got != want {
			t.Errorf("%s = %q, want %q", name, got, want)
		}
	}
	if r.Header.Get("Accept-Encoding") != "" {
		t.Errorf("Accept-Encoding %q added", r.Header.Get("Accept-Encoding"))
	}

	e := tg.requests("empty")
	if len(e) != 1 || e[0].RequestURI != "/base/a%2Fb/c?route=1" || len(e[0].Body) != 0 ||
		e[0].Header.Get("Content-Length") != "0" {
		t.Fatalf("empty body request: %+v", e)
	}
}

func TestTargetURL(t *testing.T) {
	tests := []struct{ target, suffix, query, want string }{
		{"http://h/base", "/deep/path", "a=1&b=%2F", "/base/deep/path?a=1&b=%2F"},
		{"http://h/base/", "/x", "", "/base/x"},
		{"http://h", "", "q", "/?q"},
		{"http://h/w?k=v", "", "a=1", "/w?k=v&a=1"},
		{"http://h/w", "/a%2fb%20c", "", "/w/a%2fb%20c"},
		{"http://h/w", "/{x}", "", "/w/{x}"},
	}
	for _, tt := range tests {
		base, err := parseTarget(tt.target)
		if err != nil {
			t.Fatal(err)
		}
		u, err := targetURL(base, tt.suffix, tt.query)
		if err != nil {
			t.Errorf("%s + %s: %v", tt.target, tt.suffix, err)
			continue
		}
		if got := u.RequestURI(); got != tt.want {
			t.Errorf("%s + %s ? %s = %s, want %s", tt.target, tt.suffix, tt.query, got, tt.want)
		}
		if u.Host != "h" {
			t.Errorf("host %q", u.Host)
		}
	}
	for _, bad := range []string{"/../x", "/a/..", "/a/%2e%2e/b", "/%2E%2E", "/a/.%2e/b", "/a%2f..%2fb", "/a/..\\b", "/%252e%252e/x", "nosl", "/a b"} {
		base, _ := parseTarget("http://h/base")
		if _, err := targetURL(base, bad, ""); err == nil {
			t.Errorf("suffix %q accepted", bad)
		}
	}
}

func parseTarget(s string) (*url.URL, error) {
	r := &Route{Endpoint: "e", Target: s}
	r.Concurrency, r.MaxAttempts, r.BackoffMax = 1, 1, 1
	err := r.validate()
	return r.targetURL, err
}

func TestDeliverWebhookIDAndRouteHeaders(t *testing.T) {
	tg := newTarget(t, nil)
	rt := fastRoute(tg.URL)
	rt.Headers = map[string]string{"Authorization": "Bearer route", "X-Extra": "added"}
	a := newTestAgent(t, "ws://127.0.0.1:1", rt)
	runDeliverers(t, a)

	appendRecord(t, a, &persist.Record{ID: "own", Queue: "ep", Headers: []persist.Header{
		{Name: "webhook-id", Value: "msg_sender"}, {Name: "Authorization", Value: "Bearer sender"},
	}})
	appendRecord(t, a, &persist.Record{ID: "none", Queue: "ep"})
	waitState(t, a, "own", persist.StateDelivered)
	waitState(t, a, "none", persist.StateDelivered)

	own := tg.requests("own")[0].Header
	if got := own["Webhook-Id"]; len(got) != 1 || got[0] != "msg_sender" {
		t.Errorf("sender's webhook-id replaced: %q", got)
	}
	if got := own["Authorization"]; len(got) != 1 || got[0] != "Bearer sender" {
		t.Errorf("sender's Authorization replaced: %q", got)
	}
	if own.Get("X-Extra") != "added" {
		t.Errorf("route header not added")
	}
	none := tg.requests("none")[0].Header
	if none.Get("Webhook-Id") != "none" || none.Get("Authorization") != "Bearer route" {
		t.Errorf("no sender headers: webhook-id %q, authorization %q", none.Get("Webhook-Id"), none.Get("Authorization"))
	}
}

func TestDeliverRetryThenDeliver(t *testing.T) {
	tg := newTarget(t, func(r *http.Request, n int) (int, http.Header) {
		if n < 3 {
			return 500, nil
		}
		return 200, nil
	})
	a := newTestAgent(t, "ws://127.0.0.1:1", fastRoute(tg.URL))
	runDeliverers(t, a)
	appendRecord(t, a, &persist.Record{ID: "r1", Queue: "ep", Body: []byte("x")})
	rec := waitState(t, a, "r1", persist.StateDelivered)

	reqs := tg.requests("r1")
	if len(reqs) != 3 {
		t.Fatalf("%d attempts, want 3", len(reqs))
	}
	for i, r := range reqs {
		if got := r.Header.Get("Hookrelay-Attempt"); got != fmt.Sprint(i+1) {
			t.Errorf("attempt %d sent hookrelay-attempt %q", i+1, got)
		}
	}
	if rec.Attempts != 3 || len(rec.Deliveries) != 3 || rec.Deliveries[0].Status != 500 || rec.Deliveries[2].Status != 200 {
		t.Errorf("record: attempts %d, deliveries %+v", rec.Attempts, rec.Deliveries)
	}
}

func TestDeliverDeadAtOnce(t *testing.T) {
	var redirected atomic.Int32
	tg := newTarget(t, func(r *http.Request, n int) (int, http.Header) {
		switch r.URL.Path {
		case "/bad":
			return 400, nil
		case "/moved":
			return 301, http.Header{"Location": {"/elsewhere"}}
		case "/elsewhere":
			redirected.Add(1)
		}
		return 200, nil
	})
	a := newTestAgent(t, "ws://127.0.0.1:1", fastRoute(tg.URL))
	runDeliverers(t, a)
	appendRecord(t, a, &persist.Record{ID: "bad", Queue: "ep", Path: "/bad"})
	appendRecord(t, a, &persist.Record{ID: "moved", Queue: "ep", Path: "/moved"})
	for id, reason := range map[string]string{"bad": "status 400", "moved": "status 301"} {
		rec := waitState(t, a, id, persist.StateDead)
		if rec.DeadReason != reason || rec.Attempts != 1 || len(tg.requests(id)) != 1 {
			t.Errorf("%s: reason %q attempts %d requests %d", id, rec.DeadReason, rec.Attempts, len(tg.requests(id)))
		}
	}
	if redirected.Load() != 0 {
		t.Error("redirect followed")
	}
}

func TestDeliverRetryAfter(t *testing.T) {
	tg := newTarget(t, func(r *http.Request, n int) (int, http.Header) {
		if n == 1 {
			return 429, http.Header{"Retry-After": {"1"}}
		}
		return 200, nil
	})
	a := newTestAgent(t, "ws://127.0.0.1:1", fastRoute(tg.URL))
	runDeliverers(t, a)
	appendRecord(t, a, &persist.Record{ID: "ra", Queue: "ep"})
	waitState(t, a, "ra", persist.StateDelivered)
	reqs := tg.requests("ra")
	if len(reqs) != 2 {
		t.Fatalf("%d attempts", len(reqs))
	}
	if gap := reqs[1].At.Sub(reqs[0].At); gap < 900*time.Millisecond {
		t.Fatalf("retried after %v despite Retry-After: 1", gap)
	}
}

func TestRetryAfterParse(t *testing.T) {
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	for v, want := range map[string]time.Duration{
		"": 0, "7": 7 * time.Second, "-3": 0, "soon": 0,
		now.Add(90 * time.Second).Format(http.TimeFormat): 90 * time.Second,
		now.Add(-time.Hour).Format(http.TimeFormat):       0,
	} {
		if got := parseRetryAfter(v, now); got != want {
			t.Errorf("Retry-After %q = %v, want %v", v, got, want)
		}
	}
}

func TestDeliverLimits(t *testing.T) {
	tg := newTarget(t, func(r *http.Request, n int) (int, http.Header) { return 503, nil })
	rt := fastRoute(tg.URL)
	rt.MaxAttempts = 3
	rt.MaxAge = time.Hour
	a := newTestAgent(t, "ws://127.0.0.1:1", rt)
	runDeliverers(t, a)
	appendRecord(t, a, &persist.Record{ID: "many", Queue: "ep"})
	appendRecord(t, a, &persist.Record{ID: "old", Queue: "ep", ReceivedAt: time.Now().Add(-2 * time.Hour)})
	appendRecord(t, a, &persist.Record{ID: "dots", Queue: "ep", Path: "/x/%2E./etc"})

	rec := waitState(t, a, "many", persist.StateDead)
	if rec.DeadReason != "max attempts" || rec.Attempts != 3 || len(tg.requests("many")) != 3 {
		t.Errorf("many: reason %q attempts %d requests %d", rec.DeadReason, rec.Attempts, len(tg.requests("many")))
	}
	rec = waitState(t, a, "old", persist.StateDead)
	if rec.DeadReason != "max age" || len(tg.requests("old")) != 0 {
		t.Errorf("old: reason %q requests %d", rec.DeadReason, len(tg.requests("old")))
	}
	rec = waitState(t, a, "dots", persist.StateDead)
	if !strings.Contains(rec.DeadReason, "..") || len(tg.all()) != 3 {
		t.Errorf("dots: reason %q, target saw %d requests", rec.DeadReason, len(tg.all()))
	}
}

func TestDeliverConcurrencyBound(t *testing.T) {
	release := make(chan struct{})
	var inflight, peak atomic.Int32
	tg := newTarget(t, func(r *http.Request, n int) (int, http.Header) {
		cur := inflight.Add(1)
		for {
			p := peak.Load()
			if cur <= p || peak.CompareAndSwap(p, cur) {
				break
			}
		}
		<-release
		inflight.Add(-1)
		return 200, nil
	})
	rt := fastRoute(tg.URL)
	rt.Concurrency = 3
	a := newTestAgent(t, "ws://127.0.0.1:1", rt)
	runDeliverers(t, a)
	for i := range 6 {
		appendRecord(t, a, &persist.Record{ID: fmt.Sprintf("c%d", i), Queue: "ep"})
	}
	testutil.CheckFor(t, 10*time.Second, 5*time.Millisecond, func() error {
		if n := inflight.Load(); n != 3 {
			return fmt.Errorf("%d in flight, want 3", n)
		}
		return nil
	})
	close(release)
	for i := range 6 {
		waitState(t, a, fmt.Sprintf("c%d", i), persist.StateDelivered)
	}
	if p := peak.Load(); p != 3 {
		t.Fatalf("peak in flight %d, want 3", p)
	}
}

func TestDeliverOrdered(t *testing.T) {
	tg := newTarget(t, func(r *http.Request, n int) (int, http.Header) {
		if r.Header.Get("Hookrelay-Id") == "o1" && n < 3 {
			return 500, nil
		}
		return 200, nil
	})
	rt := fastRoute(tg.URL)
	rt.Ordered = true
	rt.BackoffMin, rt.BackoffMax = 100*time.Millisecond, 100*time.Millisecond
	a := newTestAgent(t, "ws://127.0.0.1:1", rt)
	for i := 1; i <= 3; i++ {
		appendRecord(t, a, &persist.Record{ID: fmt.Sprintf("o%d", i), Queue: "ep", ReceivedAt: time.Now().Add(time.Duration(i) * time.Millisecond)})
	}
	runDeliverers(t, a)
	waitState(t, a, "o3", persist.StateDelivered)
	if got := tg.order(); got != "o1,o1,o1,o2,o3" {
		t.Fatalf("ordered route delivered %s, want o1,o1,o1,o2,o3", got)
	}
	first := tg.requests("o1")
	if gap := first[1].At.Sub(first[0].At); gap < 90*time.Millisecond {
		t.Fatalf("ordered retry after %v, want the 100ms backoff", gap)
	}
}

func TestDeliverRate(t *testing.T) {
	tg := newTarget(t, nil)
	rt := fastRoute(tg.URL)
	rt.Rate = 20
	a := newTestAgent(t, "ws://127.0.0.1:1", rt)
	for i := range 5 {
		appendRecord(t, a, &persist.Record{ID: fmt.Sprintf("r%d", i), Queue: "ep"})
	}
	runDeliverers(t, a)
	for i := range 5 {
		waitState(t, a, fmt.Sprintf("r%d", i), persist.StateDelivered)
	}
	all := tg.all()
	if span := all[len(all)-1].At.Sub(all[0].At); span < 180*time.Millisecond {
		t.Fatalf("5 deliveries at rate 20/s took %v, want ≥ 200ms", span)
	}
}

func TestDeliverShutdownHandsBack(t *testing.T) {
	block := make(chan struct{})
	defer close(block)
	tg := newTarget(t, func(r *http.Request, n int) (int, http.Header) {
		<-block
		return 200, nil
	})
	a := newTestAgent(t, "ws://127.0.0.1:1", fastRoute(tg.URL))
	appendRecord(t, a, &persist.Record{ID: "sd", Queue: "ep"})
	ctx, cancel := testContext(t)
	done := make(chan struct{})
	go func() { a.routes.byEndpoint["ep"][0].run(ctx); close(done) }()
	testutil.CheckFor(t, 10*time.Second, 5*time.Millisecond, func() error {
		if len(tg.requests("sd")) != 1 {
			return fmt.Errorf("not delivering yet")
		}
		return nil
	})
	cancel()
	<-done // after ShutdownGrace (200ms) the attempt is cancelled
	rec, err := a.Store().Get("sd")
	if err != nil {
		t.Fatal(err)
	}
	if rec.State != persist.StateReady || rec.Attempts != 0 {
		t.Fatalf("after shutdown: state %v attempts %d, want ready with no attempt counted", rec.State, rec.Attempts)
	}
}
