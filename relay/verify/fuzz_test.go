package verify

import (
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"
)

// Every fuzz target checks: no panic; a refusal is a *Failure with 401/403 and a reason that
// names no secret and no expected signature; and an acceptance is backed by an independently
// computed signature (no forgery gets through).

func checkFailure(t *testing.T, err error, leaks ...string) {
	t.Helper()
	if err == nil {
		return
	}
	var f *Failure
	if !errors.As(err, &f) {
		t.Fatalf("error %v (%T) is not a *Failure", err, err)
	}
	if f.Status != http.StatusUnauthorized && f.Status != http.StatusForbidden || f.Reason == "" || f.Scheme == "" {
		t.Fatalf("bad failure %+v", *f)
	}
	for _, s := range leaks {
		if s != "" && strings.Contains(f.Reason, s) {
			t.Fatalf("reason %q leaks %q", f.Reason, s)
		}
	}
}

func FuzzGitHub(f *testing.F) {
	const secret = "It's a Secret to Everybody"
	f.Add("sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17", []byte("Hello, World!"))
	f.Add("sha256=", []byte(""))
	f.Add("sha256=zz", []byte("x"))
	v, err := New(&Config{GitHub: &Secrets{Secret: secret}})
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, sig string, body []byte) {
		r := request("", map[string]string{headerGitHub: sig})
		err := v.Check(r, body, now0)
		want := githubSig(secret, string(body))
		checkFailure(t, err, secret, want[7:])
		if err == nil && !strings.EqualFold(strings.TrimSpace(r.Header.Get(headerGitHub)), want) {
			t.Fatalf("accepted %q for body %q, want %q", sig, body, want)
		}
	})
}

func FuzzStripeHeader(f *testing.F) {
	const secret = "whsec_fuzz"
	body := `{"id":"evt_1"}`
	ts := now0.Unix()
	f.Add("t="+itoa(ts)+","+stripeSig(secret, ts, body), []byte(body))
	f.Add("t="+itoa(ts)+",v1="+hexOf(32, 'a')+","+stripeSig(secret, ts, body)+",v0=00", []byte(body))
	f.Add("t=1,v1=", []byte(""))
	f.Add(",,=,t==,v1=,", []byte("x"))
	v, err := New(&Config{Stripe: &Timed{Secrets: Secrets{Secret: secret}}})
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, header string, body []byte) {
		r := request("", map[string]string{headerStripe: header})
		err := v.Check(r, body, now0)
		checkFailure(t, err, secret, stripeSig(secret, ts, string(body))[3:])
		canonical := "t=" + itoa(ts) + "," + stripeSig(secret, ts, string(body))
		if header == canonical && err != nil {
			t.Fatalf("refused a correctly signed header: %v", err)
		}
		if err == nil {
			// Some t= in the header must have a matching v1 for this body.
			signed := false
			for item := range strings.SplitSeq(header, ",") {
				if tv, ok := strings.CutPrefix(strings.TrimSpace(item), "t="); ok {
					want := hex.EncodeToString(hmacSHA256([]byte(secret), tv+"."+string(body)))
					signed = signed || strings.Contains(strings.ToLower(header), want)
				}
			}
			if !signed {
				t.Fatalf("accepted unsigned header %q for body %q", header, body)
			}
		}
	})
}

func FuzzStandardWebhooks(f *testing.F) {
	const secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
	key, _ := base64.StdEncoding.DecodeString(secret[len("whsec_"):])
	sign := func(id, ts string, body []byte) string {
		return base64.StdEncoding.EncodeToString(hmacSHA256(key, id+"."+ts+"."+string(body)))
	}
	f.Add("msg_p5jXN8AQM9LWM0D4loKWxJek", "1614265330", "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=", []byte(`{"test": 2432232314}`))
	ts := itoa(now0.Unix())
	f.Add("msg_1", ts, "v1a,abc v1,"+sign("msg_1", ts, []byte("{}")), []byte("{}"))
	f.Add("", "", "", []byte(nil))
	f.Add("m", "999999999999999999", "v1,", []byte("x"))
	v, err := New(&Config{StandardWebhooks: &Timed{Secrets: Secrets{Secret: secret}}})
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, id, ts, sig string, body []byte) {
		r := request("", nil)
		r.Header[http.CanonicalHeaderKey(headerWebhookID)] = []string{id}
		r.Header[http.CanonicalHeaderKey(headerWebhookTimestamp)] = []string{ts}
		r.Header[http.CanonicalHeaderKey(headerWebhookSignature)] = []string{sig}
		tsNum, _ := parseUnix(ts)
		now := time.Unix(tsNum, 0) // inside the tolerance whenever ts is valid
		err := v.Check(r, body, now)
		want := sign(id, ts, body)
		checkFailure(t, err, secret, secret[len("whsec_"):], want)
		if err == nil && !strings.Contains(sig, "v1,"+want) {
			t.Fatalf("accepted signature %q for id %q ts %q body %q", sig, id, ts, body)
		}
		if id != "" && ts != "" && sig == "v1,"+want && err != nil && len(ts) <= 18 && strings.Trim(ts, "0123456789") == "" {
			t.Fatalf("refused a correctly signed message: %v", err)
		}
	})
}

