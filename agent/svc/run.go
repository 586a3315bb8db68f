package svc

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"runtime"
	"sync"
	"syscall"

	"github.com/kardianos/service"
)

// Run runs fn until it returns, with a context that ends when the process is
// asked to stop: SIGINT or SIGTERM (a terminal, systemd, launchd, SysV), or a
// stop request of the Windows service manager. Under systemd it also sends
// WATCHDOG=1 pings (when WatchdogSec= is set) and STOPPING=1 once asked to
// stop; fn calls Ready itself once it is ready. Run returns fn's error.
//
// On Windows under the service manager, log through slog.Default() (or a
// logger derived from it inside fn): Run points it at the Event Log, since a
// service has no stderr.
func Run(fn func(ctx context.Context) error) error {
	if runtime.GOOS != "linux" && !service.Interactive() {
		return runManaged(fn)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	return runNotified(ctx, fn)
}

// runNotified runs fn with the sd_notify side jobs, joined before it returns.
func runNotified(ctx context.Context, fn func(ctx context.Context) error) error {
	done, finish := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() {
		// Watchdog stops with whichever comes first: a stop request or fn's end.
		wctx, cancel := context.WithCancel(ctx)
		defer cancel()
		context.AfterFunc(done, cancel)
		_ = Watchdog(wctx)
	})
	wg.Go(func() {
		select {
		case <-ctx.Done():
			_ = Stopping()
		case <-done.Done():
		}
	})
	err := fn(ctx)
	finish()
	wg.Wait()
	return err
}

// program adapts fn to kardianos/service, which calls Start (must not block)
// and, once the service manager asks, Stop.
type program struct {
	fn     func(ctx context.Context) error
	ctx    context.Context
	cancel context.CancelFunc
	done   chan struct{}
	err    error // fn's result, set before done closes
}

func (p *program) Start(s service.Service) error {
	go func() {
		defer close(p.done)
		p.err = p.fn(p.ctx)
		if p.ctx.Err() == nil && runtime.GOOS == "windows" {
			// fn ended on its own. The Windows service manager waits for a
			// stop request that will not come; exiting non-zero lets its
			// recovery action (restart) take over.
			exitCode := 0
			if p.err != nil {
				slog.Error("hookagent stopped", "err", p.err)
				exitCode = 1
			}
			os.Exit(exitCode)
		}
	}()
	return nil
}

func (p *program) Stop(s service.Service) error {
	p.cancel()
	<-p.done
	return nil
}

// runManaged runs fn under launchd or the Windows service manager through
// kardianos/service.
func runManaged(fn func(ctx context.Context) error) error {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	p := &program{fn: fn, ctx: ctx, cancel: cancel, done: make(chan struct{})}
	cfg := serviceConfig("", "", mustTemplate(DefaultDataDir))
	cfg.Option["RunWait"] = func() {
		// launchd: stop on SIGTERM/SIGINT or when fn ends by itself.
		sig := make(chan os.Signal, 1)
		signal.Notify(sig, os.Interrupt, syscall.SIGTERM)
		defer signal.Stop(sig)
		select {
		case <-sig:
		case <-p.done:
		}
	}
	s, err := service.New(p, cfg)
	if err != nil {
		return fmt.Errorf("service manager: %w", err)
	}
	if runtime.GOOS == "windows" {
		if err := useSystemLog(s); err != nil {
			return err
		}
	}
	if err := s.Run(); err != nil {
		return errors.Join(fmt.Errorf("service run: %w", err), p.err)
	}
	return p.err
}
