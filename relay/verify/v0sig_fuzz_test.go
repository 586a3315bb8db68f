package verify

import (
	"testing"
	"time"
)

func FuzzV0(f *testing.F) {
	f.Add(slackDocSignature, slackDocTimestamp, []byte(slackDocBody))
	f.Add("v0=", "1", []byte(""))
	f.Add("v0=zz", "+1", []byte("x"))
	slack := mustNewF(f, &Config{Slack: &Timed{Secrets: Secrets{Secret: slackDocSecret}}})
	zoom := mustNewF(f, &Config{Zoom: &Timed{Secrets: Secrets{Secret: slackDocSecret}}})
	f.Fuzz(func(t *testing.T, sig, ts string, body []byte) {
		now := now0
		if n, ok := parseUnix(ts); ok && n < 1<<40 {
			now = time.Unix(n, 0) // inside the tolerance, so that the signature decides
		}
		for _, c := range []struct {
			v *Verifier
			f v0Format
		}{{slack, slackV0}, {zoom, zoomV0}} {
			r := request("", map[string]string{c.f.signature: sig, c.f.timestamp: ts})
			err := c.v.Check(r, body, now)
			want := v0Sig(slackDocSecret, ts, string(body))
			checkFailure(t, err, slackDocSecret, want[3:])
			if err == nil && r.Header.Get(c.f.signature) != want {
				t.Fatalf("%s accepted %q at %q for body %q, want %q", c.f.scheme, sig, ts, body, want)
			}
		}
	})
}

func mustNewF(f *testing.F, c *Config) *Verifier {
	v, err := New(c)
	if err != nil {
		f.Fatal(err)
	}
	return v
}
