package agent

import (
	"bytes"
	"crypto/hmac"
	"encoding/base64"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/hookrelay/hookrelay/internal/testutil"
	"github.com/hookrelay/hookrelay/protocol"
)

// The Standard Webhooks specification's own example.
const (
	swSpecSecret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
	swSpecID     = "msg_p5jXN8AQM9LWM0D4loKWxJek"
	swSpecTS     = "1614265330"
	swSpecBody   = `{"test": 2432232314}`
	swSpecSig    = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
)

func TestStandardWebhooksSpecExample(t *testing.T) {
	s := &Sign{StandardWebhooks: &StandardWebhooksSign{Secret: swSpecSecret}}
	if err := s.validate(); err != nil {
		t.Fatal(err)
	}
	ts, _ := strconv.ParseInt(swSpecTS, 10, 64)
	h := http.Header{}
	if err := s.StandardWebhooks.apply(h, swSpecID, time.Unix(ts, 0), strings.NewReader(swSpecBody)); err != nil {
		t.Fatal(err)
	}
	if got := h.Get("Webhook-Signature"); got != swSpecSig {
		t.Errorf("signature %q, want the specification's %q", got, swSpecSig)
	}
	if h.Get("Webhook-Id") != swSpecID || h.Get("Webhook-Timestamp") != swSpecTS {
		t.Errorf("headers %v", h)
	}
}

func TestSignConfigErrors(t *testing.T) {
	for _, c := range []struct{ sign, want string }{
		{"{}", "sign: no scheme"},
		{"{standard_webhooks: {}}", "sign.standard_webhooks.secret: missing"},
		{"{standard_webhooks: {secret: whsec_not*base64}}", "sign.standard_webhooks.secret: not whsec_ + base64"},
		{"{standard_webhooks: {secret: whsec_c2hvcnQ=}}", "sign.standard_webhooks.secret: key is 5 bytes (24 to 64"},
	} {
		_, err := ParseConfig([]byte("relay: ws://127.0.0.1:1\ntoken: t\ndata_dir: /tmp/x\n" +
			"routes: [{endpoint: ep, target: \"http://127.0.0.1:1/\", sign: " + c.sign + "}]\n"))
		if err == nil || !strings.Contains(err.Error(), "config routes[0]: "+c.want) {
			t.Errorf("sign %s: err %v, want %q", c.sign, err, c.want)
		}
	}
}