func FuzzHMAC(f *testing.F) {
	const secret = "generic-secret"
	f.Add("sha256="+githubSig(secret, "a=1")[7:], []byte("a=1"), false)
	f.Add("sha256="+base64.StdEncoding.EncodeToString(hmacSHA256([]byte(secret), "a=1")), []byte("a=1"), true)
	f.Add("sha256=", []byte(""), true)
	f.Add("sha256====", []byte(""), true)
	hexV, err := New(&Config{HMAC: &HMACConfig{Secrets: Secrets{Secret: secret}, Header: "X-Sig", Prefix: "sha256="}})
	if err != nil {
		f.Fatal(err)
	}
	b64V, err := New(&Config{HMAC: &HMACConfig{Secrets: Secrets{Secret: secret}, Header: "X-Sig", Prefix: "sha256=", Encoding: "base64"}})
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, value string, body []byte, useBase64 bool) {
		r := request("", map[string]string{"X-Sig": value})
		mac := hmacSHA256([]byte(secret), string(body))
		v := hexV
		if useBase64 {
			v = b64V
		}
		err := v.Check(r, body, now0)
		checkFailure(t, err, secret, hex.EncodeToString(mac), base64.StdEncoding.EncodeToString(mac))
		if err != nil {
			return
		}
		got, ok := strings.CutPrefix(strings.TrimSpace(r.Header.Get("X-Sig")), "sha256=")
		var dec []byte
		if useBase64 {
			dec, _ = base64.RawStdEncoding.DecodeString(strings.TrimRight(got, "="))
			if dec == nil {
				dec, _ = base64.RawURLEncoding.DecodeString(strings.TrimRight(got, "="))
			}
		} else {
			dec, _ = hex.DecodeString(got)
		}
		if !ok || string(dec) != string(mac) {
			t.Fatalf("accepted %q for body %q", value, body)
		}
	})
}

func FuzzBasic(f *testing.F) {
	sum := sha256.Sum256([]byte("pw"))
	bc, err := bcrypt.GenerateFromPassword([]byte("pw"), bcrypt.MinCost)
	if err != nil {
		f.Fatal(err)
	}
	shaV, err := New(&Config{Basic: &BasicConfig{User: "u", PasswordHash: "sha256:" + hex.EncodeToString(sum[:])}})
	if err != nil {
		f.Fatal(err)
	}
	bcV, err := New(&Config{Basic: &BasicConfig{User: "u", PasswordHash: string(bc)}})
	if err != nil {
		f.Fatal(err)
	}
	f.Add("Basic "+base64.StdEncoding.EncodeToString([]byte("u:pw")), false)
	f.Add("Basic "+base64.StdEncoding.EncodeToString([]byte("u:pw")), true)
	f.Add("Basic ", false)
	f.Add("Basic dTo=", true)
	f.Fuzz(func(t *testing.T, auth string, useBcrypt bool) {
		v := shaV
		if useBcrypt {
			v = bcV
		}
		r := request("", map[string]string{"Authorization": auth})
		err := v.Check(r, nil, now0)
		checkFailure(t, err, "pw")
		if user, pass, _ := r.BasicAuth(); err == nil && (user != "u" || pass != "pw") {
			t.Fatalf("accepted %q", auth)
		}
	})
}

