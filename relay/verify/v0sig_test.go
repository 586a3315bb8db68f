package verify

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"net/http"
	"testing"
	"time"
)

// Slack's own example from "Verifying requests from Slack" (api.slack.com): its signing
// secret, timestamp, slash-command body and the signature it documents for them. A
// round trip through our own signer could agree with a wrong base string; this cannot.
const (
	slackDocSecret    = "8f742231b10e8888abcd99yyyzzz85a5"
	slackDocTimestamp = "1531420618"
	slackDocBody      = "token=xyzz0WbapA4vBCDEFasx0q6G&team_id=T1DC2JH3J&team_domain=testteamnow&channel_id=G8PSS9T3V&channel_name=foobar&user_id=U2CERLKJA&user_name=roadrunner&command=%2Fwebhook-collect&text=&response_url=https%3A%2F%2Fhooks.slack.com%2Fcommands%2FT1DC2JH3J%2F397700885554%2F96rGlfmibIGlgcZRskXaIFfN&trigger_id=398738663015.47445629121.803a0bc887a14d10d2c447fce8b6703c"
	slackDocSignature = "v0=a2114d57b48eac39b9ad189dd8316235a7b4a8d21a10bd27519666489c69b503"
)

func v0Sig(secret, ts, body string) string {
	m := hmac.New(sha256.New, []byte(secret))
	m.Write([]byte("v0:" + ts + ":" + body))
	return "v0=" + hex.EncodeToString(m.Sum(nil))
}

func TestSlackDocumentedExample(t *testing.T) {
	if got := v0Sig(slackDocSecret, slackDocTimestamp, slackDocBody); got != slackDocSignature {
		t.Fatalf("test signer gives %s for Slack's example, want %s", got, slackDocSignature)
	}
	docNow := time.Unix(1531420618, 0).Add(time.Minute)
	v := mustNew(t, &Config{Slack: &Timed{Secrets: Secrets{Secret: slackDocSecret}}})
	r := request(slackDocBody, map[string]string{"X-Slack-Request-Timestamp": slackDocTimestamp, "X-Slack-Signature": slackDocSignature})
	expect(t, v.Check(r, []byte(slackDocBody), docNow), 0, "", "")
	other := mustNew(t, &Config{Slack: &Timed{Secrets: Secrets{Secret: "8f742231b10e8888abcd99yyyzzz85a6"}}})
	expect(t, other.Check(r, []byte(slackDocBody), docNow), http.StatusUnauthorized, SchemeSlack, "signature mismatch")
}

// TestV0 drives both providers of the v0 format through the same cases, each with its own
// header names.
func TestV0(t *testing.T) {
	const secret = "zoom-or-slack-secret"
	body := `{"event":"meeting.started","payload":{"object":{"id":"1"}}}`
	ts := itoa(now0.Unix())
	ok := v0Sig(secret, ts, body)
	for _, f := range []v0Format{slackV0, zoomV0} {
		cases := []struct {
			name      string
			secrets   Secrets
			tolerance time.Duration
			body      string
			sig, ts   string
			now       time.Time
			reason    string
		}{
			{"signed", Secrets{Secret: secret}, 0, body, ok, ts, now0, ""},
			{"rotation: second secret", Secrets{Secret: "old", Secrets: []string{secret}}, 0, body, ok, ts, now0, ""},
			{"wrong secret", Secrets{Secret: secret}, 0, body, v0Sig("other", ts, body), ts, now0, "signature mismatch"},
			{"tampered body", Secrets{Secret: secret}, 0, body + " ", ok, ts, now0, "signature mismatch"},
			{"timestamp changed", Secrets{Secret: secret}, 0, body, ok, itoa(now0.Unix() + 1), now0, "signature mismatch"},
			{"missing signature", Secrets{Secret: secret}, 0, body, "", ts, now0, "missing " + f.signature},
			{"missing timestamp", Secrets{Secret: secret}, 0, body, ok, "", now0, "missing " + f.timestamp},
			{"timestamp not a number", Secrets{Secret: secret}, 0, body, v0Sig(secret, "+1", body), "+1", now0, "malformed " + f.timestamp},
			{"no v0= prefix", Secrets{Secret: secret}, 0, body, ok[3:], ts, now0, "malformed " + f.signature},
			{"v1 prefix", Secrets{Secret: secret}, 0, body, "v1=" + ok[3:], ts, now0, "malformed " + f.signature},
			{"short signature", Secrets{Secret: secret}, 0, body, ok[:20], ts, now0, "malformed " + f.signature},
			{"at the tolerance", Secrets{Secret: secret}, 0, body, ok, ts, now0.Add(300 * time.Second), ""},
			{"expired", Secrets{Secret: secret}, 0, body, ok, ts, now0.Add(301 * time.Second), "timestamp outside tolerance"},
			{"from the future", Secrets{Secret: secret}, 0, body, ok, ts, now0.Add(-301 * time.Second), "timestamp outside tolerance"},
			{"custom tolerance", Secrets{Secret: secret}, 10 * time.Second, body, ok, ts, now0.Add(11 * time.Second), "timestamp outside tolerance"},
		}
		for _, c := range cases {
			t.Run(f.scheme+"/"+c.name, func(t *testing.T) {
				tm := &Timed{Secrets: c.secrets, Tolerance: c.tolerance}
				cfg := &Config{Slack: tm}
				if f.scheme == SchemeZoom {
					cfg = &Config{Zoom: tm}
				}
				v := mustNew(t, cfg)
				h := map[string]string{}
				if c.sig != "" {
					h[f.signature] = c.sig
				}
				if c.ts != "" {
					h[f.timestamp] = c.ts
				}
				expect(t, v.Check(request(c.body, h), []byte(c.body), c.now), http.StatusUnauthorized, f.scheme, c.reason)
			})
		}
	}
}

// Zoom's header names are lowercase in its docs; HTTP header names are case-insensitive.
func TestZoomLowercaseHeaders(t *testing.T) {
	const secret = "zoom-secret"
	body := `{"event":"endpoint.url_validation","payload":{"plainToken":"qgg8vlvZRS6UYooatFL8Aw"},"event_ts":1654503849680}`
	ts := itoa(now0.Unix())
	r := request(body, nil)
	r.Header.Set("x-zm-signature", v0Sig(secret, ts, body))
	r.Header.Set("x-zm-request-timestamp", ts)
	v := mustNew(t, &Config{Zoom: &Timed{Secrets: Secrets{Secret: secret}}})
	expect(t, v.Check(r, []byte(body), now0), 0, "", "")
}
