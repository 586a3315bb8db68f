package main

import (
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// world is one relay and one agent on loopback, relaying to a target in this process.
type world struct {
	transport string // "ws", "wss" or "quic"
	dir       string
	bins      bins
	port      int // the relay's addr (HTTP or HTTPS)
	quicPort  int
	token     string
	relay     *proc
	agent     *proc
	target    *target
}

// ingress is the base URL webhooks are posted to.
func (w *world) ingress() string {
	scheme := "http"
	if w.transport == "wss" {
		scheme = "https"
	}
	return fmt.Sprintf("%s://127.0.0.1:%d/h/bench", scheme, w.port)
}

// startRelay writes the relay's config and starts it; the agent comes later (startAgent), so
// that the backlog can be accepted while no agent is connected.
func startRelay(b bins, transport, dir string, tg *target) (*world, error) {
	w := &world{transport: transport, dir: dir, bins: b, target: tg}
	var err error
	if w.port, err = freePort(); err != nil {
		return nil, err
	}
	if w.quicPort, err = freePort(); err != nil {
		return nil, err
	}
	out, err := runOut(b.relay, "token")
	if err != nil {
		return nil, err
	}
	tok, hash, ok := strings.Cut(out, "\n")
	if !ok {
		return nil, fmt.Errorf("hookrelay token printed %q", out)
	}
	w.token = tok
	extra := ""
	switch transport {
	case "quic":
		extra = fmt.Sprintf("quic_addr: 127.0.0.1:%d\n", w.quicPort)
	case "wss":
		cert, key, err := selfSigned(dir)
		if err != nil {
			return nil, err
		}
		extra = fmt.Sprintf("tls: {cert: %q, key: %q}\n", cert, key)
	}
	// max_agents_per_token is raised for the idle-agent shape, whose sessions take endpoint idle
	// (so that no webhook is ever offered to them); everything else is the default.
	cfg := fmt.Sprintf(`addr: 127.0.0.1:%d
%sdata_dir: %s
max_agents_per_token: 100000
endpoints:
  - name: bench
    tokens: [%q]
  - name: idle
    tokens: [%q]
`, w.port, extra, filepath.Join(dir, "relay-data"), hash, hash)
	if err := os.WriteFile(filepath.Join(dir, "relay.yaml"), []byte(cfg), 0o600); err != nil {
		return nil, fmt.Errorf("write relay config: %w", err)
	}
	if w.relay, err = startProc(filepath.Join(dir, "relay.log"), b.relay, "serve", "--config", filepath.Join(dir, "relay.yaml")); err != nil {
		return nil, err
	}
	health := strings.TrimSuffix(w.ingress(), "/h/bench") + "/healthz"
	client := newClient()
	err = waitFor(30*time.Second, 50*time.Millisecond, func() error {
		resp, err := client.Get(health)
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("healthz answered %d", resp.StatusCode)
		}
		return nil
	})
	if err != nil {
		w.close()
		return nil, fmt.Errorf("relay %s not healthy (log %s): %w", transport, w.relay.log, err)
	}
	return w, nil
}

// startAgent starts the agent, relaying endpoint bench to the target with 16 deliveries in
// flight (as many as the direct senders).
func (w *world) startAgent() error {
	url, fp := fmt.Sprintf("%s://127.0.0.1:%d", w.transport, w.port), ""
	if w.transport == "quic" {
		url = fmt.Sprintf("quic://127.0.0.1:%d", w.quicPort)
	}
	if w.transport != "ws" {
		out, err := runOut(w.bins.relay, "fingerprint", "--config", filepath.Join(w.dir, "relay.yaml"))
		if err != nil {
			return err
		}
		fp = fmt.Sprintf("relay_fingerprint: %q\n", out)
	}
	cfg := fmt.Sprintf(`relay: %s
token: %q
agent_id: bench-agent
data_dir: %s
admin_addr: off
%sroutes:
  - endpoint: bench
    target: %s
    concurrency: 16
    backoff_min: 50ms
    backoff_max: 500ms
`, url, w.token, filepath.Join(w.dir, "agent-data"), fp, w.target.url)
	path := filepath.Join(w.dir, "agent.yaml")
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		return fmt.Errorf("write agent config: %w", err)
	}
	var err error
	w.agent, err = startProc(filepath.Join(w.dir, "agent.log"), w.bins.agent, "run", "--config", path)
	return err
}

// warm sends webhooks until one arrives: the agent is then connected and delivering.
func (w *world) warm() error {
	client := newClient()
	w.target.warmed.Store(0)
	return waitFor(60*time.Second, 100*time.Millisecond, func() error {
		if w.target.warmed.Load() > 0 {
			return nil
		}
		if err := w.agent.exited(); err != nil {
			return stopTrying{err}
		}
		if err := post(client, w.ingress()+"/warm", "warm", -1, kib1); err != nil {
			return err
		}
		return fmt.Errorf("no warm-up webhook delivered yet (agent log %s)", w.agent.log)
	})
}

// close stops agent and relay; it is idempotent.
func (w *world) close() {
	w.agent.stop()
	w.relay.stop()
}
