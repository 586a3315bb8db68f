package relay

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/hookrelay/hookrelay/internal/testutil"
)

// tokenA and tokenB are agent tokens; hashOf gives their config form.
const (
	tokenA = "hr_test_token_a"
	tokenB = "hr_test_token_b"
)

func hashOf(token string) string {
	sum := sha256.Sum256([]byte(token))
	return "sha256:" + hex.EncodeToString(sum[:])
}

// startServer runs a real Server on 127.0.0.1:0 with a store in t.TempDir(). Endpoint "ep"
// (token A) exists unless mutate replaces the endpoints. Cleanup stops it and checks that Run
// returned nil.
func startServer(t *testing.T, mutate func(*Config)) *Server {
	t.Helper()
	return startServerLog(t, mutate, testLogger(t))
}

// startServerLog is startServer logging to log.
func startServerLog(t *testing.T, mutate func(*Config), log *slog.Logger) *Server {
	t.Helper()
	cfg := &Config{
		Addr:    "127.0.0.1:0",
		DataDir: t.TempDir(),
		Endpoints: []Endpoint{
			{Name: "ep", Tokens: []string{hashOf(tokenA)}},
		},
	}
	if mutate != nil {
		mutate(cfg)
	}
	s, stop := runServer(t, cfg, log)
	t.Cleanup(func() {
		if err := stop(); err != nil {
			t.Errorf("run returned %v on a clean shutdown", err)
		}
		s.Close()
	})
	return s
}

// runServer runs a Server made from cfg until it is ready; stop ends Run and returns its
// error. The caller closes s.
func runServer(t *testing.T, cfg *Config, log *slog.Logger) (s *Server, stop func() error) {
	t.Helper()
	s, err := New(cfg, log)
	if err != nil {
		t.Fatal(err)
	}
	return s, testutil.Start(t, s.Run, s.Ready())
}

// testLogger logs through t.Output: shown for failed tests and with -v.
func testLogger(t *testing.T) *slog.Logger {
	return slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelDebug}))
}

func (s *Server) url(path string) string { return "http://" + s.Addr() + path }

// post sends body to path on s and returns the status, headers and JSON answer.
func post(t *testing.T, s *Server, method, path string, body []byte, hdr http.Header) (int, http.Header, map[string]string) {
	t.Helper()
	req, err := http.NewRequest(method, s.url(path), bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	for k, vs := range hdr {
		req.Header[k] = vs
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	var out map[string]string
	if len(raw) > 0 {
		if err := json.Unmarshal(raw, &out); err != nil {
			t.Fatalf("%s %s: answer %d is not JSON: %q", method, path, resp.StatusCode, raw)
		}
	}
	return resp.StatusCode, resp.Header, out
}

// accept posts a webhook that must be accepted and returns its id.
func accept(t *testing.T, s *Server, path string, body []byte) string {
	t.Helper()
	code, _, out := post(t, s, "POST", path, body, nil)
	if code != http.StatusAccepted || out["id"] == "" {
		t.Fatalf("POST %s: %d %v, want 202 with an id", path, code, out)
	}
	return out["id"]
}

// counterValue reads a counter (or a gauge) of the server's metrics.
func counterValue(t *testing.T, m prometheus.Metric) float64 {
	t.Helper()
	var d dto.Metric
	if err := m.Write(&d); err != nil {
		t.Fatal(err)
	}
	if c := d.GetCounter(); c != nil {
		return c.GetValue()
	}
	return d.GetGauge().GetValue()
}

// postCopies posts n copies of one request at once, spread over servers in turn, and
// returns the id each was answered with (each must be a 202).
func postCopies(t *testing.T, servers []*Server, path, body string, hdr http.Header, n int) []string {
	t.Helper()
	ids := make([]string, n)
	var wg sync.WaitGroup
	for i := range n {
		s := servers[i%len(servers)]
		wg.Go(func() {
			req, _ := http.NewRequest("POST", s.url(path), strings.NewReader(body))
			req.Header = hdr.Clone()
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Error(err)
				return
			}
			defer resp.Body.Close()
			var out map[string]string
			json.NewDecoder(resp.Body).Decode(&out)
			if resp.StatusCode != http.StatusAccepted {
				t.Errorf("copy %d: %d %v", i, resp.StatusCode, out)
			}
			ids[i] = out["id"]
		})
	}
	wg.Wait()
	return ids
}