// TestSignedDelivery: through a real relay, every attempt reaching the target carries
// hookrelay's Standard Webhooks signature over the exact body, with the attempt's own
// timestamp; the sender's webhook-* headers arrive as hookrelay-original-webhook-*.
func TestSignedDelivery(t *testing.T) {
	s := startRelay(t, false)
	tg := newTarget(t, func(r *http.Request, n int) (int, http.Header) {
		if n == 1 {
			return http.StatusServiceUnavailable, nil // a second attempt, signed anew
		}
		return http.StatusOK, nil
	})
	autoAgent(t, "ws://"+s.Addr(), "", tg, func(c *Config) {
		c.Routes[0].Sign = &Sign{StandardWebhooks: &StandardWebhooksSign{Secret: swSpecSecret}}
		c.Routes[0].BackoffMin, c.Routes[0].BackoffMax = 1100*time.Millisecond, 1200*time.Millisecond
	})
	body := "{\"exact\":  \"bytes\\u00e9\"}\n"
	req, _ := http.NewRequest("POST", "http://"+s.Addr()+"/h/ep/x", strings.NewReader(body))
	req.Header.Set("Webhook-Id", "msg_sender")
	req.Header.Set("Webhook-Timestamp", "1700000000")
	req.Header.Set("Webhook-Signature", "v1,c2VuZGVy")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	plain := postWebhook(t, s, "no webhook headers")
	key, _ := base64.StdEncoding.DecodeString(strings.TrimPrefix(swSpecSecret, "whsec_"))
	testutil.CheckFor(t, 20*time.Second, 20*time.Millisecond, func() error {
		if n := len(tg.all()); n < 4 {
			return fmt.Errorf("target saw %d requests, want 4 (two attempts of each)", n)
		}
		return nil
	})
	signed := tg.all()
	stamps := map[string]bool{}
	for _, r := range signed {
		id := r.Header.Get("Hookrelay-Id")
		if r.Header.Get("Webhook-Id") != id {
			t.Errorf("webhook-id %q, want hookrelay's id %q", r.Header.Get("Webhook-Id"), id)
		}
		ts := r.Header.Get("Webhook-Timestamp")
		sec, err := strconv.ParseInt(ts, 10, 64)
		if err != nil || time.Since(time.Unix(sec, 0)).Abs() > time.Minute {
			t.Errorf("webhook-timestamp %q is not the attempt's time", ts)
		}
		stamps[id+ts] = true
		sig, _ := standardSignature(key, id, ts, bytes.NewReader(r.Body))
		want := "v1," + sig
		if got := r.Header.Get("Webhook-Signature"); !hmac.Equal([]byte(got), []byte(want)) {
			t.Errorf("signature %q, want %q", got, want)
		}
		if id == plain {
			if len(r.Header.Values("Hookrelay-Original-Webhook-Id")) != 0 {
				t.Errorf("no sender header, but hookrelay-original-webhook-id %q", r.Header.Get("Hookrelay-Original-Webhook-Id"))
			}
			continue
		}
		if !bytes.Equal(r.Body, []byte(body)) {
			t.Errorf("body %q, want %q", r.Body, body)
		}
		for k, v := range map[string]string{"Id": "msg_sender", "Timestamp": "1700000000", "Signature": "v1,c2VuZGVy"} {
			if got := r.Header.Get("Hookrelay-Original-Webhook-" + k); got != v {
				t.Errorf("hookrelay-original-webhook-%s %q, want %q", k, got, v)
			}
		}
	}
	if len(stamps) != 4 {
		t.Errorf("attempts share a timestamp (%d distinct of 4): each attempt is signed at its own time", len(stamps))
	}
}

// TestSignedLargeBody: a body the agent streams from its store (not held in memory) is
// signed over its exact bytes.
func TestSignedLargeBody(t *testing.T) {
	body := make([]byte, 3<<20+17)
	for i := range body {
		body[i] = byte(i * 7)
	}
	key, _ := base64.StdEncoding.DecodeString(strings.TrimPrefix(swSpecSecret, "whsec_"))
	tg := newTarget(t, nil)
	fr := newFakeRelay(t)
	r := fastRoute(tg.URL)
	r.Sign = &Sign{StandardWebhooks: &StandardWebhooksSign{Secret: swSpecSecret}}
	a := newTestAgent(t, fr.url(), r)
	runAgent(t, a)
	c := fr.welcome(t)
	c.send(t, &protocol.Webhook{ID: "bigsigned", Endpoint: "ep", Method: "POST", ReceivedAt: time.Now(),
		BodyLen: int64(len(body)), BodyFrom: bytes.NewReader(body)})
	testutil.CheckFor(t, 20*time.Second, 20*time.Millisecond, func() error {
		if len(tg.requests("bigsigned")) == 0 {
			return fmt.Errorf("not delivered")
		}
		return nil
	})
	got := tg.requests("bigsigned")[0]
	if !bytes.Equal(got.Body, body) {
		t.Fatalf("body: %d bytes, want %d", len(got.Body), len(body))
	}
	sig, _ := standardSignature(key, "bigsigned", got.Header.Get("Webhook-Timestamp"), bytes.NewReader(body))
	if got.Header.Get("Webhook-Signature") != "v1,"+sig {
		t.Errorf("signature %q, want %q", got.Header.Get("Webhook-Signature"), "v1,"+sig)
	}
}