func FuzzXFF(f *testing.F) {
	v, err := New(&Config{IPAllow: &IPAllow{CIDRs: []string{"192.0.2.0/24", "2001:db8::/32"}, TrustedProxies: []string{"10.0.0.0/8", "fd00::/8"}}})
	if err != nil {
		f.Fatal(err)
	}
	f.Add("10.0.0.1:443", "192.0.2.1, 10.0.0.2")
	f.Add("203.0.113.1:443", "192.0.2.1")
	f.Add("[::ffff:10.0.0.1]:1", "[2001:db8::1]:80,unknown")
	f.Add("[fd00::1%lo]:1", " , ,")
	f.Fuzz(func(t *testing.T, remote, xff string) {
		r := request("", nil)
		r.RemoteAddr = remote
		direct := v.Check(r, nil, now0)
		r.Header.Set("X-Forwarded-For", xff)
		err := v.Check(r, nil, now0)
		checkFailure(t, err)
		checkFailure(t, direct)
		if err != nil && err.(*Failure).Status != http.StatusForbidden {
			t.Fatalf("status %d, want 403", err.(*Failure).Status)
		}
		if a, ok := parseHostAddr(remote); ok && !(a.Is4() && a.As4()[0] == 10 || a.Is6() && a.As16()[0] == 0xfd) {
			// An untrusted socket's X-Forwarded-For must change nothing.
			if (err == nil) != (direct == nil) {
				t.Fatalf("untrusted socket %q: XFF %q changed the outcome: %v vs %v", remote, xff, err, direct)
			}
		}
	})
}

func FuzzNew(f *testing.F) {
	f.Add("sha256", "hex", "X-Sig", "sha256=", "192.0.2.0/24", "sha256:"+hexOf(32, 'a'), "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")
	f.Add("md5", "base32", "X Y", "", "::ffff:0.0.0.0/80", "$2y$", "whsec_")
	f.Fuzz(func(t *testing.T, alg, enc, header, prefix, cidr, hash, secret string) {
		v, err := New(&Config{
			StandardWebhooks: &Timed{Secrets: Secrets{Secret: secret}},
			HMAC:             &HMACConfig{Secrets: Secrets{Secret: secret}, Header: header, Algorithm: alg, Encoding: enc, Prefix: prefix},
			Basic:            &BasicConfig{User: "u", PasswordHash: hash},
			IPAllow:          &IPAllow{CIDRs: []string{cidr}, TrustedProxies: []string{cidr}},
		})
		if (v == nil) == (err == nil) {
			t.Fatalf("New = %v, %v", v, err)
		}
		if err != nil {
			if !strings.HasPrefix(err.Error(), "verify.") {
				t.Fatalf("error does not name a key: %v", err)
			}
			return
		}
		if strings.HasPrefix(hash, "$2") {
			return // a bcrypt check costs up to a quarter of a second: not worth fuzzing here
		}
		r := request("", map[string]string{header: prefix, "Authorization": "Basic dTpw"})
		checkFailure(t, v.Check(r, nil, now0))
	})
}

// FuzzClientAddr: whatever the socket address and the forwarding headers hold, ClientAddr
// never panics, gives a valid unmapped address without a zone or a reason, and from an
// untrusted socket gives that socket's address whatever the headers say.
func FuzzClientAddr(f *testing.F) {
	trusted, err := ParsePrefixes("trusted_proxies", []string{"10.0.0.0/8", "fd00::/8"})
	if err != nil {
		f.Fatal(err)
	}
	f.Add("10.0.0.1:443", "192.0.2.1, 10.0.0.2", "")
	f.Add("10.0.0.1:443", "", `for=192.0.2.60;proto=http;by=203.0.113.43, for="[2001:db8:cafe::17]:4711"`)
	f.Add("10.0.0.1:443", "", "for=unknown, for=_hidden")
	f.Add("203.0.113.1:443", "192.0.2.1", "for=192.0.2.2")
	f.Add("[::ffff:10.0.0.1]:1", "[2001:db8::1]:80,unknown", "")
	f.Add("[fd00::1%lo]:1", " , ,", `for="[fd00::2]";by=x,,for=10.1.1.1`)
	f.Fuzz(func(t *testing.T, remote, xff, fwd string) {
		r := request("", nil)
		r.RemoteAddr = remote
		if xff != "" {
			r.Header.Set("X-Forwarded-For", xff)
		}
		if fwd != "" {
			r.Header.Set("Forwarded", fwd)
		}
		a, reason := ClientAddr(r, trusted)
		if reason != "" {
			if a.IsValid() {
				t.Fatalf("reason %q with address %v", reason, a)
			}
			return
		}
		if !a.IsValid() || a.Zone() != "" || a.Is4In6() {
			t.Fatalf("ClientAddr(%q, %q, %q) = %v", remote, xff, fwd, a)
		}
		if peer, ok := parseHostAddr(remote); ok && !contains(trusted, peer) && a != peer {
			t.Fatalf("untrusted socket %q: headers %q / %q made the client %v", remote, xff, fwd, a)
		}
	})
}
