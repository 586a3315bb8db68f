package admin

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/hookrelay/hookrelay/internal/testutil/browser"
	"github.com/hookrelay/hookrelay/persist"
)

// The webhook detail shows the target's recorded response: status, headers and body.
func TestBrowserRecordedResponse(t *testing.T) {
	e := newEnv(t, Agent, testToken)
	ctx := browser.Start(t, browser.ChromiumPath(t), 60*time.Second)
	jsErrors := browser.WatchExceptions(ctx)

	r := e.add("stripe", `{"id":"evt_1"}`)
	del := &persist.Delivery{At: time.Now(), Status: 409, Millis: 12, Error: "409 Conflict",
		ResponseHeaders: []persist.Header{{Name: "Content-Type", Value: "application/json"}, {Name: "X-Request-Id", Value: "req_77"}},
		ResponseBody:    []byte(`{"error":"<b>duplicate</b>"}`)}
	if err := e.store.Complete(r.ID, persist.StateDead, del, "returned to sender"); err != nil {
		t.Fatal(err)
	}
	plain := e.add("stripe", `{"id":"evt_2"}`)

	if err := chromedp.Do(ctx,
		chromedp.Navigate(e.srv.URL+"/admin/"),
		chromedp.WaitVisible(chromedp.ID("login-token")),
		chromedp.SendKeys(chromedp.ID("login-token"), testToken),
	); err != nil {
		t.Fatalf("open the login page: %v", err)
	}
	if resp, err := chromedp.RunResponse(ctx, chromedp.Click(chromedp.ID("login-submit"))); err != nil || resp.Status != 200 {
		t.Fatalf("log in: %v", err)
	}
	row := func(id string) string { return fmt.Sprintf(`#webhooks tr[data-id="%s"]`, id) }
	browser.PollJS(t, ctx, "the rows", fmt.Sprintf(`document.querySelector('%s') !== null`, row(r.ID)))

	if err := chromedp.Do(ctx, chromedp.Click(chromedp.CSS(row(r.ID)))); err != nil {
		t.Fatalf("click row: %v", err)
	}
	browser.PollJS(t, ctx, "the response section", `!document.getElementById('response').hidden`)
	browser.PollJS(t, ctx, "the response status", `document.getElementById('response-info').textContent.startsWith('status 409')`)
	browser.PollJS(t, ctx, "the response headers", `[...document.querySelectorAll('#response-headers tr')].map((r) => r.textContent).join('|') === 'Content-Typeapplication/json|X-Request-Idreq_77'`)
	// shown as text, pretty-printed: never as markup
	browser.PollJS(t, ctx, "the response body",
		`document.getElementById('response-body').textContent === JSON.stringify({error: '<b>duplicate</b>'}, null, 2) && document.querySelector('#response-body b') === null`)

	// a webhook without a recorded response hides the section
	if err := chromedp.Do(ctx, chromedp.Click(chromedp.CSS(row(plain.ID)))); err != nil {
		t.Fatalf("click row: %v", err)
	}
	browser.PollJS(t, ctx, "no response section", fmt.Sprintf(
		`document.getElementById('d-id').textContent === '%s' && document.getElementById('response').hidden`, plain.ID))
	if errs := jsErrors(); len(errs) > 0 {
		t.Errorf("JavaScript exceptions: %s", strings.Join(errs, "; "))
	}
}
