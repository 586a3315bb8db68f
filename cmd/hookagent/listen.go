package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/hookrelay/hookrelay/agent"
	"github.com/hookrelay/hookrelay/internal/memlimit"
)

// Developer-mode delivery policy: retry soon and often, so a target the developer restarts
// gets its webhooks a moment after it is back.
const (
	listenBackoffMin  = 200 * time.Millisecond
	listenBackoffMax  = 5 * time.Second
	listenMaxAttempts = 100 // ~5 minutes of retries at listenBackoffMax
	listenGrace       = time.Second
)

const listenUsage = `usage: hookagent listen --relay URL --endpoint NAME [--token TOKEN] [--forward URL] [flags]

Developer mode: receives the endpoint's webhooks through the relay and forwards them to a
local target, printing one line per delivery attempt. No config file: the queue lives in the
user's cache dir. The token may come from HOOKAGENT_TOKEN instead of --token.

`

// listenFlags are the flags of `hookagent listen`.
type listenFlags struct {
	relay, token, endpoint, forward   string
	admin, data, agentID, fingerprint string
	logLevel, logFormat               string
	printBody                         bool
	rate                              float64
	concurrency, maxAttempts          int
}

func parseListenFlags(args []string, stderr io.Writer) (*listenFlags, error) {
	f := &listenFlags{}
	fs := flag.NewFlagSet("hookagent listen", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprint(stderr, listenUsage)
		fs.PrintDefaults()
	}
	fs.StringVar(&f.relay, "relay", "", "relay `URL`: ws://, wss://, quic://host:port, or http(s):// (auto)")
	fs.StringVar(&f.token, "token", "", "agent `token` (default $"+agent.TokenEnv+")")
	fs.StringVar(&f.endpoint, "endpoint", "", "relay endpoint `name` to receive")
	fs.StringVar(&f.forward, "forward", "http://localhost:3000", "target `URL`; the webhook's path suffix and query are appended")
	fs.StringVar(&f.admin, "admin", "127.0.0.1:0", "admin UI, API and /metrics `address` (port 0 picks one; off disables)")
	fs.StringVar(&f.data, "data", "", "data `dir` (default: the user's cache dir, hookagent/listen-NAME)")
	fs.StringVar(&f.agentID, "agent-id", "", "agent `id` shown by the relay (default: hostname plus a suffix kept in the data dir)")
	fs.StringVar(&f.fingerprint, "fingerprint", "", "pin a self-signed relay certificate (`sha256:…`, from hookrelay fingerprint)")
	fs.BoolVar(&f.printBody, "print-body", false, "print each webhook's body under its first line")
	fs.Float64Var(&f.rate, "rate", 0, "most deliveries per `second` to the target (0 = unlimited)")
	fs.IntVar(&f.concurrency, "concurrency", agent.DefaultConcurrency, "deliveries in flight to the target")
	fs.IntVar(&f.maxAttempts, "max-attempts", listenMaxAttempts, "attempts before a webhook becomes a dead letter")
	fs.StringVar(&f.logLevel, "log-level", "warn", "agent log level on stderr: debug, info, warn or error")
	fs.StringVar(&f.logFormat, "log-format", "auto", "agent log format: text, json, or auto (text on a terminal)")
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("listen: unexpected argument %q", fs.Arg(0))
	}
	if f.token == "" {
		f.token = os.Getenv(agent.TokenEnv)
	}
	switch {
	case f.relay == "":
		return nil, errors.New("listen: --relay is required (e.g. --relay wss://relay.example.com)")
	case f.endpoint == "":
		return nil, errors.New("listen: --endpoint is required (the relay endpoint name)")
	case f.token == "":
		return nil, fmt.Errorf("listen: no token: pass --token or set %s", agent.TokenEnv)
	case f.concurrency < 1:
		return nil, fmt.Errorf("listen: --concurrency %d: want 1 or more", f.concurrency)
	case f.maxAttempts < 1:
		return nil, fmt.Errorf("listen: --max-attempts %d: want 1 or more", f.maxAttempts)
	case f.rate < 0:
		return nil, fmt.Errorf("listen: --rate %v: want 0 (unlimited) or more", f.rate)
	}
	if u, err := url.Parse(f.forward); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("listen: --forward %q: want an http(s) URL such as http://localhost:3000", f.forward)
	}
	switch f.logFormat {
	case "auto", "text", "json":
	default:
		return nil, fmt.Errorf("listen: --log-format %q: want text, json or auto", f.logFormat)
	}
	return f, nil
}

// runListen is `hookagent listen` (developer mode): one route from the relay's endpoint to the
// local target, delivery lines on stdout, the agent's own logs on stderr (warn and up by
// default). It returns nil when ctx ends (Ctrl-C).
func runListen(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	f, err := parseListenFlags(args, stderr)
	if err != nil {
		return err
	}
	var lv slog.Level
	if err := lv.UnmarshalText([]byte(f.logLevel)); err != nil {
		return fmt.Errorf("listen: --log-level %q: want debug, info, warn or error", f.logLevel)
	}
	if f.data == "" {
		if f.data, err = listenDataDir(f.endpoint); err != nil {
			return err
		}
	}
	memlimit.Default(agentMemLimit, 25)
	p := newPrinter(stdout, f.printBody)
	cfg := &agent.Config{
		Relay:            f.relay,
		Token:            f.token,
		AgentID:          f.agentID,
		DataDir:          f.data,
		RelayFingerprint: f.fingerprint,
		AdminAddr:        f.admin,
		ShutdownGrace:    listenGrace,
		Routes: []agent.Route{{
			Endpoint:    f.endpoint,
			Target:      f.forward,
			Concurrency: f.concurrency,
			Rate:        f.rate,
			MaxAttempts: f.maxAttempts,
			BackoffMin:  listenBackoffMin,
			BackoffMax:  listenBackoffMax,
		}},
		OnEvent: p.event,
	}
	a, err := agent.New(cfg, newLogger(stderr, lv, f.logFormat))
	if err != nil {
		return fmt.Errorf("listen: %w", err)
	}
	p.banner(a, f)
	runErr := a.Run(ctx)
	return errors.Join(runErr, a.Close())
}

// listenDataDir is the user's cache dir + hookagent/listen-ENDPOINT, created.
func listenDataDir(endpoint string) (string, error) {
	base, err := os.UserCacheDir()
	if err != nil {
		base = os.TempDir()
	}
	safe := strings.Map(func(r rune) rune {
		if r == '-' || r == '_' || r == '.' || (r >= '0' && r <= '9') || (r >= 'a' && r <= 'z') || (r >= 'A' && r <= 'Z') {
			return r
		}
		return '_'
	}, endpoint)
	dir := filepath.Join(base, "hookagent", "listen-"+safe)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", fmt.Errorf("listen: create data dir: %w", err)
	}
	return dir, nil
}

// ingressURL is the public URL of endpoint on the relay, when the relay URL says it (ws, wss,
// http, https); "" for quic://.
func ingressURL(relay, endpoint string) string {
	u, err := url.Parse(relay)
	if err != nil {
		return ""
	}
	switch u.Scheme {
	case "ws", "http":
		u.Scheme = "http"
	case "wss", "https":
		u.Scheme = "https"
	default:
		return ""
	}
	u.User, u.RawQuery, u.Fragment = nil, "", ""
	u.Path = strings.TrimSuffix(u.Path, "/") + "/h/" + endpoint
	u.RawPath = ""
	return u.String()
}
