package e2e

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/chromedp"

	"github.com/hookrelay/hookrelay/internal/testutil"
	"github.com/hookrelay/hookrelay/internal/testutil/browser"
)

// Secrets the UI world's senders sign with (the relay verifies them).
const (
	uiGitHubSecret = "e2e-github-secret"
	uiStripeSecret = "whsec_e2eStripeSecret"
)

// uiWorld is a world for the browser test: a relay with admin_token and several endpoints (two
// of them verified), an agent whose admin UI is on a known loopback port, the recording target,
// and a second target that always fails (for a dead letter).
type uiWorld struct {
	*world
	adminToken string
	agentAdmin string // http://127.0.0.1:port of the agent's admin_addr
}

func newUIWorld(t *testing.T) *uiWorld {
	t.Helper()
	w := &world{t: t, dir: t.TempDir(), transport: "ws"}
	w.target = newTarget(t, 0)
	failing := httptest.NewServer(http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		http.Error(rw, "upstream database unavailable", http.StatusServiceUnavailable)
	}))
	t.Cleanup(failing.Close)
	w.relayPort = testutil.FreePort(t)
	agentToken, agentHash := newToken(t)
	adminToken, adminHash := newToken(t)
	w.token = agentToken

	var eps strings.Builder
	for _, ep := range []struct{ name, verify string }{
		{"github", fmt.Sprintf("github: {secret: %q}", uiGitHubSecret)},
		{"stripe", fmt.Sprintf("stripe: {secret: %q}", uiStripeSecret)},
		{"twilio", ""}, {"sensors", ""}, {"shop", ""},
	} {
		fmt.Fprintf(&eps, "  - name: %s\n    tokens: [%q]\n", ep.name, agentHash)
		if ep.verify != "" {
			fmt.Fprintf(&eps, "    verify:\n      %s\n", ep.verify)
		}
	}
	relayCfg := writeFile(t, filepath.Join(w.dir, "relay.yaml"), fmt.Sprintf(
		"addr: 127.0.0.1:%d\ndata_dir: %s\nadmin_token: %q\nendpoints:\n%s",
		w.relayPort, filepath.Join(w.dir, "relay-data"), adminHash, eps.String()))
	w.relay = newProc(t, "relay", bin.relay, "serve", "--config", relayCfg)
	w.relay.start()
	w.waitRelay()

	adminPort := testutil.FreePort(t)
	var routes strings.Builder
	for _, ep := range []string{"github", "stripe", "twilio", "sensors"} {
		fmt.Fprintf(&routes, "  - endpoint: %s\n    target: %s/base\n    backoff_min: 50ms\n    backoff_max: 200ms\n", ep, w.target.srv.URL)
	}
	fmt.Fprintf(&routes, "  - endpoint: shop\n    target: %s/orders\n    max_attempts: 2\n    backoff_min: 50ms\n    backoff_max: 100ms\n", failing.URL)
	agentCfg := writeFile(t, filepath.Join(w.dir, "agent.yaml"), fmt.Sprintf(
		"relay: %s\ntoken: %q\nagent_id: edge-1\ndata_dir: %s\nadmin_addr: 127.0.0.1:%d\nroutes:\n%s",
		w.relayURL(), agentToken, filepath.Join(w.dir, "agent-data"), adminPort, routes.String()))
	agent := newProc(t, "agent", bin.agent, "run", "--config", agentCfg)
	agent.start()
	w.agents = []*proc{agent}
	// no Accept-Encoding added by Go: the headers are the senders' own
	w.client = &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{Proxy: nil, DisableCompression: true}}
	return &uiWorld{world: w, adminToken: adminToken, agentAdmin: fmt.Sprintf("http://127.0.0.1:%d", adminPort)}
}

func (u *uiWorld) relayBase() string { return fmt.Sprintf("http://127.0.0.1:%d", u.relayPort) }

// post sends one webhook to the relay's ingress and returns its id; anything but 202 fails.
func (u *uiWorld) post(path, contentType string, body []byte, header http.Header) string {
	u.t.Helper()
	req, err := http.NewRequest("POST", u.relayBase()+path, bytes.NewReader(body))
	if err != nil {
		u.t.Fatal(err)
	}
	for k, vs := range header {
		req.Header[k] = vs
	}
	req.Header.Set("Content-Type", contentType)
	resp, err := u.client.Do(req)
	if err != nil {
		u.t.Fatalf("POST %s: %v", path, err)
	}
	defer resp.Body.Close()
	var got struct{ ID string }
	json.NewDecoder(resp.Body).Decode(&got)
	if resp.StatusCode != http.StatusAccepted || got.ID == "" {
		u.t.Fatalf("POST %s: %d id %q, want 202 and an id", path, resp.StatusCode, got.ID)
	}
	return got.ID
}

