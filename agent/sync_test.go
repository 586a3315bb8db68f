package agent

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hookrelay/hookrelay/internal/testutil"
	"github.com/hookrelay/hookrelay/persist"
	"github.com/hookrelay/hookrelay/relay"
	"github.com/hookrelay/hookrelay/relay/verify"
)

const (
	syncAdminToken = "relay-admin-token"
	syncSecretRaw  = "sync-test-secret-32-bytes-long!!"
)

// syncTarget answers each request with answer (called with the request's Hookrelay-Id and
// how many times that id was seen, 1-based).
type syncTarget struct {
	*httptest.Server
	mu    sync.Mutex
	count map[string]int
}

func newSyncTarget(t *testing.T, answer func(w http.ResponseWriter, r *http.Request, n int)) *syncTarget {
	tg := &syncTarget{count: map[string]int{}}
	tg.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		id := r.Header.Get("Hookrelay-Id")
		tg.mu.Lock()
		tg.count[id]++
		n := tg.count[id]
		tg.mu.Unlock()
		answer(w, r, n)
	}))
	t.Cleanup(tg.Close)
	return tg
}

func (tg *syncTarget) seen(id string) int {
	tg.mu.Lock()
	defer tg.mu.Unlock()
	return tg.count[id]
}

// syncRelay runs a relay whose endpoint "ep" is sync (timeout) and verifies Standard
// Webhooks, with its admin API on its own port.
func syncRelay(t *testing.T, timeout time.Duration) *relay.Server {
	sum := sha256.Sum256([]byte(syncAdminToken))
	return startRelayWith(t, false, func(c *relay.Config) {
		c.AdminAddr = "127.0.0.1:0"
		c.AdminToken = "sha256:" + hex.EncodeToString(sum[:])
		c.Endpoints[0].Sync = relay.SyncConfig{Enabled: true, Timeout: timeout}
		c.Endpoints[0].Verify = &verify.Config{StandardWebhooks: &verify.Timed{
			Secrets: verify.Secrets{Secret: "whsec_" + base64.StdEncoding.EncodeToString([]byte(syncSecretRaw))}}}
	})
}

// syncAgent runs an agent toward s delivering ep to tg, its route exposing answers or not,
// and waits until it is connected.
func syncAgent(t *testing.T, s *relay.Server, tg *syncTarget, expose bool) *Agent {
	a, _ := autoAgent(t, "ws://"+s.Addr(), "", &target{Server: tg.Server}, func(c *Config) {
		c.AdminAddr = "127.0.0.1:0"
		c.Routes[0].ExposeResponse = expose
		c.Routes[0].BackoffMin, c.Routes[0].BackoffMax = 10*time.Millisecond, 20*time.Millisecond
	})
	testutil.WaitFor(t, 10*time.Second, "agent connected", a.Connected)
	return a
}

// postSigned sends body to ep signed as Standard Webhooks message msgID.
func postSigned(t *testing.T, s *relay.Server, msgID, body string) *http.Response {
	t.Helper()
	ts := strconv.FormatInt(time.Now().Unix(), 10)
	mac := hmac.New(sha256.New, []byte(syncSecretRaw))
	mac.Write([]byte(msgID + "." + ts + "." + body))
	req, _ := http.NewRequest("POST", "http://"+s.Addr()+"/h/ep", strings.NewReader(body))
	req.Header.Set("Webhook-Id", msgID)
	req.Header.Set("Webhook-Timestamp", ts)
	req.Header.Set("Webhook-Signature", "v1,"+base64.StdEncoding.EncodeToString(mac.Sum(nil)))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { resp.Body.Close() })
	return resp
}

// fallbackID checks a fallback answer (202 {"id"}, hookrelay-sync: fallback) and returns the id.
func fallbackID(t *testing.T, resp *http.Response) string {
	t.Helper()
	var out struct{ ID string }
	json.NewDecoder(resp.Body).Decode(&out)
	if resp.StatusCode != http.StatusAccepted || resp.Header.Get("Hookrelay-Sync") != "fallback" || out.ID == "" {
		t.Fatalf("answer %d, hookrelay-sync %q, id %q; want 202 fallback with an id", resp.StatusCode,
			resp.Header.Get("Hookrelay-Sync"), out.ID)
	}
	return out.ID
}

// relayWebhook reads a webhook from the relay's admin API.
func relayWebhook(t *testing.T, s *relay.Server, id string) map[string]any {
	t.Helper()
	req, _ := http.NewRequest("GET", "http://"+s.AdminAddr()+"/admin/api/webhooks/"+id, nil)
	req.Header.Set("Authorization", "Bearer "+syncAdminToken)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var out map[string]any
	json.NewDecoder(resp.Body).Decode(&out)
	return out
}

// lastResponse is the recorded response of a webhook's last delivery in an admin answer.
func lastResponse(w map[string]any) (headers [][]any, body string) {
	ds, _ := w["deliveries"].([]any)
	if len(ds) == 0 {
		return nil, ""
	}
	d := ds[len(ds)-1].(map[string]any)
	for _, h := range asSlice(d["response_headers"]) {
		headers = append(headers, h.([]any))
	}
	b, _ := base64.StdEncoding.DecodeString(fmt.Sprint(d["response_body_base64"]))
	return headers, string(b)
}

