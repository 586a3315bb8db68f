package main

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/hookrelay/hookrelay/agent"
	"github.com/hookrelay/hookrelay/internal/buildinfo"
	"github.com/hookrelay/hookrelay/relay"
)

// demoSecret signs the sample webhook the way GitHub does, so the target can show that the
// signature still verifies after the trip through relay and agent.
const demoSecret = "hookrelay-demo-secret"

// runDemo runs a relay, an agent and a sample target on loopback with temporary data, sends
// one signed webhook, shows it arrive, and keeps running until ctx ends (Ctrl-C).
func runDemo(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("demo", flag.ContinueOnError)
	fs.SetOutput(stderr)
	keep := fs.Bool("keep", false, "keep the temporary data directory")
	verbose := fs.Bool("v", false, "show the relay's and agent's logs")
	if err := fs.Parse(args); err != nil {
		return errUsage
	}
	dir, err := os.MkdirTemp("", "hookrelay-demo-")
	if err != nil {
		return fmt.Errorf("demo: %w", err)
	}
	if !*keep {
		defer os.RemoveAll(dir)
	}
	level := slog.LevelError
	if *verbose {
		level = slog.LevelInfo
	}
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: level}))
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()

	tg, err := startDemoTarget(stdout)
	if err != nil {
		return err
	}
	defer tg.srv.Close()

	agentToken, agentHash := newToken()
	adminToken, adminHash := newToken()
	rs, err := relay.New(&relay.Config{
		Addr:       "127.0.0.1:0",
		DataDir:    dir + "/relay",
		AdminToken: adminHash,
		Version:    version,
		Endpoints:  []relay.Endpoint{{Name: "demo", Tokens: []string{agentHash}}},
	}, log)
	if err != nil {
		return fmt.Errorf("demo: relay: %w", err)
	}
	var wg sync.WaitGroup
	defer wg.Wait()
	defer cancel()
	wg.Go(func() {
		if err := rs.Run(ctx); err != nil {
			fmt.Fprintln(stderr, "demo: relay:", err)
		}
	})
	select {
	case <-rs.Ready():
	case <-ctx.Done():
		return nil
	}
	relayURL := "http://" + rs.Addr()

	ag, err := agent.New(&agent.Config{
		Relay:     "ws://" + rs.Addr(),
		Token:     agentToken,
		AgentID:   "demo-agent",
		DataDir:   dir + "/agent",
		AdminAddr: "127.0.0.1:0",
		Routes:    []agent.Route{{Endpoint: "demo", Target: tg.url + "/webhooks", BackoffMin: 200 * time.Millisecond, BackoffMax: 5 * time.Second}},
	}, log)
	if err != nil {
		return fmt.Errorf("demo: agent: %w", err)
	}
	wg.Go(func() {
		if err := ag.Run(ctx); err != nil {
			fmt.Fprintln(stderr, "demo: agent:", err)
		}
	})

	fmt.Fprintf(stdout, "hookrelay demo (%s)\n", buildinfo.Line("hookrelay", version, commit))
	fmt.Fprintf(stdout, "  relay   %s   (ingress %s/h/demo)\n", relayURL, relayURL)
	fmt.Fprintf(stdout, "  agent   %s → target %s/webhooks\n", "demo-agent", tg.url)
	fmt.Fprintf(stdout, "  data    %s\n\n", dir)

	id, err := sendSample(ctx, relayURL)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "sent a GitHub-style signed webhook: relay answered 202 {\"id\": %q}\n\n", id)
	select {
	case <-tg.first:
	case <-time.After(30 * time.Second):
		return errors.New("demo: the sample webhook did not reach the target within 30s")
	case <-ctx.Done():
		return nil
	}
	fmt.Fprintf(stdout, "Send your own (every request to /h/demo/… reaches the target byte-exact):\n\n")
	fmt.Fprintf(stdout, "  curl -i -X POST '%s/h/demo/hello?from=curl' -H 'Content-Type: application/json' -d '{\"hello\": \"world\"}'\n\n", relayURL)
	fmt.Fprintf(stdout, "Look around:\n")
	fmt.Fprintf(stdout, "  agent web UI    http://%s/admin/      (no token: loopback only)\n", ag.AdminAddr())
	fmt.Fprintf(stdout, "  relay web UI    %s/admin/      (admin token %s)\n", relayURL, adminToken)
	fmt.Fprintf(stdout, "  agent metrics   http://%s/metrics\n", ag.AdminAddr())
	fmt.Fprintf(stdout, "\nCtrl-C stops the demo.\n\n")
	<-ctx.Done()
	fmt.Fprintln(stdout, "\nstopping")
	return nil
}