// relayState asks the relay's admin API (Bearer token) for a webhook's state.
func (u *uiWorld) relayState(id string) (string, error) {
	req, _ := http.NewRequest("GET", u.relayBase()+"/admin/api/webhooks/"+id, nil)
	req.Header.Set("Authorization", "Bearer "+u.adminToken)
	resp, err := u.client.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	var d struct{ State string }
	if err := json.NewDecoder(resp.Body).Decode(&d); err != nil || resp.StatusCode != 200 {
		return "", fmt.Errorf("GET webhook %s: %d %v", id, resp.StatusCode, err)
	}
	return d.State, nil
}

// arrivals returns what the target got for id so far.
func (u *uiWorld) arrivals(id string) []arrival {
	u.target.mu.Lock()
	defer u.target.mu.Unlock()
	return append([]arrival(nil), u.target.got[id]...)
}

func hmacHex(key, msg string) string {
	m := hmac.New(sha256.New, []byte(key))
	m.Write([]byte(msg))
	return hex.EncodeToString(m.Sum(nil))
}

// githubHeaders are the headers GitHub sends with a signed delivery of event.
func githubHeaders(event, delivery string, body []byte) http.Header {
	return http.Header{
		"Accept":              {"*/*"},
		"User-Agent":          {"GitHub-Hookshot/8d1b0e2"},
		"X-Github-Event":      {event},
		"X-Github-Delivery":   {delivery},
		"X-Github-Hook-Id":    {"482913377"},
		"X-Hub-Signature-256": {"sha256=" + hmacHex(uiGitHubSecret, string(body))},
	}
}

// sendHistory sends a few varied webhooks (signed JSON, form-encoded, binary, one whose target
// always fails) and waits until the relay knows each one's outcome.
func (u *uiWorld) sendHistory() {
	u.t.Helper()
	push := []byte(`{"ref":"refs/heads/main","before":"6113728f27ae82c7b1a177c8d03f9e96e0adf246","after":"9a1b3c5d7e9f1a2b3c4d5e6f7a8b9c0d1e2f3a4b","repository":{"full_name":"acme/shop","private":true},"pusher":{"name":"octocat"},"commits":[{"id":"9a1b3c5","message":"Fix checkout rounding"}]}`)
	ts := fmt.Sprint(time.Now().Unix())
	charge := []byte(`{"id":"evt_3QfP2kLk","object":"event","type":"payment_intent.succeeded","data":{"object":{"id":"pi_3QfP2k","amount":4990,"currency":"eur","status":"succeeded"}},"livemode":false}`)
	sms := []byte("MessageSid=SM8f2c1d&AccountSid=AC0e4b&From=%2B15551234567&To=%2B15557654321&Body=Order+%2342+shipped%3F&NumMedia=0")
	reading := make([]byte, 96)
	for i := range reading {
		reading[i] = byte(i*37 + 11)
	}
	copy(reading, "SNSR\x01\x00")
	order := []byte(`{"order_id":1042,"total":"59.90","currency":"EUR","items":3}`)

	ids := map[string]string{
		u.post("/h/github", "application/json", push, githubHeaders("push", "1f6e5a40-aa1b-11ef-8e4b-3c1d2f5e9a7b", push)): "delivered",
		u.post("/h/stripe", "application/json", charge, http.Header{
			"User-Agent":       {"Stripe/1.0 (+https://stripe.com/docs/webhooks)"},
			"Stripe-Signature": {"t=" + ts + ",v1=" + hmacHex(uiStripeSecret, ts+"."+string(charge))},
		}): "delivered",
		u.post("/h/twilio/sms?account=AC0e4b", "application/x-www-form-urlencoded", sms, http.Header{
			"User-Agent": {"TwilioProxy/1.1"},
		}): "delivered",
		u.post("/h/sensors/greenhouse-3", "application/octet-stream", reading, http.Header{
			"X-Device-Id": {"gh3-probe-07"},
		}): "delivered",
		u.post("/h/shop/orders", "application/json", order, http.Header{
			"X-Shop-Topic": {"orders/create"},
		}): "dead",
	}
	testutil.CheckFor(u.t, 10*time.Second, 50*time.Millisecond, func() error {
		for id, want := range ids {
			if st, err := u.relayState(id); err != nil || st != want {
				return fmt.Errorf("history webhook %s: relay state %q (%v), want %s", id, st, err, want)
			}
		}
		return nil
	})
}

