package relay

import (
	"bufio"
	"bytes"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/hookrelay/hookrelay/persist"
	"github.com/hookrelay/hookrelay/protocol"
)

// rawRequest writes req byte for byte to the server and returns the response.
func rawRequest(t *testing.T, s *Server, req string) *http.Response {
	t.Helper()
	c, err := net.Dial("tcp", s.Addr())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	if _, err := io.WriteString(c, req); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { resp.Body.Close() })
	return resp
}

func TestIngressStoresExactly(t *testing.T) {
	s := startServer(t, nil)
	body := "{\"a\":1}\n"
	resp := rawRequest(t, s, "PATCH /h/ep/deep/a%2Fb/%41/caf\xc3\xa9?x=1&y=%2F&z=%zz HTTP/1.1\r\n"+
		"Host: example.com\r\n"+
		"X-Multi: one\r\n"+
		"content-type: application/json\r\n"+
		"X-Multi: two\r\n"+
		"X-Sig: abc\r\n"+
		"Connection: X-Hop\r\n"+
		"X-Hop: 1\r\n"+
		"Te: trailers\r\n"+
		"Content-Length: "+strconv.Itoa(len(body))+"\r\n\r\n"+body)
	if resp.StatusCode != http.StatusAccepted {
		t.Fatalf("status %d, want 202", resp.StatusCode)
	}
	var out map[string]string
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil || out["id"] == "" {
		t.Fatalf("answer is not {\"id\"}: %v %v", out, err)
	}
	rec, err := s.Store().Get(t.Context(), out["id"])
	if err != nil {
		t.Fatalf("the 202's id is not stored: %v", err)
	}
	if rec.Queue != "ep" || rec.Method != "PATCH" || rec.Path != "/deep/a%2Fb/%41/caf\xc3\xa9" ||
		rec.Query != "x=1&y=%2F&z=%zz" || string(rec.Body) != body {
		t.Errorf("stored %q %q %q %q body %q", rec.Queue, rec.Method, rec.Path, rec.Query, rec.Body)
	}
	want := []persist.Header{
		{Name: "Content-Length", Value: strconv.Itoa(len(body))},
		{Name: "Content-Type", Value: "application/json"},
		{Name: "X-Multi", Value: "one"},
		{Name: "X-Multi", Value: "two"},
		{Name: "X-Sig", Value: "abc"},
	}
	if !slices.Equal(rec.Headers, want) {
		t.Errorf("stored headers %v,\nwant %v (sorted, canonical, in order, no hop-by-hop, no Host)", rec.Headers, want)
	}
}

func TestIngressBodiesByteExact(t *testing.T) {
	s := startServer(t, nil)
	binary := make([]byte, 70000)
	for i := range binary {
		binary[i] = byte(i * 7)
	}
	for name, body := range map[string][]byte{"binary": binary, "empty": {}, "zeros": make([]byte, 3)} {
		id := accept(t, s, "/h/ep", body)
		rec, err := s.Store().Get(t.Context(), id)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(rec.Body, body) || rec.Path != "" || rec.Query != "" {
			t.Errorf("%s: stored %d bytes path %q query %q, want %d bytes", name, len(rec.Body), rec.Path, rec.Query, len(body))
		}
	}
}

