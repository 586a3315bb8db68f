package verify

import (
	"encoding/base64"
	"net/http"
	"testing"
	"time"
)

func TestStandardWebhooksSpecExample(t *testing.T) {
	// The example of the Standard Webhooks specification (and the Svix docs).
	v := mustNew(t, &Config{StandardWebhooks: &Timed{Secrets: Secrets{Secret: "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"}}})
	body := `{"test": 2432232314}`
	r := request(body, map[string]string{
		"webhook-id":        "msg_p5jXN8AQM9LWM0D4loKWxJek",
		"webhook-timestamp": "1614265330",
		"webhook-signature": "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=",
	})
	expect(t, v.Check(r, []byte(body), time.Unix(1614265330, 0).Add(time.Minute)), 0, "", "")
	expect(t, v.Check(r, []byte(body), time.Unix(1614265330, 0).Add(time.Hour)), http.StatusUnauthorized, SchemeStandardWebhooks, "timestamp outside tolerance")
}

func TestStandardWebhooks(t *testing.T) {
	secret := "whsec_" + base64.StdEncoding.EncodeToString([]byte("a 32 byte key for standard hooks"))
	other := "whsec_" + base64.StdEncoding.EncodeToString([]byte("another key, also thirty-two by"))
	body := `{"type":"invoice.paid","data":{"id":"in_1"}}`
	id, ts := "msg_2KWPBgLlAfxdpx2AI54pPJ85f4W", now0.Unix()
	good := standardSig(t, secret, id, ts, body)
	cases := []struct {
		name      string
		secrets   Secrets
		tolerance time.Duration
		body      string
		hdr       map[string]string
		now       time.Time
		reason    string
	}{
		{"signed", Secrets{Secret: secret}, 0, body, hdrs(id, itoa(ts), good), now0, ""},
		{"several entries, one valid", Secrets{Secret: secret}, 0, body,
			hdrs(id, itoa(ts), "v1a,Zm9vYmFy v1,"+base64.StdEncoding.EncodeToString(make([]byte, 32))+"  "+good), now0, ""},
		{"rotation: second secret", Secrets{Secret: other, Secrets: []string{secret}}, 0, body, hdrs(id, itoa(ts), good), now0, ""},
		{"secret without whsec_", Secrets{Secret: secret[len("whsec_"):]}, 0, body, hdrs(id, itoa(ts), good), now0, ""},
		{"wrong secret", Secrets{Secret: other}, 0, body, hdrs(id, itoa(ts), good), now0, "signature mismatch"},
		{"tampered body", Secrets{Secret: secret}, 0, body[1:], hdrs(id, itoa(ts), good), now0, "signature mismatch"},
		{"other message id", Secrets{Secret: secret}, 0, body, hdrs("msg_other", itoa(ts), good), now0, "signature mismatch"},
		{"timestamp changed", Secrets{Secret: secret}, 0, body, hdrs(id, itoa(ts+1), good), now0, "signature mismatch"},
		{"missing id", Secrets{Secret: secret}, 0, body, hdrs("", itoa(ts), good), now0, "missing webhook-id"},
		{"missing timestamp", Secrets{Secret: secret}, 0, body, hdrs(id, "", good), now0, "missing webhook-timestamp"},
		{"missing signature", Secrets{Secret: secret}, 0, body, hdrs(id, itoa(ts), ""), now0, "missing webhook-signature"},
		{"timestamp in ms", Secrets{Secret: secret}, 0, body, hdrs(id, itoa(ts*1000), standardSig(t, secret, id, ts*1000, body)), now0, "timestamp outside tolerance"},
		{"timestamp not a number", Secrets{Secret: secret}, 0, body, hdrs(id, "1e9", good), now0, "malformed webhook-timestamp"},
		{"signature without version", Secrets{Secret: secret}, 0, body, hdrs(id, itoa(ts), good[3:]), now0, "no valid v1"},
		{"signature not base64", Secrets{Secret: secret}, 0, body, hdrs(id, itoa(ts), "v1,!!!"), now0, "no valid v1"},
		{"only v1a", Secrets{Secret: secret}, 0, body, hdrs(id, itoa(ts), "v1a"+good[2:]), now0, "no valid v1"},
		{"at the tolerance", Secrets{Secret: secret}, 0, body, hdrs(id, itoa(ts), good), now0.Add(-300 * time.Second), ""},
		{"expired", Secrets{Secret: secret}, 0, body, hdrs(id, itoa(ts), good), now0.Add(301 * time.Second), "timestamp outside tolerance"},
		{"from the future", Secrets{Secret: secret}, 0, body, hdrs(id, itoa(ts), good), now0.Add(-301 * time.Second), "timestamp outside tolerance"},
		{"custom tolerance", Secrets{Secret: secret}, time.Minute, body, hdrs(id, itoa(ts), good), now0.Add(61 * time.Second), "timestamp outside tolerance"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			v := mustNew(t, &Config{StandardWebhooks: &Timed{Secrets: c.secrets, Tolerance: c.tolerance}})
			expect(t, v.Check(request(c.body, c.hdr), []byte(c.body), c.now), http.StatusUnauthorized, SchemeStandardWebhooks, c.reason)
		})
	}
}

// hdrs gives the Standard Webhooks headers, leaving out empty ones.
func hdrs(id, ts, sig string) map[string]string {
	h := map[string]string{}
	for k, v := range map[string]string{"webhook-id": id, "webhook-timestamp": ts, "webhook-signature": sig} {
		if v != "" {
			h[k] = v
		}
	}
	return h
}
