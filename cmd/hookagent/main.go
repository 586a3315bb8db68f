// Command hookagent is the edge side of hookrelay: `hookagent run --config agent.yaml` dials
// the relay, stores webhooks durably and delivers them to local targets. It is wiring only:
// flags and config in, an agent.Agent out.
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

	"github.com/hookrelay/hookrelay/agent"
	"github.com/hookrelay/hookrelay/agent/svc"
	"github.com/hookrelay/hookrelay/internal/buildinfo"
	"github.com/hookrelay/hookrelay/internal/memlimit"
	"github.com/hookrelay/hookrelay/internal/profile"
)

// Set with -ldflags "-X main.version=… -X main.commit=…".
var (
	version = "dev"
	commit  = "unknown"
)

const usage = `usage:
  hookagent run --config agent.yaml [--log-level info] [--log-format auto]
  hookagent listen --relay URL --token TOKEN --endpoint NAME --forward http://localhost:3000
                   [--print-body] [--admin ADDR] [--data DIR] [--rate N] [--concurrency N]
  hookagent install|uninstall|start|stop|status [--config agent.yaml]
  hookagent --version
`

// agentMemLimit is the agent's soft memory limit (GOMEMLIMIT overrides it): the agent must
// run on 128 MiB boxes, and under load the GC otherwise let the heap reach twice what was live
// (peak RSS 73–77 MiB over the 64 KiB burst of hookbench -quick; 56–68 with 44–48 MiB here,
// the rest of the RSS being the binary, stacks and mapped files). At 40 MiB with the older,
// larger Badger profile the GC took a quarter of the agent's CPU in a long 1 KiB burst. Since
// the store's metadata left the LSM tree (persist's valueThreshold) the live heap at that peak
// is ~21 MiB, not 41: in three alternating runs of go run ./cmd/hookbench -transports ws
// -n1k 5000 -n64k 2000 -paced 1s -large 3 -idle 0 -backlog 0 -cluster 0 -sustained 0 -out "",
// 40 MiB gave an agent peak of 59–60 MiB against 60–63 with 44, and no more CPU (206–290
// against 236–270 µs per webhook). At 32 MiB the GC could not keep up with the compactions'
// passing peaks: the agent fell behind and held more (peak 71–73 MiB).
const agentMemLimit = 40 << 20

func main() {
	stopProfile := profile.Start("HOOKAGENT")
	code := run(os.Args[1:], os.Stdout, os.Stderr)
	stopProfile()
	os.Exit(code)
}

// run dispatches the subcommand and returns the exit code.
func run(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return 2
	}
	var err error
	switch args[0] {
	case "--version", "-version", "version":
		fmt.Fprintln(stdout, buildinfo.Line("hookagent", version, commit))
		return 0
	case "-h", "--help", "help":
		fmt.Fprint(stdout, usage)
		return 0
	case "run":
		err = runAgent(args[1:], stderr)
	case "listen":
		ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
		err = runListen(ctx, args[1:], stdout, stderr)
		stop()
	case "install", "uninstall", "start", "stop", "status":
		err = serviceCommand(args[0], args[1:])
	default:
		fmt.Fprintf(stderr, "hookagent: unknown command %q\n%s", args[0], usage)
		return 2
	}
	return exitCode(err, stderr)
}

// exitCode maps a command's error to the exit code, printing the error.
func exitCode(err error, stderr io.Writer) int {
	if err == nil || errors.Is(err, flag.ErrHelp) {
		return 0
	}
	var ec interface{ ExitCode() int }
	if errors.As(err, &ec) {
		return ec.ExitCode() // the command already said what there is to say
	}
	fmt.Fprintf(stderr, "hookagent: %v\n", err)
	return 1
}

// runAgent is `hookagent run`: the service's command. SIGINT/SIGTERM (or the service manager's
// stop) end it cleanly with exit 0.
func runAgent(args []string, stderr io.Writer) error {
	fs := flag.NewFlagSet("hookagent run", flag.ContinueOnError)
	fs.SetOutput(stderr)
	configPath := fs.String("config", svc.DefaultConfigPath, "agent config `file` (YAML)")
	level := fs.String("log-level", "info", "debug, info, warn or error")
	format := fs.String("log-format", "auto", "text, json, or auto (text on a terminal, else json)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("run: unexpected argument %q", fs.Arg(0))
	}
	var lv slog.Level
	if err := lv.UnmarshalText([]byte(*level)); err != nil {
		return fmt.Errorf("--log-level %q: want debug, info, warn or error", *level)
	}
	switch *format {
	case "auto", "text", "json":
	default:
		return fmt.Errorf("--log-format %q: want text, json or auto", *format)
	}
	cfg, err := agent.LoadConfig(*configPath)
	if err != nil {
		return err
	}
	memlimit.Default(agentMemLimit, 25)
	slog.SetDefault(newLogger(stderr, lv, *format))
	return svc.Run(func(ctx context.Context) error {
		// slog.Default(), not a logger made earlier: under a service manager without stderr,
		// svc.Run points it at the system log.
		log := slog.Default()
		// SIGHUP would end the process by default; the agent has no reload, so say so instead.
		hup := make(chan os.Signal, 1)
		signal.Notify(hup, syscall.SIGHUP)
		defer signal.Stop(hup)
		go func() {
			for {
				select {
				case <-hup:
					log.Warn("SIGHUP ignored: the agent does not reload its config; restart it to apply changes")
				case <-ctx.Done():
					return
				}
			}
		}()
		a, err := agent.New(cfg, log)
		if err != nil {
			return err
		}
		log.Info("hookagent", "version", version, "commit", commit)
		if err := svc.Ready(); err != nil {
			log.Warn("notify service manager", "err", err)
		}
		runErr := a.Run(ctx)
		return errors.Join(runErr, a.Close())
	})
}

// newLogger logs text on a terminal and JSON otherwise (format "auto").
func newLogger(w io.Writer, level slog.Level, format string) *slog.Logger {
	opts := &slog.HandlerOptions{Level: level}
	if format == "text" || (format == "auto" && isTerminal(w)) {
		return slog.New(slog.NewTextHandler(w, opts))
	}
	return slog.New(slog.NewJSONHandler(w, opts))
}

func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}
