// Command hookrelay is the public relay: it accepts webhooks and pushes them to agents.
// It only wires flags and config to relay.Server.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/hookrelay/hookrelay/internal/buildinfo"
	"github.com/hookrelay/hookrelay/internal/memlimit"
	"github.com/hookrelay/hookrelay/internal/profile"
	"github.com/hookrelay/hookrelay/relay"
)

// Set by -ldflags "-X main.version=… -X main.commit=…".
var (
	version = "dev"
	commit  = "unknown"
)

const usage = `usage:
  hookrelay serve --config relay.yaml [--addr A] [--quic-addr Q] [--data D] [--log-level L]
  hookrelay token                       print a new agent token and its sha256 hash
  hookrelay fingerprint --config relay.yaml
  hookrelay demo                        relay + agent + sample target on loopback
  hookrelay --version
`

// relayMemLimit is the relay's soft memory limit (GOMEMLIMIT overrides it): under load the GC
// otherwise let the heap reach twice what was live (peak RSS 77–90 MiB over 3 × 10 MiB and
// the 64 KiB burst of hookbench -quick; 55–70 with this). Badger's relay profile keeps what
// the GC counts as live (memtable arenas, allocated whole, and caches) near 40 MiB, so that
// the GC does not run back to back under the limit. It was 56 MiB until the store's metadata
// left the LSM tree (persist's valueThreshold): in two alternating runs of go run
// ./cmd/hookbench -transports ws -n1k 20000 -n64k 2000 -paced 1s -large 3 -idle 0 -backlog 0
// -cluster 0 -sustained 1 -out "", 48 MiB gave a relay peak of 59–63 MiB over 3 × 10 MiB after
// the bursts (69–70 with 56) and 70–73 over the 64 KiB burst (75–78), at the same CPU per
// webhook (201–210 µs against 201–218) and sustained rate.
const relayMemLimit = 48 << 20

// errUsage marks a command-line mistake (exit status 2).
var errUsage = errors.New("usage")

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	stopProfile := profile.Start("HOOKRELAY")
	err := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stopProfile()
	stop()
	switch {
	case err == nil:
	case errors.Is(err, errUsage):
		os.Exit(2)
	default:
		fmt.Fprintln(os.Stderr, "hookrelay:", err)
		os.Exit(1)
	}
}

// run dispatches a subcommand. Usage errors are printed here and wrap errUsage.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return errUsage
	}
	switch args[0] {
	case "--version", "-version", "version":
		fmt.Fprintln(stdout, buildinfo.Line("hookrelay", version, commit))
		return nil
	case "serve":
		return runServe(ctx, args[1:], stderr)
	case "token":
		runToken(stdout, stderr)
		return nil
	case "fingerprint":
		return runFingerprint(ctx, args[1:], stdout, stderr)
	case "demo":
		return runDemo(ctx, args[1:], stdout, stderr)
	case "help", "-h", "--help":
		fmt.Fprint(stdout, usage)
		return nil
	default:
		fmt.Fprintf(stderr, "hookrelay: unknown command %q\n%s", args[0], usage)
		return errUsage
	}
}

func runServe(ctx context.Context, args []string, stderr io.Writer) error {
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	fs.SetOutput(stderr)
	config := fs.String("config", "", "relay config file (YAML)")
	addr := fs.String("addr", "", "HTTP listen address (overrides addr)")
	quicAddr := fs.String("quic-addr", "", "QUIC listen address (overrides quic_addr)")
	dataDir := fs.String("data", "", "data directory (overrides data_dir)")
	logLevel := fs.String("log-level", envOr("HOOKRELAY_LOG_LEVEL", "info"), "debug, info, warn or error")
	if err := fs.Parse(args); err != nil {
		return errUsage
	}
	if *config == "" || fs.NArg() > 0 {
		fmt.Fprint(stderr, "hookrelay serve: --config is required, and takes no arguments\n", usage)
		return errUsage
	}
	log, err := newLogger(stderr, *logLevel)
	if err != nil {
		return err
	}
	memlimit.Default(relayMemLimit, 50)
	// load reads the file and applies the flags over it (flag > env > file > default), at
	// start and again on SIGHUP.
	load := func() (*relay.Config, error) {
		cfg, err := relay.LoadConfig(*config)
		if err != nil {
			return nil, err
		}
		if *addr != "" {
			cfg.Addr = *addr
		}
		if *quicAddr != "" {
			cfg.QUICAddr = *quicAddr
		}
		if *dataDir != "" {
			cfg.DataDir = *dataDir
		}
		if err := cfg.Validate(); err != nil {
			return nil, fmt.Errorf("config %s: %w", *config, err)
		}
		cfg.Version = version
		return cfg, nil
	}
	cfg, err := load()
	if err != nil {
		return err
	}
	srv, err := relay.New(cfg, log)
	if err != nil {
		return err
	}
	defer srv.Close()
	stopReload := reloadOnHangup(srv, load, log)
	defer stopReload()
	if err := srv.Run(ctx); err != nil {
		return err
	}
	log.Info("relay stopped")
	return srv.Close()
}

