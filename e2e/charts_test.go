package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/hookrelay/hookrelay/internal/testutil/browser"
)

// chartState is what the charts of one UI show, read from the page.
type chartState struct {
	Updated   string            // when charts.js last redrew
	Points    int               // points the rates chart drew
	Line      string            // the received polyline
	Queue     string            // the queue polyline
	Last      map[string]string // the legend's latest value per series ("" = none)
	HasCharts bool
}

const readCharts = `(() => {
  const last = {};
  for (const k of document.querySelectorAll('#charts .key')) last[k.dataset.series] = k.dataset.last;
  const line = document.querySelector('#chart-rates polyline[data-series="received"]');
  return JSON.stringify({
    Updated: document.getElementById('charts').dataset.updated || '',
    Points: Number(document.getElementById('chart-rates').dataset.points || 0),
    Line: line ? line.getAttribute('points') : '',
    Queue: document.querySelector('#chart-queue polyline').getAttribute('points'),
    Last: last,
    HasCharts: document.querySelectorAll('#charts svg polyline').length === 6,
  });
})()`

func charts(t *testing.T, ctx context.Context) chartState {
	t.Helper()
	s, err := chromedp.Run(ctx, chromedp.Evaluate[string](readCharts))
	if err != nil {
		t.Fatalf("read the charts: %v", err)
	}
	var st chartState
	if err := json.Unmarshal([]byte(s), &st); err != nil {
		t.Fatalf("read the charts: %v", err)
	}
	return st
}

func positive(v string) bool { f, err := strconv.ParseFloat(v, 64); return err == nil && f > 0 }

// TestBrowserCharts sends webhooks through a real relay and agent (some to a target that
// always fails) and watches the charts of both UIs move: rates, latency and queue, drawn from
// the samples each process keeps.
func TestBrowserCharts(t *testing.T) {
	chrome := browser.ChromiumPath(t)
	u := newUIWorld(t)
	ctx := browser.Start(t, chrome, 120*time.Second)
	jsErrors := browser.WatchExceptions(ctx)

	base := u.relayBase()
	if err := chromedp.Do(ctx,
		chromedp.Navigate(base+"/admin/"),
		chromedp.WaitVisible(chromedp.ID("login-token")),
		chromedp.SendKeys(chromedp.ID("login-token"), u.adminToken),
	); err != nil {
		t.Fatalf("open the relay's login page: %v", err)
	}
	if resp, err := chromedp.RunResponse(ctx, chromedp.Click(chromedp.ID("login-submit"))); err != nil || resp.Status != 200 {
		t.Fatalf("log in to the relay's UI: %v", err)
	}
	browser.PollJS(t, ctx, "the relay's charts", `document.getElementById('charts') && document.getElementById('charts').dataset.updated !== undefined`)
	actx, cancel := chromedp.NewContext(ctx)
	defer cancel()
	if err := chromedp.Do(actx, chromedp.Navigate(u.agentAdmin+"/admin/")); err != nil {
		t.Fatalf("open the agent's UI: %v", err)
	}
	browser.PollJS(t, actx, "the agent's charts", `document.getElementById('charts').dataset.updated !== undefined`)
	if st := charts(t, ctx); !st.HasCharts || positive(st.Last["received"]) {
		t.Fatalf("relay charts before any webhook: %+v, want six lines and nothing received", st)
	}

	// Webhooks flow in batches of changing size until both UIs have shown every series move
	// and a few sampled points (the sampler takes one every 5 s).
	sms := []byte("MessageSid=SM8f2c1d&Body=hello")
	order := []byte(`{"order_id":1042}`)
	seen := map[string]bool{}
	lines := map[string]bool{}
	want := []string{
		"relay received", "relay delivered", "relay failed", "relay p50_ms", "relay p99_ms",
		"agent received", "agent delivered", "agent failed", "agent p50_ms", "agent p99_ms",
	}
	done := func() bool {
		for _, w := range want {
			if !seen[w] {
				return false
			}
		}
		return len(lines) >= 3 && charts(t, ctx).Points >= 4 && charts(t, actx).Points >= 4
	}
	deadline := time.Now().Add(60 * time.Second)
	for round := 0; !done(); round++ {
		if time.Now().After(deadline) {
			t.Fatalf("after %d rounds the charts did not show everything; seen %v, %d distinct lines; relay %+v; agent %+v",
				round, seen, len(lines), charts(t, ctx), charts(t, actx))
		}
		for i := 0; i < 2+round%7; i++ {
			u.post("/h/twilio/sms", "application/x-www-form-urlencoded", sms, http.Header{})
		}
		if round%3 == 0 {
			u.post("/h/shop/orders", "application/json", order, http.Header{})
		}
		prev := charts(t, ctx).Updated
		browser.PollJS(t, ctx, "the relay's charts to redraw", fmt.Sprintf(`document.getElementById('charts').dataset.updated !== %q`, prev))
		for side, c := range map[string]context.Context{"relay": ctx, "agent": actx} {
			st := charts(t, c)
			for k, v := range st.Last {
				if positive(v) {
					seen[side+" "+k] = true
				}
			}
			if side == "relay" && strings.Contains(st.Line, " ") {
				lines[st.Line] = true
			}
		}
	}

	for side, c := range map[string]context.Context{"relay": ctx, "agent": actx} {
		if st := charts(t, c); strings.Count(st.Queue, ",") < 4 {
			t.Errorf("%s queue chart draws %q, want a line of the sampled points", side, st.Queue)
		}
	}

	// The relay's sampled points (not only the interval in progress) hold what flowed.
	req, _ := http.NewRequest("GET", base+"/admin/api/series", nil)
	req.Header.Set("Authorization", "Bearer "+u.adminToken)
	resp, err := u.client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	var series struct {
		IntervalMs int64 `json:"interval_ms"`
		Points     []struct {
			Received, Delivered float64
			P50                 *float64 `json:"p50_ms"`
		}
	}
	err = json.NewDecoder(resp.Body).Decode(&series)
	resp.Body.Close()
	if err != nil || series.IntervalMs != 5000 {
		t.Fatalf("GET /admin/api/series: %v, interval %d ms, want 5000", err, series.IntervalMs)
	}
	var received, delivered, latency bool
	for _, p := range series.Points {
		received = received || p.Received > 0
		delivered = delivered || p.Delivered > 0
		latency = latency || p.P50 != nil && *p.P50 > 0
	}
	if !received || !delivered || !latency {
		t.Errorf("relay series %+v: want sampled points with received, delivered and a p50", series.Points)
	}

	for name, c := range map[string]context.Context{"ui-charts-relay.png": ctx, "ui-charts-agent.png": actx} {
		png, err := chromedp.Run(c, chromedp.Screenshot(chromedp.ID("charts")))
		if err != nil {
			t.Fatalf("screenshot %s: %v", name, err)
		}
		browser.SaveScreenshot(t, name, png)
	}
	if errs := jsErrors(); len(errs) > 0 {
		t.Errorf("JavaScript exceptions: %s", strings.Join(errs, "; "))
	}
}
