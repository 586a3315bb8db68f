//go:build linux

package e2e

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/hookrelay/hookrelay/internal/testutil"
)

// nsPair is two network namespaces of the test's own joined by a veth pair, a /30 that
// exists only inside them: relayIP in the relay's namespace, agentIP in the agent's. The
// test process reaches into either one by opening its sockets there (inNetns), so no
// address is added to the machine's own namespace and nothing else can reach them.
type nsPair struct {
	relayNS, agentNS   string
	relayDev, agentDev string
	relayIP, agentIP   string
}

// newNSPair needs root, ip and iptables (skipped without, failed under CI=true). Cleanup
// deletes both namespaces, which takes the veth pair with them.
func newNSPair(t *testing.T) *nsPair {
	t.Helper()
	needNetns(t)
	pid := os.Getpid()
	net3 := fmt.Sprintf("10.232.%d", pid%250)
	p := &nsPair{
		relayNS: fmt.Sprintf("hookrelay-soak-r-%d", pid), agentNS: fmt.Sprintf("hookrelay-soak-a-%d", pid),
		relayDev: fmt.Sprintf("hsr%d", pid), agentDev: fmt.Sprintf("hsa%d", pid),
		relayIP: net3 + ".1", agentIP: net3 + ".2",
	}
	ip := func(args ...string) {
		t.Helper()
		if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
			t.Fatalf("ip %s: %v: %s", strings.Join(args, " "), err, out)
		}
	}
	ip("netns", "add", p.relayNS)
	t.Cleanup(func() { exec.Command("ip", "netns", "del", p.relayNS).Run() })
	ip("netns", "add", p.agentNS)
	t.Cleanup(func() { exec.Command("ip", "netns", "del", p.agentNS).Run() })
	ip("link", "add", p.relayDev, "netns", p.relayNS, "type", "veth", "peer", "name", p.agentDev, "netns", p.agentNS)
	for _, side := range []struct{ ns, dev, addr string }{{p.relayNS, p.relayDev, p.relayIP}, {p.agentNS, p.agentDev, p.agentIP}} {
		ip("-n", side.ns, "addr", "add", side.addr+"/30", "dev", side.dev)
		ip("-n", side.ns, "link", "set", side.dev, "up")
		ip("-n", side.ns, "link", "set", "lo", "up")
	}
	return p
}

// cut drops everything arriving over the veth pair, on each side: a cut cable, as far as
// either end can tell (no FIN, no RST, no ICMP). heal deletes the rules.
func (p *nsPair) cut() error  { return p.iptables("-A") }
func (p *nsPair) heal() error { return p.iptables("-D") }

func (p *nsPair) iptables(op string) error {
	for _, side := range [][2]string{{p.relayNS, p.relayDev}, {p.agentNS, p.agentDev}} {
		args := []string{"netns", "exec", side[0], "iptables", op, "INPUT", "-i", side[1], "-j", "DROP"}
		if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
			return fmt.Errorf("ip %s: %w: %s", strings.Join(args, " "), err, out)
		}
	}
	return nil
}

// inNetns runs fn on an OS thread moved into namespace ns; sockets fn opens stay in ns for
// their whole life. The thread is returned to the pool only once it is back in the test's
// own namespace; if it cannot go back, its goroutine ends locked and Go discards the thread.
func inNetns(ns string, fn func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		home, err := os.Open("/proc/thread-self/ns/net")
		if err != nil {
			errc <- fmt.Errorf("open own netns: %w", err)
			return
		}
		defer home.Close()
		there, err := os.Open("/run/netns/" + ns)
		if err != nil {
			errc <- fmt.Errorf("open netns %s: %w", ns, err)
			return
		}
		defer there.Close()
		if err := setns(there); err != nil {
			errc <- fmt.Errorf("enter netns %s: %w", ns, err)
			return
		}
		ferr := fn()
		if err := setns(home); err != nil {
			errc <- errors.Join(ferr, fmt.Errorf("leave netns %s: %w", ns, err))
			return // still locked: the thread dies with this goroutine
		}
		runtime.UnlockOSThread()
		errc <- ferr
	}()
	return <-errc
}

func setns(f *os.File) error { return unix.Setns(int(f.Fd()), unix.CLONE_NEWNET) }

// nsClient is an HTTP client whose connections are opened inside namespace ns.
func nsClient(ns string, timeout time.Duration) *http.Client {
	d := &net.Dialer{Timeout: 5 * time.Second}
	return &http.Client{Timeout: timeout, Transport: &http.Transport{
		Proxy:               nil,
		MaxIdleConnsPerHost: 64,
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			var c net.Conn
			err := inNetns(ns, func() error {
				var err error
				c, err = d.DialContext(ctx, network, addr)
				return err
			})
			return c, err
		},
	}}
}

// nsListen listens on addr inside namespace ns.
func nsListen(t *testing.T, ns, addr string) net.Listener {
	t.Helper()
	var l net.Listener
	if err := inNetns(ns, func() error {
		var err error
		l, err = net.Listen("tcp", addr)
		return err
	}); err != nil {
		t.Fatalf("listen in %s: %v", ns, err)
	}
	return l
}

// nsProc is a child process run inside namespace ns (`ip netns exec` execs the program
// itself, so signals reach it, which checkExec verifies).
func nsProc(t *testing.T, name, ns, path string, args ...string) *proc {
	return newProc(t, name, "ip", append([]string{"netns", "exec", ns, path}, args...)...)
}

// checkExec fails unless p's process becomes the program at path (`ip netns exec` execs
// it in place) and not a wrapper that a kill -9 would hit instead.
func checkExec(t *testing.T, p *proc, path string) {
	t.Helper()
	testutil.CheckFor(t, 5*time.Second, 5*time.Millisecond, func() error {
		exe, err := os.Readlink(fmt.Sprintf("/proc/%d/exe", p.pid()))
		if err != nil {
			return fmt.Errorf("%s: %w", p.name, err)
		}
		if exe != path {
			return fmt.Errorf("%s runs %s, want %s: signals would not reach it", p.name, exe, path)
		}
		return nil
	})
}