// reloadOnHangup reloads the config on each SIGHUP until the returned stop is called (which
// waits for a reload in progress). A file that cannot be read or fails validation is refused
// with a log line, and the running config stays in force.
func reloadOnHangup(srv *relay.Server, load func() (*relay.Config, error), log *slog.Logger) (stop func()) {
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	done := make(chan struct{})
	finished := make(chan struct{})
	go func() {
		defer close(finished)
		for {
			select {
			case <-done:
				return
			case <-hup:
			}
			log.Info("SIGHUP: reloading the config")
			cfg, err := load()
			if err != nil {
				log.Error("config reload refused: the running config stays in force", "err", err)
				continue
			}
			srv.Reload(cfg) // logs the outcome itself
		}
	}()
	return func() {
		signal.Stop(hup)
		close(done)
		<-finished
	}
}

// runToken prints a new agent token (256 random bits) and its hash.
func runToken(stdout, stderr io.Writer) {
	token, hash := newToken()
	fmt.Fprintln(stdout, token)
	fmt.Fprintln(stdout, hash)
	fmt.Fprintln(stderr, "Put the sha256:… hash in relay.yaml (an endpoint's tokens) and the token in agent.yaml (token:).")
	fmt.Fprintln(stderr, "The token is shown only now; the relay keeps only its hash.")
}

// runFingerprint prints the SHA-256 fingerprint of the relay's tunnel certificate (the
// configured tls cert, or the self-signed one in data_dir, created if none exists yet), the
// value agents pin as relay_fingerprint.
func runFingerprint(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("fingerprint", flag.ContinueOnError)
	fs.SetOutput(stderr)
	config := fs.String("config", "", "relay config file (YAML)")
	dataDir := fs.String("data", "", "data directory (overrides data_dir)")
	if err := fs.Parse(args); err != nil {
		return errUsage
	}
	if *config == "" || fs.NArg() > 0 {
		fmt.Fprint(stderr, "hookrelay fingerprint: --config is required, and takes no arguments\n", usage)
		return errUsage
	}
	cfg, err := relay.LoadConfig(*config)
	if err != nil {
		return err
	}
	if *dataDir != "" {
		cfg.DataDir = *dataDir
	}
	fp, err := relay.Fingerprint(cfg)
	if err != nil {
		return err
	}
	fmt.Fprintln(stdout, fp)
	return nil
}

// newLogger logs text to a terminal and JSON otherwise (journald, files, collectors).
func newLogger(w io.Writer, level string) (*slog.Logger, error) {
	var lv slog.Level
	if err := lv.UnmarshalText([]byte(level)); err != nil {
		return nil, fmt.Errorf("--log-level %q: use debug, info, warn or error", level)
	}
	opts := &slog.HandlerOptions{Level: lv}
	if f, ok := w.(*os.File); ok {
		if fi, err := f.Stat(); err == nil && fi.Mode()&os.ModeCharDevice != 0 {
			return slog.New(slog.NewTextHandler(w, opts)), nil
		}
	}
	return slog.New(slog.NewJSONHandler(w, opts)), nil
}

func envOr(key, def string) string {
	if v := os.Getenv(key); v != "" {
		return v
	}
	return def
}
