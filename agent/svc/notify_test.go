package svc

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"
)

// listenNotify opens a unixgram socket like systemd's notify socket, points
// NOTIFY_SOCKET at it and returns a function that reads the next datagram.
func listenNotify(t *testing.T, name string) func() string {
	t.Helper()
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: name, Net: "unixgram"})
	if err != nil {
		t.Fatalf("listen %s: %v", name, err)
	}
	t.Cleanup(func() { conn.Close() })
	t.Setenv("NOTIFY_SOCKET", name)
	return func() string {
		t.Helper()
		buf := make([]byte, 4096)
		conn.SetReadDeadline(time.Now().Add(10 * time.Second))
		n, err := conn.Read(buf)
		if err != nil {
			t.Fatalf("read notify socket: %v", err)
		}
		return string(buf[:n])
	}
}

func TestNotifyPathSocket(t *testing.T) {
	next := listenNotify(t, filepath.Join(t.TempDir(), "notify.sock"))
	for _, tc := range []struct {
		send func() error
		want string
	}{
		{Ready, "READY=1"},
		{Stopping, "STOPPING=1"},
		{func() error { return Notify("STATUS=connected\nREADY=1") }, "STATUS=connected\nREADY=1"},
	} {
		if err := tc.send(); err != nil {
			t.Fatalf("send %q: %v", tc.want, err)
		}
		if got := next(); got != tc.want {
			t.Fatalf("got %q, want %q", got, tc.want)
		}
	}
}

func TestNotifyAbstractSocket(t *testing.T) {
	suffix := make([]byte, 8)
	rand.Read(suffix)
	next := listenNotify(t, "@hookagent-test-"+hex.EncodeToString(suffix))
	if err := Ready(); err != nil {
		t.Fatalf("ready: %v", err)
	}
	if got := next(); got != "READY=1" {
		t.Fatalf("got %q, want READY=1", got)
	}
}

func TestNotifyUnsetIsNoop(t *testing.T) {
	t.Setenv("NOTIFY_SOCKET", "")
	if err := Ready(); err != nil {
		t.Fatalf("ready without NOTIFY_SOCKET: %v", err)
	}
}

func TestNotifyErrors(t *testing.T) {
	for _, name := range []string{
		"vsock:2:1234",
		filepath.Join(t.TempDir(), "missing.sock"),
	} {
		t.Setenv("NOTIFY_SOCKET", name)
		if err := Ready(); err == nil {
			t.Errorf("NOTIFY_SOCKET=%q: no error", name)
		}
	}
}

func TestWatchdogPings(t *testing.T) {
	next := listenNotify(t, filepath.Join(t.TempDir(), "notify.sock"))
	t.Setenv("WATCHDOG_USEC", "20000") // a ping every 10ms
	t.Setenv("WATCHDOG_PID", strconv.Itoa(os.Getpid()))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- Watchdog(ctx) }()
	for range 3 {
		if got := next(); got != "WATCHDOG=1" {
			t.Fatalf("got %q, want WATCHDOG=1", got)
		}
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("watchdog: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("watchdog did not return after its context ended")
	}
}

func TestWatchdogInterval(t *testing.T) {
	for _, tc := range []struct {
		usec, pid string
		want      time.Duration
		wantErr   bool
	}{
		{"", "", 0, false},
		{"30000000", "", 15 * time.Second, false},
		{"30000000", strconv.Itoa(os.Getpid()), 15 * time.Second, false},
		{"30000000", strconv.Itoa(os.Getpid() + 1), 0, false}, // another process's watchdog
		{"soon", "", 0, true},
		{"-5", "", 0, true},
	} {
		t.Setenv("WATCHDOG_USEC", tc.usec)
		t.Setenv("WATCHDOG_PID", tc.pid)
		got, err := WatchdogInterval()
		if got != tc.want || (err != nil) != tc.wantErr {
			t.Errorf("USEC=%q PID=%q: got %v, %v; want %v, error %v", tc.usec, tc.pid, got, err, tc.want, tc.wantErr)
		}
	}
}

// TestRunNotifiedStopping checks that a stop request reaches systemd as
// STOPPING=1 and that fn's error comes back.
func TestRunNotifiedStopping(t *testing.T) {
	next := listenNotify(t, filepath.Join(t.TempDir(), "notify.sock"))
	t.Setenv("WATCHDOG_USEC", "")
	ctx, cancel := context.WithCancel(context.Background())
	errDone := errors.New("done")
	result := make(chan error, 1)
	go func() {
		result <- runNotified(ctx, func(ctx context.Context) error {
			if err := Ready(); err != nil {
				return err
			}
			<-ctx.Done()
			return errDone
		})
	}()
	if got := next(); got != "READY=1" {
		t.Fatalf("got %q, want READY=1", got)
	}
	cancel()
	if got := next(); got != "STOPPING=1" {
		t.Fatalf("got %q, want STOPPING=1", got)
	}
	select {
	case err := <-result:
		if !errors.Is(err, errDone) {
			t.Fatalf("run returned %v, want fn's error", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("run did not return")
	}
}
