package svc

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"os"
	"strconv"
	"time"
)

// Notify sends state (e.g. "READY=1") to the service manager over the datagram
// socket named by $NOTIFY_SOCKET, as sd_notify(3) does. An abstract socket
// name starts with '@'. Notify does nothing when NOTIFY_SOCKET is unset, so it
// is safe to call outside systemd.
func Notify(state string) error {
	name := os.Getenv("NOTIFY_SOCKET")
	if name == "" {
		return nil
	}
	if name[0] != '/' && name[0] != '@' {
		return fmt.Errorf("notify: unsupported NOTIFY_SOCKET %q (want a path or @abstract name)", name)
	}
	// Go maps a leading '@' to the abstract namespace (a leading NUL byte).
	conn, err := net.DialUnix("unixgram", nil, &net.UnixAddr{Name: name, Net: "unixgram"})
	if err != nil {
		return fmt.Errorf("notify: %w", err)
	}
	defer conn.Close()
	if _, err := conn.Write([]byte(state)); err != nil {
		return fmt.Errorf("notify: %w", err)
	}
	return nil
}

// Ready tells the service manager that start-up is finished (Type=notify).
func Ready() error { return Notify("READY=1") }

// Stopping tells the service manager that a clean shutdown has begun.
func Stopping() error { return Notify("STOPPING=1") }

// WatchdogInterval returns how often to send WATCHDOG=1: half of
// $WATCHDOG_USEC, or 0 when the watchdog is off or meant for another process
// ($WATCHDOG_PID names a different pid).
func WatchdogInterval() (time.Duration, error) {
	s := os.Getenv("WATCHDOG_USEC")
	if s == "" {
		return 0, nil
	}
	if pid := os.Getenv("WATCHDOG_PID"); pid != "" && pid != strconv.Itoa(os.Getpid()) {
		return 0, nil
	}
	usec, err := strconv.ParseInt(s, 10, 64)
	if err != nil || usec <= 0 {
		return 0, fmt.Errorf("watchdog: WATCHDOG_USEC %q is not a positive integer", s)
	}
	return time.Duration(usec) * time.Microsecond / 2, nil
}

// Watchdog sends WATCHDOG=1 every WATCHDOG_USEC/2 until ctx ends, then returns
// nil. It returns at once when no watchdog is set. It blocks: run it in a
// goroutine its caller joins. A failed send is logged and retried at the next
// tick: systemd restarts the service if pings stop arriving.
func Watchdog(ctx context.Context) error {
	every, err := WatchdogInterval()
	if err != nil || every == 0 {
		return err
	}
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
			if err := Notify("WATCHDOG=1"); err != nil {
				slog.Warn("watchdog ping failed", "err", err)
			}
		}
	}
}