func TestIngressErrors(t *testing.T) {
	s := startServer(t, func(c *Config) { c.Endpoints[0].MaxBody = 100 })
	for _, tc := range []struct {
		path string
		want int
	}{
		{"/h/nope", 404},
		{"/h/nope/x", 404},
		{"/h/", 404},
		{"/h/ep/..", 400},
		{"/h/ep/a/../../etc", 400},
		{"/h/ep/%2e%2e/etc", 400},
		{"/h/ep/%2E./etc", 400},
		{"/h/ep/.%2E", 400},
		{"/h/ep/a%2F..%2Fb", 400},
		{"/h/ep/a%5C..%5Cb", 400},
		{"/h/ep/a..b/...", 202},
	} {
		resp := rawRequest(t, s, "POST "+tc.path+" HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\n\r\nx")
		if resp.StatusCode != tc.want {
			t.Errorf("POST %s: %d, want %d", tc.path, resp.StatusCode, tc.want)
			continue
		}
		var out map[string]string
		if err := json.NewDecoder(resp.Body).Decode(&out); err != nil || (tc.want >= 400 && out["error"] == "") {
			t.Errorf("POST %s: answer %v is not JSON with an error (%v)", tc.path, out, err)
		}
	}

	if code, _, _ := post(t, s, "POST", "/h/ep", make([]byte, 100), nil); code != 202 {
		t.Errorf("body of exactly max_body: %d, want 202", code)
	}
	if code, _, out := post(t, s, "POST", "/h/ep", make([]byte, 101), nil); code != 413 || out["error"] == "" {
		t.Errorf("body over max_body with Content-Length: %d %v, want 413", code, out)
	}
	// Chunked: no Content-Length, so the limit is found while reading.
	resp := rawRequest(t, s, "POST /h/ep HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"+
		"65\r\n"+string(make([]byte, 101))+"\r\n0\r\n\r\n")
	if resp.StatusCode != 413 {
		t.Errorf("chunked body over max_body: %d, want 413", resp.StatusCode)
	}
	resp = rawRequest(t, s, "POST /h/ep HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"+
		"5\r\nhello\r\n0\r\n\r\n")
	if resp.StatusCode != 202 {
		t.Errorf("chunked body under max_body: %d, want 202", resp.StatusCode)
	}
}

func TestIngressQuota(t *testing.T) {
	s := startServer(t, func(c *Config) { c.Endpoints[0].Quota = 2048 })
	accepted := 0
	for range 20 {
		code, hdr, out := post(t, s, "POST", "/h/ep", make([]byte, 400), nil)
		if code == http.StatusAccepted {
			accepted++
			continue
		}
		if code != http.StatusTooManyRequests || hdr.Get("Retry-After") == "" || out["error"] == "" {
			t.Fatalf("over quota: %d Retry-After %q %v, want 429 with Retry-After", code, hdr.Get("Retry-After"), out)
		}
		if accepted == 0 || accepted > 5 {
			t.Fatalf("429 after %d accepted 400-byte bodies under a 2048-byte quota", accepted)
		}
		return
	}
	t.Fatal("never refused over quota")
}

func TestIngressRate(t *testing.T) {
	s := startServer(t, func(c *Config) {
		c.Endpoints = append(c.Endpoints, Endpoint{Name: "slow", Rate: 0.01})
	})
	if code, _, _ := post(t, s, "POST", "/h/slow", []byte("a"), nil); code != 202 {
		t.Fatalf("first request: %d, want 202", code)
	}
	code, hdr, _ := post(t, s, "POST", "/h/slow", []byte("b"), nil)
	ra, _ := strconv.Atoi(hdr.Get("Retry-After"))
	if code != http.StatusTooManyRequests || ra < 1 {
		t.Fatalf("second request within the rate: %d Retry-After %q, want 429 with Retry-After", code, hdr.Get("Retry-After"))
	}
	if code, _, _ := post(t, s, "POST", "/h/ep", []byte("c"), nil); code != 202 {
		t.Errorf("another endpoint was limited too: %d", code)
	}
}

