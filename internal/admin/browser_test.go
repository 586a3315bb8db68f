package admin

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/hookrelay/hookrelay/internal/testutil"
	"github.com/hookrelay/hookrelay/internal/testutil/browser"
	"github.com/hookrelay/hookrelay/persist"
)

func TestBrowserUI(t *testing.T) {
	e := newEnv(t, Relay, testToken, func(c *Config) {
		c.Agents = func() []AgentInfo {
			return []AgentInfo{{AgentID: "edge-1", Endpoints: []string{"github", "stripe"}, Transport: "quic",
				ConnectedAt: time.Now().Add(-time.Hour), InFlight: 1}}
		}
		c.Status = func() any { return map[string]any{"agents": 1, "version": "test"} }
	})
	ctx := browser.Start(t, browser.ChromiumPath(t), 90*time.Second)

	jsErrors := browser.WatchExceptions(ctx)

	// some history for the list and the screenshot
	e.add("stripe", "payment_intent=pi_123&amount=990")
	old := e.add("github", `{"action":"closed"}`)
	if err := e.store.Complete(old.ID, persist.StateDead, &persist.Delivery{At: time.Now(), Status: 500, Millis: 87, Error: "500 Internal Server Error"}, "max attempts"); err != nil {
		t.Fatal(err)
	}

	// log in with the token
	if err := chromedp.Do(ctx,
		chromedp.Navigate(e.srv.URL+"/admin/"),
		chromedp.WaitVisible(chromedp.ID("login-token")),
		chromedp.SendKeys(chromedp.ID("login-token"), testToken),
	); err != nil {
		t.Fatalf("open the login page: %v", err)
	}
	resp, err := chromedp.RunResponse(ctx, chromedp.Click(chromedp.ID("login-submit")))
	if err != nil {
		t.Fatalf("log in: %v", err)
	}
	if resp.Status != 200 || !strings.HasSuffix(resp.URL, "/admin/") {
		t.Fatalf("after login: %d %s, want 200 /admin/", resp.Status, resp.URL)
	}
	browser.PollJS(t, ctx, "the live stream", `document.querySelector('#live.on') !== null`)
	browser.PollJS(t, ctx, "the old rows", fmt.Sprintf(`document.querySelector('#webhooks tr[data-id="%s"]') !== null`, old.ID))
	browser.PollJS(t, ctx, "the queues", `document.querySelector('#queues tr[data-queue="github"]') !== null`)
	browser.PollJS(t, ctx, "the agents", `document.querySelector('#agents tr[data-agent="edge-1"]') !== null`)

	// a webhook that arrives now shows up without a reload
	body := `{"action":"opened","number":42,"pull_request":{"title":"Add admin UI","draft":false},"labels":["ui","admin"]}`
	r := e.add("github", body, func(r *persist.Record) {
		r.Headers = []persist.Header{{Name: "Content-Type", Value: "application/json"}, {Name: "X-GitHub-Event", Value: "pull_request"},
			{Name: "X-Hub-Signature-256", Value: "sha256=5d5b09f6dcb2d53a5fffc60c4ac0d55fabdf556069d6631545f42aa6e3500f2e"}}
	})
	row := fmt.Sprintf(`#webhooks tr[data-id="%s"]`, r.ID)
	browser.PollJS(t, ctx, "the new row", fmt.Sprintf(`document.querySelector('%s') !== null`, row))

	// it gets delivered; the row follows
	if err := e.store.Complete(r.ID, persist.StateDelivered, &persist.Delivery{At: time.Now(), Status: 200, Millis: 42}, ""); err != nil {
		t.Fatal(err)
	}
	browser.PollJS(t, ctx, "the delivered state", fmt.Sprintf(`document.querySelector('%s .state').textContent === 'delivered'`, row))

	// the detail: headers, pretty-printed JSON body, attempts
	if err := chromedp.Do(ctx, chromedp.Click(chromedp.CSS(row))); err != nil {
		t.Fatalf("click row: %v", err)
	}
	var pretty bytes.Buffer
	if err := json.Indent(&pretty, []byte(body), "", "  "); err != nil {
		t.Fatal(err)
	}
	want, _ := json.Marshal(pretty.String())
	browser.PollJS(t, ctx, "the pretty-printed body", fmt.Sprintf(`document.getElementById('body').textContent === %s`, want))
	browser.PollJS(t, ctx, "the headers", `document.querySelectorAll('#headers tr').length === 3`)
	browser.PollJS(t, ctx, "the attempt row", `document.querySelector('#attempts tr td:nth-child(2)').textContent === '200'`)
	if id, err := chromedp.Run(ctx, chromedp.Text(chromedp.ID("d-id"))); err != nil || id != r.ID {
		t.Errorf("detail id %q (%v), want %s", id, err, r.ID)
	}

	// replay
	if err := chromedp.Do(ctx, chromedp.Click(chromedp.ID("replay"))); err != nil {
		t.Fatalf("click replay: %v", err)
	}
	browser.PollJS(t, ctx, "the replay confirmation",
		`!document.getElementById('replay-status').hidden && document.getElementById('replay-status').textContent.startsWith('Replay queued')`)
	testutil.WaitFor(t, 5*time.Second, "the record to be ready with replay set", func() bool {
		got := get(t, e.store, r.ID)
		return got.State == persist.StateReady && got.Replay
	})
	browser.PollJS(t, ctx, "the accepted state in the detail", `document.querySelector('#d-state .state').textContent === 'accepted'`)
	browser.PollJS(t, ctx, "the accepted state in the list", fmt.Sprintf(`document.querySelector('%s .state').textContent === 'accepted'`, row))
	browser.PollJS(t, ctx, "the queue depth", `document.querySelector('#queues tr[data-queue="github"] td:nth-child(2)').textContent === '1'`)

	png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	if err != nil {
		t.Fatalf("screenshot: %v", err)
	}
	browser.SaveScreenshot(t, "admin-ui.png", png)

	// the dead letters tab lists the dead one
	if err := chromedp.Do(ctx, chromedp.Click(chromedp.ID("tab-dead"))); err != nil {
		t.Fatalf("open dead letters: %v", err)
	}
	browser.PollJS(t, ctx, "the dead letter", fmt.Sprintf(`document.querySelector('#dead tr[data-id="%s"]') !== null`, old.ID))

	if errs := jsErrors(); len(errs) > 0 {
		t.Errorf("JavaScript exceptions: %s", strings.Join(errs, "; "))
	}
}
