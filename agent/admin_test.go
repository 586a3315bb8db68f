package agent

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/hookrelay/hookrelay/internal/testutil"
	"github.com/hookrelay/hookrelay/persist"
)

// adminCall makes a request to the agent's admin address and decodes a JSON answer into out
// (when not nil); it returns the status code.
func adminCall(t *testing.T, a *Agent, method, path string, out any) int {
	t.Helper()
	req, err := http.NewRequest(method, "http://"+a.AdminAddr()+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if out != nil && len(b) > 0 {
		if err := json.Unmarshal(b, out); err != nil {
			t.Fatalf("%s %s: %v in %q", method, path, err, b)
		}
	}
	return resp.StatusCode
}

type listAnswer struct {
	Webhooks []struct {
		ID, Endpoint, State string
		Attempts            int
	} `json:"webhooks"`
}

func (l listAnswer) ids() []string {
	var out []string
	for _, w := range l.Webhooks {
		out = append(out, w.ID+":"+w.State)
	}
	return out
}

func TestAdminAPIOnAgent(t *testing.T) {
	// "dead*" ids are refused until their second request; everything else is accepted.
	tg := newTarget(t, func(r *http.Request, n int) (int, http.Header) {
		if strings.HasPrefix(r.Header.Get("Hookrelay-Id"), "dead") && n == 1 {
			return http.StatusUnprocessableEntity, nil
		}
		return http.StatusOK, nil
	})
	a, fr := runOnFakeRelay(t, tg)
	c := fr.welcome(t)
	v := newView()
	c.send(t, webhook("ok1", []byte(`{"n":1}`)))
	c.send(t, webhook("dead1", []byte("d1")))
	c.send(t, webhook("dead2", []byte("d2")))
	c.until(t, v, func() bool { return len(v.reports) == 3 })

	// Status: the agent's own view.
	var st struct {
		Side   string `json:"side"`
		Status Status `json:"status"`
	}
	if code := adminCall(t, a, "GET", "/admin/api/status", &st); code != http.StatusOK {
		t.Fatalf("status: %d", code)
	}
	s := st.Status
	if st.Side != "agent" || s.AgentID != a.AgentID() || !s.Connected || s.Transport != "websocket" ||
		s.ConnectedSince == nil || s.Relay != fr.url() || len(s.Routes) != 1 || s.Routes[0].Endpoint != "ep" ||
		s.Routes[0].Dead != 2 || s.Routes[0].Queued != 0 {
		t.Fatalf("status: %+v", st)
	}

	// List and get, with the body and the attempts.
	var list listAnswer
	adminCall(t, a, "GET", "/admin/api/webhooks?endpoint=ep", &list)
	if got := strings.Join(list.ids(), " "); got != "ok1:delivered dead2:dead dead1:dead" &&
		got != "ok1:delivered dead1:dead dead2:dead" {
		t.Fatalf("list: %s", got)
	}
	var one struct {
		ID, State, Method, Path string
		Headers                 [][2]string
		BodyBase64              string `json:"body_base64"`
		Deliveries              []struct{ Status int }
	}
	if code := adminCall(t, a, "GET", "/admin/api/webhooks/ok1", &one); code != http.StatusOK {
		t.Fatalf("get: %d", code)
	}
	body, _ := base64.StdEncoding.DecodeString(one.BodyBase64)
	if one.State != "delivered" || one.Method != "POST" || one.Path != "/p" || string(body) != `{"n":1}` ||
		len(one.Headers) != 1 || one.Headers[0] != [2]string{"X-Sig", "s-ok1"} ||
		len(one.Deliveries) != 1 || one.Deliveries[0].Status != 200 {
		t.Fatalf("get: %+v", one)
	}

	// Replay of a delivered webhook: delivered again, marked, and reported again.
	if code := adminCall(t, a, "POST", "/admin/api/webhooks/ok1/replay", nil); code != http.StatusAccepted {
		t.Fatalf("replay: %d", code)
	}
	testutil.CheckFor(t, 10*time.Second, 10*time.Millisecond, func() error {
		if reqs := tg.requests("ok1"); len(reqs) != 2 {
			return fmt.Errorf("ok1 reached the target %d times", len(reqs))
		}
		return nil
	})
	if reqs := tg.requests("ok1"); reqs[0].Header.Get("Hookrelay-Replay") != "" || reqs[1].Header.Get("Hookrelay-Replay") != "1" ||
		string(reqs[1].Body) != `{"n":1}` {
		t.Fatalf("replay headers %q then %q", reqs[0].Header["Hookrelay-Replay"], reqs[1].Header["Hookrelay-Replay"])
	}
	c.until(t, v, func() bool { return len(v.reports["ok1"]) == 2 })

	// Dead letters: list, delete one, replay the rest.
	var dead listAnswer
	adminCall(t, a, "GET", "/admin/api/dead", &dead)
	if len(dead.Webhooks) != 2 {
		t.Fatalf("dead: %v", dead.ids())
	}
	if code := adminCall(t, a, "DELETE", "/admin/api/dead/dead2", nil); code != http.StatusNoContent {
		t.Fatalf("delete dead: %d", code)
	}
	if code := adminCall(t, a, "DELETE", "/admin/api/dead/ok1", nil); code != http.StatusConflict {
		t.Fatalf("delete of a webhook that is not dead: %d", code)
	}
	if _, err := a.Store().Get("dead2"); err == nil {
		t.Fatal("deleted dead letter still stored")
	}
	var count struct{ Count int }
	if code := adminCall(t, a, "POST", "/admin/api/dead/replay?endpoint=ep", &count); code != http.StatusAccepted || count.Count != 1 {
		t.Fatalf("replay dead: %d, count %d", code, count.Count)
	}
	rec := waitState(t, a, "dead1", persist.StateDelivered)
	if reqs := tg.requests("dead1"); len(reqs) != 2 || reqs[1].Header.Get("Hookrelay-Replay") != "1" || rec.Attempts != 2 {
		t.Fatalf("dead1 after replay: %d requests, attempts %d", len(reqs), rec.Attempts)
	}
	if len(tg.requests("dead2")) != 1 {
		t.Fatal("deleted dead letter was delivered")
	}

	// The UI is served, and / leads to it.
	resp, err := http.Get("http://" + a.AdminAddr() + "/")
	if err != nil {
		t.Fatal(err)
	}
	page, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || resp.Request.URL.Path != "/admin/" || !strings.Contains(string(page), "<html") {
		t.Fatalf("UI: %s at %s", resp.Status, resp.Request.URL)
	}
}