func asSlice(v any) []any { s, _ := v.([]any); return s }

func hasHeader(hs [][]any, name, value string) bool {
	for _, h := range hs {
		if len(h) == 2 && strings.EqualFold(fmt.Sprint(h[0]), name) && h[1] == value {
			return true
		}
	}
	return false
}

// The sender gets the target's non-2xx answer (status, custom header, body) with
// hookrelay-id; that webhook is then dead "returned to sender" on both sides and never
// retried; both admin APIs show the recorded response; a Standard Webhooks resend of the
// message is stored and delivered anew instead of being answered from the replay window.
func TestSyncReturnsTargetAnswer(t *testing.T) {
	s := syncRelay(t, 10*time.Second)
	tg := newSyncTarget(t, func(w http.ResponseWriter, r *http.Request, n int) {
		if strings.Contains(r.Header.Get("Hookrelay-Original-Webhook-Id")+r.Header.Get("Webhook-Id"), "resend-ok") {
			w.WriteHeader(http.StatusOK)
			io.WriteString(w, "fine")
			return
		}
		w.Header().Set("X-Custom", "why-not")
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusConflict)
		io.WriteString(w, `{"error":"already taken"}`)
	})
	a := syncAgent(t, s, tg, true)

	resp := postSigned(t, s, "msg_1", `{"n":1}`)
	body, _ := io.ReadAll(resp.Body)
	id := resp.Header.Get("Hookrelay-Id")
	if resp.StatusCode != http.StatusConflict || resp.Header.Get("X-Custom") != "why-not" ||
		string(body) != `{"error":"already taken"}` || id == "" || resp.Header.Get("Hookrelay-Sync") != "" {
		t.Fatalf("sync answer %d %q, X-Custom %q, hookrelay-id %q, sync %q; want the target's 409",
			resp.StatusCode, body, resp.Header.Get("X-Custom"), id, resp.Header.Get("Hookrelay-Sync"))
	}

	rec := waitState(t, a, id, persist.StateDead)
	if rec.DeadReason != "returned to sender" || rec.Attempts != 1 || tg.seen(id) != 1 {
		t.Fatalf("agent: dead %q after %d attempts, target saw it %d times; want returned to sender, 1",
			rec.DeadReason, rec.Attempts, tg.seen(id))
	}
	var ad map[string]any
	adminCall(t, a, "GET", "/admin/api/webhooks/"+id, &ad)
	if hs, b := lastResponse(ad); !hasHeader(hs, "X-Custom", "why-not") || b != `{"error":"already taken"}` {
		t.Fatalf("agent admin response: %v %q", hs, b)
	}
	testutil.CheckFor(t, 10*time.Second, 20*time.Millisecond, func() error {
		w := relayWebhook(t, s, id)
		if w["state"] != "dead" || w["dead_reason"] != "returned to sender" {
			return fmt.Errorf("relay: %v %v", w["state"], w["dead_reason"])
		}
		if hs, b := lastResponse(w); !hasHeader(hs, "X-Custom", "why-not") || b != `{"error":"already taken"}` {
			return fmt.Errorf("relay admin response: %v %q", hs, b)
		}
		return nil
	})
	if n := tg.seen(id); n != 1 {
		t.Fatalf("a webhook returned to its sender was delivered %d times", n)
	}

	// The sender resends the same message: stored and delivered anew.
	again := postSigned(t, s, "msg_1", `{"n":1}`)
	io.ReadAll(again.Body)
	id2 := again.Header.Get("Hookrelay-Id")
	if again.StatusCode != http.StatusConflict || id2 == "" || id2 == id {
		t.Fatalf("resend answered %d with id %q (first %q); want a new webhook and the target's answer", again.StatusCode, id2, id)
	}
	if tg.seen(id2) != 1 {
		t.Fatalf("the resend reached the target %d times", tg.seen(id2))
	}
	// A message answered 2xx stays in the replay window: its resend gets the same id.
	ok := postSigned(t, s, "resend-ok", `{"n":2}`)
	okBody, _ := io.ReadAll(ok.Body)
	okID := ok.Header.Get("Hookrelay-Id")
	if ok.StatusCode != http.StatusOK || string(okBody) != "fine" || okID == "" {
		t.Fatalf("2xx sync answer %d %q id %q", ok.StatusCode, okBody, okID)
	}
	dup := postSigned(t, s, "resend-ok", `{"n":2}`)
	var out struct{ ID string }
	json.NewDecoder(dup.Body).Decode(&out)
	if dup.StatusCode != http.StatusAccepted || out.ID != okID {
		t.Fatalf("resend of a delivered message: %d %q, want 202 %q from the replay window", dup.StatusCode, out.ID, okID)
	}
}