func TestStoppingAnswers503(t *testing.T) {
	s := startServer(t, nil)
	rr := httptest.NewRecorder()
	s.Handler().ServeHTTP(rr, httptest.NewRequest("GET", "/readyz", nil))
	if rr.Code != 200 {
		t.Fatalf("readyz while serving: %d", rr.Code)
	}
	s.state.Store(stateStopping)
	defer s.state.Store(stateServing)
	for _, path := range []string{"/h/ep", "/readyz"} {
		rr := httptest.NewRecorder()
		s.Handler().ServeHTTP(rr, httptest.NewRequest("POST", path, bytes.NewReader([]byte("x"))))
		if path == "/readyz" {
			rr = httptest.NewRecorder()
			s.Handler().ServeHTTP(rr, httptest.NewRequest("GET", path, nil))
		}
		if rr.Code != 503 || rr.Header().Get("Retry-After") == "" {
			t.Errorf("%s while stopping: %d Retry-After %q, want 503 with Retry-After", path, rr.Code, rr.Header().Get("Retry-After"))
		}
	}
	if got, _ := s.Store().Stats(t.Context()); len(got) != 0 {
		t.Errorf("something was stored while stopping: %+v", got)
	}
}

func TestInfoAndHealth(t *testing.T) {
	s := startServer(t, func(c *Config) { c.Version = "1.2.3" })
	resp, err := http.Get(s.url("/healthz"))
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || string(b) != "ok\n" {
		t.Errorf("healthz: %d %q", resp.StatusCode, b)
	}
	s.SetTunnelInfo(":8443", "sha256:ab")
	resp, err = http.Get(s.url("/v1/info"))
	info := decodeInfo(t, resp, err)
	if info["version"] != "1.2.3" || info["quic_addr"] != ":8443" || info["fingerprint"] != "sha256:ab" {
		t.Errorf("info %v", info)
	}
}

func FuzzIngressPath(f *testing.F) {
	for _, p := range []string{"/h/ep", "/h/ep/a/b?x", "/h/ep/%2e%2E/x", "/h/ep/a%2F..%2Fb", "/h/%65p/x", "/h/ep/a\\..\\b"} {
		f.Add(p)
	}
	f.Fuzz(func(t *testing.T, p string) {
		name, suffix, ok := splitIngressPath(p)
		if !ok {
			return
		}
		if name == "" || (suffix != "" && suffix[0] != '/') {
			t.Fatalf("split %q into name %q suffix %q", p, name, suffix)
		}
		if protocol.CheckPath(suffix) != nil {
			return
		}
		dec, err := url.PathUnescape(suffix)
		if err != nil {
			dec = suffix
		}
		for _, seg := range strings.FieldsFunc(dec, func(r rune) bool { return r == '/' || r == '\\' }) {
			if seg == ".." {
				t.Fatalf("%q passed with a .. segment", p)
			}
		}
		if strings.HasPrefix(dec, "//") {
			t.Fatalf("%q passed with a suffix read as a host", p)
		}
	})
}

// TestIngressRefusesEscapingSuffix: a suffix that would take the target's request off its
// path (to another host, or up out of it) is answered 400 with the reason, and not stored.
func TestIngressRefusesEscapingSuffix(t *testing.T) {
	s := startServer(t, nil)
	for _, suffix := range []string{
		"//evil.example/x{", "//evil.example/x", "//evil.example", "///evil.example/x",
		"/%2fevil.example/x", "/%2Fevil.example/x", "/%5cevil.example/x", "/%252fevil.example/x",
		"/..;/admin", "/a/..;jsessionid=1/b", "/%2e%2e;/admin", "/.%2e%3b/admin",
		"/%252e%252e/x", "/%25252e%25252e/x", "/a%2f..%2fb", "/%2e%2e%00/x",
	} {
		resp := rawRequest(t, s, "POST /h/ep"+suffix+" HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\n\r\nx")
		var out map[string]string
		err := json.NewDecoder(resp.Body).Decode(&out)
		if resp.StatusCode != 400 || err != nil || !strings.Contains(out["error"], "path") {
			t.Errorf("POST /h/ep%s: %d %v (%v), want 400 with the reason", suffix, resp.StatusCode, out, err)
		}
	}
	if got, _ := s.Store().Stats(t.Context()); len(got) != 0 {
		t.Errorf("stored: %+v", got)
	}
}