// TestBrowserUI drives the whole product from a real browser: it logs in to the relay's UI
// with the admin token, sees a webhook sent meanwhile appear and get delivered, opens it,
// replays it and checks the replay at the target, then finds it in the agent's own UI.
func TestBrowserUI(t *testing.T) {
	chrome := browser.ChromiumPath(t)
	u := newUIWorld(t)
	u.sendHistory()
	ctx := browser.Start(t, chrome, 60*time.Second)
	jsErrors := browser.WatchExceptions(ctx)

	// log in once with the admin token; the session cookie is HttpOnly
	base := u.relayBase()
	if err := chromedp.Do(ctx,
		chromedp.Navigate(base+"/admin/"),
		chromedp.WaitVisible(chromedp.ID("login-token")),
		chromedp.SendKeys(chromedp.ID("login-token"), u.adminToken),
	); err != nil {
		t.Fatalf("open the relay's login page: %v", err)
	}
	resp, err := chromedp.RunResponse(ctx, chromedp.Click(chromedp.ID("login-submit")))
	if err != nil {
		t.Fatalf("log in: %v", err)
	}
	if resp.Status != 200 || resp.URL != base+"/admin/" {
		t.Fatalf("after login: %d %s, want 200 %s/admin/", resp.Status, resp.URL, base)
	}
	checkSessionCookie(t, ctx, base+"/admin/")
	browser.PollJS(t, ctx, "the live stream", `document.querySelector('#live.on') !== null`)
	browser.PollJS(t, ctx, "the history", `document.querySelectorAll('#webhooks tr[data-id]').length === 5`)
	browser.PollJS(t, ctx, "the agent", `document.querySelector('#agents tr[data-agent="edge-1"]') !== null`)

	// a webhook sent now appears without a reload, then turns delivered
	pr := []byte(`{"action":"opened","number":42,"pull_request":{"title":"Add admin UI","user":{"login":"octocat"},"draft":false,"head":{"ref":"admin-ui"},"base":{"ref":"main"}},"labels":["ui","admin"]}`)
	id := u.post("/h/github", "application/json", pr, githubHeaders("pull_request", "72d3162e-cc78-11e3-81ab-4c9367dc0958", pr))
	row := fmt.Sprintf(`#webhooks tr[data-id="%s"]`, id)
	browser.PollJS(t, ctx, "the new row", fmt.Sprintf(`document.querySelector('%s') !== null`, row))
	browser.PollJS(t, ctx, "the delivered state", fmt.Sprintf(`document.querySelector('%s .state').textContent === 'delivered'`, row))
	if n := len(u.arrivals(id)); n != 1 {
		t.Fatalf("the target got %s %d times before the replay, want 1", id, n)
	}

	// its detail: pretty-printed JSON body and its one delivery attempt
	clickRow(t, ctx, row, id)
	var pretty bytes.Buffer
	json.Indent(&pretty, pr, "", "  ")
	want, _ := json.Marshal(pretty.String())
	browser.PollJS(t, ctx, "the pretty-printed body", fmt.Sprintf(`document.getElementById('body').textContent === %s`, want))
	browser.PollJS(t, ctx, "the signature header", `Array.from(document.querySelectorAll('#headers td:first-child')).some((td) => td.textContent.toLowerCase() === 'x-hub-signature-256')`)
	browser.PollJS(t, ctx, "one delivery attempt", `document.querySelectorAll('#attempts tr').length === 1 && document.querySelector('#attempts td:nth-child(2)').textContent === '200'`)

	// replay: the target gets it again, marked as a replay, and the UI shows the new attempt
	if err := chromedp.Do(ctx, chromedp.Click(chromedp.ID("replay"))); err != nil {
		t.Fatalf("click replay: %v", err)
	}
	browser.PollJS(t, ctx, "the replay confirmation", `document.getElementById('replay-status').textContent.startsWith('Replay queued')`)
	testutil.CheckFor(t, 10*time.Second, 20*time.Millisecond, func() error {
		if n := len(u.arrivals(id)); n < 2 {
			return fmt.Errorf("the target got %s %d times after the replay, want 2", id, n)
		}
		return nil
	})
	got := u.arrivals(id)
	first, again := got[0].header, got[1].header
	switch {
	case len(got) != 2:
		t.Errorf("the target got %s %d times, want 2", id, len(got))
	case first.Get("Hookrelay-Replay") != "":
		t.Errorf("first delivery has hookrelay-replay %q", first.Get("Hookrelay-Replay"))
	case again.Get("Hookrelay-Replay") != "1":
		t.Errorf("replayed delivery has hookrelay-replay %q, want 1", again.Get("Hookrelay-Replay"))
	case again.Get("Hookrelay-Id") != id || again.Get("Webhook-Id") != id:
		t.Errorf("replayed delivery ids: hookrelay-id %q webhook-id %q, want %s", again.Get("Hookrelay-Id"), again.Get("Webhook-Id"), id)
	case !bytes.Equal(got[1].body, pr) || again.Get("X-Hub-Signature-256") != first.Get("X-Hub-Signature-256"):
		t.Errorf("replayed delivery differs from the original: body %q", got[1].body)
	}
	browser.PollJS(t, ctx, "the second attempt in the detail", `document.querySelectorAll('#attempts tr').length === 2 && document.getElementById('d-attempts').textContent === '2'`)
	browser.PollJS(t, ctx, "the delivered state after the replay", fmt.Sprintf(`document.querySelector('%s .state').textContent === 'delivered' && document.querySelector('#d-state .state').textContent === 'delivered'`, row))
	browser.PollJS(t, ctx, "two attempts in the list", fmt.Sprintf(`document.querySelector('%s td.num').textContent === '2'`, row))
	shoot(t, ctx, "admin-ui.png")

	// the agent's own UI (loopback, no login) lists the same webhook, delivered twice
	actx, cancel := chromedp.NewContext(ctx)
	defer cancel()
	arow := fmt.Sprintf(`#webhooks tr[data-id="%s"]`, id)
	if err := chromedp.Do(actx, chromedp.Navigate(u.agentAdmin+"/admin/")); err != nil {
		t.Fatalf("open the agent's UI: %v", err)
	}
	browser.PollJS(t, actx, "the agent's side", `document.getElementById('side').textContent === 'agent admin'`)
	browser.PollJS(t, actx, "the webhook in the agent's list", fmt.Sprintf(`document.querySelector('%s .state') !== null && document.querySelector('%s .state').textContent === 'delivered'`, arow, arow))
	clickRow(t, actx, arow, id)
	browser.PollJS(t, actx, "both deliveries in the agent's detail", `document.querySelectorAll('#attempts tr').length === 2`)
	browser.PollJS(t, actx, "the agent's history", `document.querySelectorAll('#webhooks tr[data-id]').length === 6 && document.querySelector('#webhooks .state.dead') !== null`)
	shoot(t, actx, "agent-ui.png")

	if errs := jsErrors(); len(errs) > 0 {
		t.Errorf("JavaScript exceptions: %s", strings.Join(errs, "; "))
	}
}