// With no agent connected the sender gets 202 fallback at once; the webhook is delivered as
// usual once one connects.
func TestSyncFallbackWithoutAgent(t *testing.T) {
	s := syncRelay(t, 10*time.Second)
	tg := newSyncTarget(t, func(w http.ResponseWriter, r *http.Request, n int) { w.WriteHeader(http.StatusBadRequest) })
	start := time.Now()
	id := fallbackID(t, postSigned(t, s, "msg_away", "{}"))
	if took := time.Since(start); took > 5*time.Second {
		t.Fatalf("fallback took %v: it must not wait for the timeout", took)
	}
	a := syncAgent(t, s, tg, true)
	rec := waitState(t, a, id, persist.StateDead) // 400 is not retried: dead, but not returned
	if rec.DeadReason == "returned to sender" || tg.seen(id) != 1 {
		t.Fatalf("dead %q, seen %d: the sender did not get this answer", rec.DeadReason, tg.seen(id))
	}
}

// A target slower than the timeout: 202 fallback, then delivery goes on as usual (retried
// by hookrelay, since the sender got no answer).
func TestSyncFallbackOnTimeout(t *testing.T) {
	s := syncRelay(t, 300*time.Millisecond)
	release := make(chan struct{})
	tg := newSyncTarget(t, func(w http.ResponseWriter, r *http.Request, n int) {
		if n == 1 {
			<-release
			w.WriteHeader(http.StatusServiceUnavailable)
			return
		}
		w.WriteHeader(http.StatusOK)
	})
	a := syncAgent(t, s, tg, true)
	id := fallbackID(t, postSigned(t, s, "msg_slow", "{}"))
	close(release)
	rec := waitState(t, a, id, persist.StateDelivered)
	if rec.Attempts != 2 || tg.seen(id) != 2 {
		t.Fatalf("delivered after %d attempts (target saw %d), want the 503 retried once", rec.Attempts, tg.seen(id))
	}
	testutil.CheckFor(t, 10*time.Second, 20*time.Millisecond, func() error {
		if w := relayWebhook(t, s, id); w["state"] != "delivered" {
			return fmt.Errorf("relay state %v", w["state"])
		}
		return nil
	})
}

// A route that does not expose its target's answers: fallback without waiting, delivery as
// usual, and the relay records no response.
func TestSyncFallbackWhenRouteDoesNotExpose(t *testing.T) {
	s := syncRelay(t, 10*time.Second)
	tg := newSyncTarget(t, func(w http.ResponseWriter, r *http.Request, n int) {
		w.Header().Set("X-Secret", "internal")
		w.WriteHeader(http.StatusOK)
		io.WriteString(w, "private")
	})
	a := syncAgent(t, s, tg, false)
	start := time.Now()
	id := fallbackID(t, postSigned(t, s, "msg_private", "{}"))
	if took := time.Since(start); took > 5*time.Second {
		t.Fatalf("fallback took %v", took)
	}
	waitState(t, a, id, persist.StateDelivered)
	var ad map[string]any
	adminCall(t, a, "GET", "/admin/api/webhooks/"+id, &ad)
	if hs, b := lastResponse(ad); !hasHeader(hs, "X-Secret", "internal") || b != "private" {
		t.Fatalf("the agent records every response: %v %q", hs, b)
	}
	testutil.CheckFor(t, 10*time.Second, 20*time.Millisecond, func() error {
		w := relayWebhook(t, s, id)
		if w["state"] != "delivered" {
			return fmt.Errorf("relay state %v", w["state"])
		}
		if hs, b := lastResponse(w); hs != nil || b != "" {
			t.Fatalf("the relay recorded a response of a route that does not expose it: %v %q", hs, b)
		}
		return nil
	})
}

func TestConfigExposeResponse(t *testing.T) {
	c, err := ParseConfig([]byte("relay: wss://relay.example\ntoken: t\ndata_dir: " + t.TempDir() +
		"\nroutes:\n  - {endpoint: a, target: 'http://127.0.0.1:9/', expose_response: true}\n  - {endpoint: b, target: 'http://127.0.0.1:9/'}\n"))
	if err != nil {
		t.Fatal(err)
	}
	if got := c.exposed(); len(got) != 1 || got[0] != "a" {
		t.Fatalf("exposed %v, want [a] (default false)", got)
	}
}

// An agent speaking protocol version 1 exposes nothing: sync falls back, and delivery goes
// on as usual.
func TestSyncFallbackForVersion1Agent(t *testing.T) {
	s := syncRelay(t, 10*time.Second)
	tg := newSyncTarget(t, func(w http.ResponseWriter, r *http.Request, n int) { w.WriteHeader(http.StatusOK) })
	a := newTestAgentWith(t, "ws://"+s.Addr(), func(c *Config) { c.Token = autoToken },
		Route{Endpoint: "ep", Target: tg.URL, ExposeResponse: true})
	a.oldRelay.Store(true) // Hello says protocol.MinVersion
	runAgent(t, a)
	testutil.WaitFor(t, 10*time.Second, "agent connected", a.Connected)
	start := time.Now()
	id := fallbackID(t, postSigned(t, s, "msg_v1", "{}"))
	if took := time.Since(start); took > 5*time.Second {
		t.Fatalf("fallback took %v", took)
	}
	waitState(t, a, id, persist.StateDelivered)
}
