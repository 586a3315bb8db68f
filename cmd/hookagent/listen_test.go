package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hookrelay/hookrelay/internal/testutil"
	"github.com/hookrelay/hookrelay/protocol"
)

// waitOutput polls out until re matches a line, and returns the match.
func waitOutput(t *testing.T, out *testutil.SyncBuffer, re string) []string {
	t.Helper()
	rx := regexp.MustCompile(re)
	deadline := time.Now().Add(15 * time.Second)
	for {
		if m := rx.FindStringSubmatch(out.String()); m != nil {
			return m
		}
		if time.Now().After(deadline) {
			t.Fatalf("no output line matching %q in:\n%s", re, out.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// listenRelay is a fake relay: it welcomes each tunnel and, on the first one only, sends
// webhook wh. Frames from the agent go to frames; hellos to hellos.
type listenRelay struct {
	*httptest.Server
	hellos chan *protocol.Hello
	frames chan protocol.Frame
	tuns   chan protocol.Tunnel
}

func newListenRelay(t *testing.T, wh *protocol.Webhook) *listenRelay {
	lr := &listenRelay{
		hellos: make(chan *protocol.Hello, 8),
		frames: make(chan protocol.Frame, 256),
		tuns:   make(chan protocol.Tunnel, 8),
	}
	var once sync.Once
	var wg sync.WaitGroup
	lr.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		tun, err := protocol.AcceptWebSocket(w, r, protocol.WSConfig{})
		if err != nil {
			t.Errorf("accept: %v", err)
			return
		}
		f, err := tun.ReadFrame()
		hello, ok := f.(*protocol.Hello)
		if err != nil || !ok {
			t.Errorf("first frame %T, %v", f, err)
			tun.Close()
			return
		}
		lr.hellos <- hello
		lr.tuns <- tun
		if err := tun.WriteFrame(&protocol.Welcome{SessionID: "s", Endpoints: hello.Endpoints, Window: 16,
			MaxFrame: protocol.DefaultMaxFrame, ServerTime: time.Now()}); err != nil {
			return
		}
		once.Do(func() {
			if err := protocol.SendWebhook(tun, wh, 0); err != nil {
				t.Errorf("send webhook: %v", err)
			}
		})
		wg.Go(func() {
			for {
				f, err := tun.ReadFrame()
				if err != nil {
					return
				}
				select {
				case lr.frames <- f:
				default:
				}
			}
		})
	}))
	t.Cleanup(func() {
		lr.Close()
		for {
			select {
			case tun := <-lr.tuns:
				tun.Close()
				continue
			default:
			}
			break
		}
		wg.Wait()
	})
	return lr
}

func TestListenSurvivesTargetRestart(t *testing.T) {
	const id = "01JTESTLISTEN00000000000001"
	wh := &protocol.Webhook{
		ID: id, Endpoint: "dev", ReceivedAt: time.Now(), Method: "POST", Path: "/hook", Query: "a=1",
		Headers: []protocol.Header{{Name: "Content-Type", Value: "application/json"}},
		Body:    []byte(`{"hello":"world","n":[1,2]}`),
	}
	wh.BodyLen = int64(len(wh.Body))
	lr := newListenRelay(t, wh)
	relayURL := "ws://" + strings.TrimPrefix(lr.URL, "http://")
	addr := testutil.FreeAddr(t) // the developer's server is not up yet
	t.Setenv("HOOKAGENT_TOKEN", "dev-token")

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var stdout, stderr testutil.SyncBuffer
	done := make(chan error, 1)
	go func() {
		done <- runListen(ctx, []string{
			"--relay", relayURL, "--endpoint", "dev", "--forward", "http://" + addr + "/base",
			"--data", t.TempDir(), "--admin", "127.0.0.1:0", "--print-body",
		}, &stdout, &stderr)
	}()

	select {
	case h := <-lr.hellos:
		if h.Token != "dev-token" || len(h.Endpoints) != 1 || h.Endpoints[0] != "dev" {
			t.Fatalf("hello: token %q endpoints %v", h.Token, h.Endpoints)
		}
	case err := <-done:
		t.Fatalf("listen returned early: %v\n%s", err, stderr.String())
	case <-time.After(15 * time.Second):
		t.Fatal("no tunnel from listen")
	}
	waitOutput(t, &stdout, `(?m)^forwarding http://127\.0\.0\.1:\d+/h/dev to http://`+regexp.QuoteMeta(addr)+`/base$`)
	admin := waitOutput(t, &stdout, `(?m)^admin UI: (http://127\.0\.0\.1:\d+/admin/)$`)[1]
	waitOutput(t, &stdout, `(?m)^\d\d:\d\d:\d\d connected to `+regexp.QuoteMeta(relayURL)+` via websocket as \S+$`)

	// Target down: the attempt fails to connect and is retried.
	waitOutput(t, &stdout, `(?m)^\d\d:\d\d:\d\d POST /hook\?a=1 connect \d+ms `+id+` retry in \S+$`)
	// The body was printed once, pretty, under the first line.
	if !strings.Contains(stdout.String(), "\n  {\n    \"hello\": \"world\",\n") {
		t.Fatalf("body not printed pretty:\n%s", stdout.String())
	}

	// The developer starts the server: the webhook is delivered.
	got := make(chan string, 4)
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Skipf("port %s taken meanwhile: %v", addr, err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		got <- r.Method + " " + r.RequestURI + " " + r.Header.Get("Hookrelay-Id") + " " + string(b)
		w.WriteHeader(http.StatusAccepted)
	})}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	select {
	case s := <-got:
		if want := "POST /base/hook?a=1 " + id + ` {"hello":"world","n":[1,2]}`; s != want {
			t.Fatalf("target saw %q, want %q", s, want)
		}
	case <-time.After(20 * time.Second):
		t.Fatalf("not delivered after the target started:\n%s", stdout.String())
	}
	waitOutput(t, &stdout, `(?m)^\d\d:\d\d:\d\d POST /hook\?a=1 202 \d+ms `+id+` \(attempt \d+\)$`)
	if n := strings.Count(stdout.String(), `"hello": "world"`); n != 1 {
		t.Errorf("body printed %d times, want once", n)
	}

	// The admin UI address printed works, and shows the delivery.
	resp, err := http.Get(admin + "api/webhooks/" + id)
	if err != nil {
		t.Fatal(err)
	}
	page, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || !strings.Contains(string(page), `"state":"delivered"`) {
		t.Fatalf("admin API: %s %s", resp.Status, page)
	}

	// The tunnel drops: a clear line, then connected again.
	(<-lr.tuns).Close()
	waitOutput(t, &stdout, `(?m)^\d\d:\d\d:\d\d tunnel down: .+; reconnecting$`)
	checkConnected := regexp.MustCompile(`(?m)^\d\d:\d\d:\d\d connected to `)
	deadline := time.Now().Add(15 * time.Second)
	for len(checkConnected.FindAllString(stdout.String(), -1)) < 2 {
		if time.Now().After(deadline) {
			t.Fatalf("not reconnected:\n%s", stdout.String())
		}
		time.Sleep(10 * time.Millisecond)
	}

	// Ctrl-C: a clean exit.
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("listen after ctx cancel: %v", err)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("listen did not return after ctx cancel")
	}
	t.Logf("stdout:\n%s\nstderr:\n%s", stdout.String(), stderr.String())
	if strings.Contains(stderr.String(), "dev-token") || strings.Contains(stdout.String(), "dev-token") {
		t.Fatal("the token was printed")
	}
}

