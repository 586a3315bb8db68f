package verify

import (
	"net/http"
	"testing"
	"time"
)

func TestStripe(t *testing.T) {
	const secret = "whsec_test_5f1d4c0b9a8e7d6c5b4a"
	body := `{"id":"evt_1","object":"event","type":"payment_intent.succeeded"}`
	ts := now0.Unix()
	ok := "t=" + itoa(ts) + "," + stripeSig(secret, ts, body)
	cases := []struct {
		name      string
		secrets   Secrets
		tolerance time.Duration
		body      string
		header    string
		now       time.Time
		reason    string
	}{
		{"signed", Secrets{Secret: secret}, 0, body, ok, now0, ""},
		{"with v0 and a second v1", Secrets{Secret: secret}, 0, body,
			"t=" + itoa(ts) + ",v1=" + hexOf(32, 'a') + "," + stripeSig(secret, ts, body) + ",v0=" + hexOf(32, 'b'), now0, ""},
		{"spaces after commas", Secrets{Secret: secret}, 0, body, "t=" + itoa(ts) + ", " + stripeSig(secret, ts, body), now0, ""},
		{"rotation: second secret", Secrets{Secret: "whsec_old", Secrets: []string{secret}}, 0, body, ok, now0, ""},
		{"wrong secret", Secrets{Secret: secret}, 0, body, "t=" + itoa(ts) + "," + stripeSig("whsec_other", ts, body), now0, "signature mismatch"},
		{"tampered body", Secrets{Secret: secret}, 0, body + "x", ok, now0, "signature mismatch"},
		{"timestamp changed", Secrets{Secret: secret}, 0, body, "t=" + itoa(ts+1) + "," + stripeSig(secret, ts, body), now0, "signature mismatch"},
		{"only v0", Secrets{Secret: secret}, 0, body, "t=" + itoa(ts) + ",v0=" + stripeSig(secret, ts, body)[3:], now0, "no valid v1"},
		{"missing header", Secrets{Secret: secret}, 0, body, "", now0, "missing Stripe-Signature"},
		{"garbage", Secrets{Secret: secret}, 0, body, "garbage", now0, "malformed"},
		{"no timestamp", Secrets{Secret: secret}, 0, body, stripeSig(secret, ts, body), now0, "no valid t="},
		{"timestamp not a number", Secrets{Secret: secret}, 0, body, "t=soon," + stripeSig(secret, ts, body), now0, "no valid t="},
		{"negative timestamp", Secrets{Secret: secret}, 0, body, "t=-5," + stripeSig(secret, -5, body), now0, "no valid t="},
		{"v1 not hex", Secrets{Secret: secret}, 0, body, "t=" + itoa(ts) + ",v1=xyz", now0, "no valid v1"},
		{"at the tolerance", Secrets{Secret: secret}, 0, body, ok, now0.Add(300 * time.Second), ""},
		{"expired", Secrets{Secret: secret}, 0, body, ok, now0.Add(301 * time.Second), "timestamp outside tolerance"},
		{"from the future", Secrets{Secret: secret}, 0, body, ok, now0.Add(-301 * time.Second), "timestamp outside tolerance"},
		{"custom tolerance", Secrets{Secret: secret}, 10 * time.Second, body, ok, now0.Add(11 * time.Second), "timestamp outside tolerance"},
		{"custom tolerance inside", Secrets{Secret: secret}, 10 * time.Second, body, ok, now0.Add(10 * time.Second), ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			v := mustNew(t, &Config{Stripe: &Timed{Secrets: c.secrets, Tolerance: c.tolerance}})
			r := request(c.body, nil)
			if c.header != "" {
				r.Header.Set("Stripe-Signature", c.header)
			}
			expect(t, v.Check(r, []byte(c.body), c.now), http.StatusUnauthorized, SchemeStripe, c.reason)
		})
	}
}

func hexOf(n int, c byte) string {
	b := make([]byte, 2*n)
	for i := range b {
		b[i] = c
	}
	return string(b)
}