// sendSample posts a webhook signed as GitHub signs them and returns the relay's id.
func sendSample(ctx context.Context, relayURL string) (string, error) {
	body := []byte(`{"action":"opened","number":42,"pull_request":{"title":"Add hookrelay","user":{"login":"octocat"}},"repository":{"full_name":"octo/hello"}}`)
	mac := hmac.New(sha256.New, []byte(demoSecret))
	mac.Write(body)
	req, err := http.NewRequestWithContext(ctx, "POST", relayURL+"/h/demo/github?source=demo", bytes.NewReader(body))
	if err != nil {
		return "", err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "GitHub-Hookshot/demo")
	req.Header.Set("X-GitHub-Event", "pull_request")
	req.Header.Set("X-GitHub-Delivery", "72d3162e-cc78-11e3-81ab-4c9367dc0958")
	req.Header.Set("X-Hub-Signature-256", "sha256="+hex.EncodeToString(mac.Sum(nil)))
	resp, err := (&http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{Proxy: nil}}).Do(req)
	if err != nil {
		return "", fmt.Errorf("demo: send sample: %w", err)
	}
	defer resp.Body.Close()
	var got struct{ ID string }
	if resp.StatusCode != http.StatusAccepted || json.NewDecoder(resp.Body).Decode(&got) != nil {
		return "", fmt.Errorf("demo: send sample: relay answered %s", resp.Status)
	}
	return got.ID, nil
}

// demoTarget prints every request it gets: what a local application would see.
type demoTarget struct {
	srv   *http.Server
	url   string
	first chan struct{}
	once  sync.Once
	out   io.Writer
	mu    sync.Mutex
}

func startDemoTarget(out io.Writer) (*demoTarget, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("demo: target: %w", err)
	}
	t := &demoTarget{url: "http://" + ln.Addr().String(), first: make(chan struct{}), out: out}
	t.srv = &http.Server{Handler: t, ReadHeaderTimeout: 10 * time.Second}
	go t.srv.Serve(ln)
	return t, nil
}

func (t *demoTarget) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(r.Body)
	if err != nil {
		http.Error(w, "read body", http.StatusBadRequest)
		return
	}
	var b strings.Builder
	fmt.Fprintf(&b, "── target received %s %s\n", r.Method, r.RequestURI)
	names := make([]string, 0, len(r.Header))
	for k := range r.Header {
		names = append(names, k)
	}
	slices.Sort(names)
	for _, k := range names {
		for _, v := range r.Header[k] {
			fmt.Fprintf(&b, "   %s: %s\n", k, v)
		}
	}
	fmt.Fprintf(&b, "   body (%d bytes): %s\n", len(body), printable(body))
	if sig := r.Header.Get("X-Hub-Signature-256"); sig != "" {
		mac := hmac.New(sha256.New, []byte(demoSecret))
		mac.Write(body)
		ok := hmac.Equal([]byte(sig), []byte("sha256="+hex.EncodeToString(mac.Sum(nil))))
		fmt.Fprintf(&b, "   X-Hub-Signature-256 verifies at the target: %v (body byte-exact)\n", ok)
	}
	t.mu.Lock()
	fmt.Fprintln(t.out, b.String())
	t.mu.Unlock()
	w.WriteHeader(http.StatusOK)
	t.once.Do(func() { close(t.first) })
}

// printable shows a body as text when it is valid UTF-8 without control bytes, else by size.
func printable(b []byte) string {
	const max = 2000
	s := string(b)
	for _, r := range s {
		if r == 0xFFFD || (r < 0x20 && r != '\n' && r != '\t' && r != '\r') {
			return fmt.Sprintf("<%d bytes of binary>", len(b))
		}
	}
	if len(s) > max {
		s = s[:max] + "…"
	}
	return s
}