func TestListenFlagErrors(t *testing.T) {
	t.Setenv("HOOKAGENT_TOKEN", "")
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--endpoint", "e", "--token", "t"}, "--relay"},
		{[]string{"--relay", "ws://x", "--token", "t"}, "--endpoint"},
		{[]string{"--relay", "ws://x", "--endpoint", "e"}, "HOOKAGENT_TOKEN"},
		{[]string{"--relay", "ws://x", "--endpoint", "e", "--token", "t", "--forward", "localhost:3000"}, "--forward"},
		{[]string{"--relay", "ftp://x", "--endpoint", "e", "--token", "t", "--data", "DATA"}, "relay"},
		{[]string{"--relay", "ws://x", "--endpoint", "e", "--token", "t", "--concurrency", "0"}, "--concurrency"},
	} {
		for i, a := range tc.args {
			if a == "DATA" {
				tc.args[i] = t.TempDir()
			}
		}
		var out, errOut bytes.Buffer
		err := runListen(context.Background(), tc.args, &out, &errOut)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%v: err %v, want it to name %s", tc.args, err, tc.want)
		}
	}
}

func TestFormatBody(t *testing.T) {
	for _, tc := range []struct {
		body []byte
		want string
	}{
		{nil, ""},
		{[]byte(`{"a":[1,2]}`), "  {\n    \"a\": [\n      1,\n      2\n    ]\n  }\n"},
		{[]byte("a=1&b=2"), "  a=1&b=2\n"},
		{[]byte("line1\nline2\n"), "  line1\n  line2\n"},
		{[]byte("esc\x1b[31mred"), "  esc\\x1b[31mred\n"},
		{[]byte{0xff, 0xfe, 0x00}, "  <3 bytes binary>\n"},
	} {
		if got := formatBody(tc.body); got != tc.want {
			t.Errorf("formatBody(%q) = %q, want %q", tc.body, got, tc.want)
		}
	}
	if got := shortDur(1500 * time.Millisecond); got != "1.5s" {
		t.Errorf("shortDur(1.5s) = %q", got)
	}
	if got := shortDur(12*time.Millisecond + 400*time.Microsecond); got != "12ms" {
		t.Errorf("shortDur(12.4ms) = %q", got)
	}
	if got := fmt.Sprint(ingressURL("wss://relay.example.com/base/", "gh")); got != "https://relay.example.com/base/h/gh" {
		t.Errorf("ingressURL = %q", got)
	}
}
