package verify

import (
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
)

func TestIPAllow(t *testing.T) {
	allow := []string{"192.0.2.0/24", "2001:db8::/32"}
	proxies := []string{"10.0.0.0/8", "fd00::/8"}
	cases := []struct {
		name    string
		cidrs   []string
		trusted []string
		remote  string
		xff     []string
		reason  string
	}{
		{"direct, allowed", allow, nil, "192.0.2.10:5000", nil, ""},
		{"direct, refused", allow, nil, "203.0.113.9:5000", nil, "address 203.0.113.9 not allowed"},
		{"direct IPv6", allow, nil, "[2001:db8::7]:443", nil, ""},
		{"direct IPv6 with zone", []string{"fe80::/10"}, nil, "[fe80::1%eth0]:443", nil, ""},
		{"IPv4-mapped socket address", allow, nil, "[::ffff:192.0.2.10]:5000", nil, ""},
		{"IPv4-mapped CIDR", []string{"::ffff:192.0.2.0/120"}, nil, "192.0.2.10:5000", nil, ""},
		{"single address", []string{"192.0.2.10"}, nil, "192.0.2.10:1", nil, ""},
		{"single address, other", []string{"192.0.2.10"}, nil, "192.0.2.11:1", nil, "not allowed"},
		{"no port", allow, nil, "192.0.2.10", nil, ""},
		{"unparsable socket address", allow, nil, "pipe", nil, "client address unknown"},
		{"spoofed XFF from untrusted socket is ignored", allow, nil, "203.0.113.9:5000", []string{"192.0.2.10"}, "address 203.0.113.9 not allowed"},
		{"spoofed XFF without trusted proxies, allowed socket", allow, nil, "192.0.2.10:5000", []string{"203.0.113.9, junk"}, ""},
		{"untrusted socket with trusted proxies configured", allow, proxies, "203.0.113.9:5000", []string{"192.0.2.10"}, "address 203.0.113.9 not allowed"},
		{"through a trusted proxy", allow, proxies, "10.1.2.3:5000", []string{"192.0.2.10"}, ""},
		{"through a trusted proxy, refused", allow, proxies, "10.1.2.3:5000", []string{"203.0.113.9"}, "address 203.0.113.9 not allowed"},
		{"chain of trusted proxies", allow, proxies, "10.1.2.3:5000", []string{"198.51.100.1, 192.0.2.10, 10.9.9.9", "fd00::1"}, ""},
		{"sender prepends an allowed address", allow, proxies, "10.1.2.3:5000", []string{"192.0.2.10, 203.0.113.9"}, "address 203.0.113.9 not allowed"},
		{"XFF over several header lines", allow, proxies, "10.1.2.3:5000", []string{"192.0.2.10", "203.0.113.9"}, "address 203.0.113.9 not allowed"},
		{"XFF entries with ports", allow, proxies, "10.1.2.3:5000", []string{"192.0.2.10:4444"}, ""},
		{"XFF bracketed IPv6", allow, proxies, "[fd00::2]:5000", []string{"[2001:db8::1]"}, ""},
		{"XFF IPv6 with port", allow, proxies, "[fd00::2]:5000", []string{"[2001:db8::1]:443"}, ""},
		{"XFF IPv4-mapped", allow, proxies, "10.1.2.3:5000", []string{"::ffff:192.0.2.10"}, ""},
		{"trusted proxy without XFF is the client", allow, proxies, "10.1.2.3:5000", nil, "address 10.1.2.3 not allowed"},
		{"all hops trusted: left-most is the client", append([]string{"10.5.0.0/16"}, allow...), proxies, "10.1.2.3:5000", []string{"10.5.0.1, 10.6.0.1"}, ""},
		{"malformed hop before the client", allow, proxies, "10.1.2.3:5000", []string{"192.0.2.10, unknown"}, "malformed X-Forwarded-For"},
		{"malformed hop left of the client is ignored", allow, proxies, "10.1.2.3:5000", []string{"unknown, 192.0.2.10"}, ""},
		{"empty hops skipped", allow, proxies, "10.1.2.3:5000", []string{"192.0.2.10, ,"}, ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			v := mustNew(t, &Config{IPAllow: &IPAllow{CIDRs: c.cidrs, TrustedProxies: c.trusted}})
			r := request("", nil)
			r.RemoteAddr = c.remote
			for _, x := range c.xff {
				r.Header.Add("X-Forwarded-For", x)
			}
			expect(t, v.Check(r, nil, now0), http.StatusForbidden, SchemeIPAllow, c.reason)
		})
	}
}

// TestIPAllowRealSocket checks the address format net/http really puts in RemoteAddr.
func TestIPAllowRealSocket(t *testing.T) {
	cases := []struct {
		name   string
		c      IPAllow
		xff    string
		status int
	}{
		{"loopback allowed", IPAllow{CIDRs: []string{"127.0.0.0/8", "::1/128"}}, "", http.StatusOK},
		{"loopback refused", IPAllow{CIDRs: []string{"192.0.2.0/24"}}, "", http.StatusForbidden},
		{"spoofed XFF ignored", IPAllow{CIDRs: []string{"192.0.2.0/24"}}, "192.0.2.1", http.StatusForbidden},
		{"loopback as trusted proxy", IPAllow{CIDRs: []string{"192.0.2.0/24"}, TrustedProxies: []string{"127.0.0.1/32", "::1/128"}}, "192.0.2.1", http.StatusOK},
	}
	for _, network := range []string{"tcp4", "tcp6"} {
		addr := map[string]string{"tcp4": "127.0.0.1:0", "tcp6": "[::1]:0"}[network]
		ln, err := net.Listen(network, addr)
		if err != nil {
			t.Logf("%s: %v; skipping this family", network, err)
			continue
		}
		var v atomic.Pointer[Verifier]
		srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if err := v.Load().Check(r, nil, now0); err != nil {
				w.WriteHeader(err.(*Failure).Status)
				return
			}
			w.WriteHeader(http.StatusOK)
		}))
		srv.Listener.Close()
		srv.Listener = ln
		srv.Start()
		for _, c := range cases {
			t.Run(network+" "+c.name, func(t *testing.T) {
				v.Store(mustNew(t, &Config{IPAllow: &c.c}))
				req, _ := http.NewRequest(http.MethodPost, srv.URL+"/h/ep", nil)
				if c.xff != "" {
					req.Header.Set("X-Forwarded-For", c.xff)
				}
				resp, err := srv.Client().Do(req)
				if err != nil {
					t.Fatal(err)
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode != c.status {
					t.Errorf("status %d, want %d", resp.StatusCode, c.status)
				}
			})
		}
		srv.Close()
	}
}