// clickRow clicks a webhook's row until the detail shows it: the live list replaces a row
// when its webhook changes, and a click aimed at the old node is lost.
func clickRow(t *testing.T, ctx context.Context, sel, id string) {
	t.Helper()
	shown := fmt.Sprintf(`document.getElementById('d-id').textContent === %q`, id)
	testutil.CheckFor(t, 10*time.Second, 100*time.Millisecond, func() error {
		if err := chromedp.Do(ctx, chromedp.Click(chromedp.CSS(sel))); err != nil {
			return fmt.Errorf("click %s: %w", sel, err)
		}
		if ok, err := chromedp.Run(ctx, chromedp.Evaluate[bool](shown)); err != nil || !ok {
			return fmt.Errorf("the detail does not show %s after a click (%v)", id, err)
		}
		return nil
	})
}

// checkSessionCookie checks that logging in left a session cookie the page's script cannot read.
func checkSessionCookie(t *testing.T, ctx context.Context, url string) {
	t.Helper()
	res, err := chromedp.Call(ctx, network.GetCookies, network.GetCookiesParams{URLs: []string{url}})
	if err != nil {
		t.Fatalf("read cookies: %v", err)
	}
	if len(res.Cookies) == 0 {
		t.Fatal("no session cookie after login")
	}
	for _, c := range res.Cookies {
		if !c.HTTPOnly {
			t.Errorf("cookie %s is not HttpOnly", c.Name)
		}
	}
	if js, err := chromedp.Run(ctx, chromedp.Evaluate[string](`document.cookie`)); err != nil || js != "" {
		t.Errorf("the page's script sees cookies %q (%v), want none", js, err)
	}
}

// shoot saves a full-page screenshot to the test's artifact folder, and to
// HOOKRELAY_SCREENSHOT_DIR when set (docs/ keeps one for the README).
func shoot(t *testing.T, ctx context.Context, name string) {
	t.Helper()
	browser.PollJS(t, ctx, "the row highlights to fade", `document.getAnimations().length === 0`)
	png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	if err != nil {
		t.Fatalf("screenshot %s: %v", name, err)
	}
	browser.SaveScreenshot(t, name, png)
}
