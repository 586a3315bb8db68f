// Package natstest runs real nats-server processes for tests: a 1-node or 3-node JetStream
// cluster on 127.0.0.1, built from the nats-server module pinned as a go tool in go.mod, so
// tests need no download. Nodes fsync every write (sync_interval: always) and can be killed
// with SIGKILL and restarted on the same ports and store.
package natstest

import (
	"bytes"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hookrelay/hookrelay/relay/jsqueue"
)

var (
	buildOnce sync.Once
	binPath   string
	buildErr  error
)

// Binary returns the nats-server binary, built once per test binary with `go tool -n`. It
// skips t when it cannot be built, and fails it instead when CI=true.
func Binary(t testing.TB) string {
	t.Helper()
	buildOnce.Do(func() {
		var out, errb bytes.Buffer
		cmd := exec.Command("go", "tool", "-n", "nats-server")
		cmd.Stdout, cmd.Stderr = &out, &errb
		if err := cmd.Run(); err != nil {
			buildErr = fmt.Errorf("go tool -n nats-server: %w: %s", err, errb.String())
			return
		}
		binPath = strings.TrimSpace(out.String())
	})
	if buildErr != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("nats-server cannot be built: %v", buildErr)
		}
		t.Skipf("nats-server cannot be built here (skipped; a failure with CI=true): %v", buildErr)
	}
	return binPath
}

// Node is one nats-server process.
type Node struct {
	Name        string
	Port        int // client port
	clusterPort int
	dir         string
	conf        string
	log         string
	cmd         *exec.Cmd
}

// URL is the node's client URL.
func (n *Node) URL() string { return fmt.Sprintf("nats://127.0.0.1:%d", n.Port) }

// CPU is the user and system CPU time the node's running server process has used (Linux;
// zero elsewhere or when it is not running), for benchmarks that report the servers' cost.
func (n *Node) CPU() time.Duration {
	if n.cmd == nil || n.cmd.Process == nil {
		return 0
	}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", n.cmd.Process.Pid))
	if err != nil {
		return 0
	}
	s := string(b)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+2:])
	if len(f) < 13 {
		return 0
	}
	u, _ := strconv.ParseInt(f[11], 10, 64)
	st, _ := strconv.ParseInt(f[12], 10, 64)
	return time.Duration(u+st) * 10 * time.Millisecond // USER_HZ is 100 on Linux
}

// Cluster is a set of nodes forming one JetStream cluster (one node: no cluster block).
type Cluster struct {
	t     testing.TB
	bin   string
	Nodes []*Node
}

// Start runs n nats-server nodes (1 or 3) and waits until JetStream answers on every one.
// They are killed when t ends.
func Start(t testing.TB, n int) *Cluster {
	t.Helper()
	c := &Cluster{t: t, bin: Binary(t)}
	base := t.TempDir()
	for i := range n {
		c.Nodes = append(c.Nodes, &Node{Name: fmt.Sprintf("n%d", i), Port: freePort(t), clusterPort: freePort(t),
			dir: filepath.Join(base, fmt.Sprintf("n%d", i))})
	}
	for _, nd := range c.Nodes {
		if err := os.MkdirAll(nd.dir, 0o755); err != nil {
			t.Fatal(err)
		}
		nd.conf = filepath.Join(nd.dir, "nats.conf")
		nd.log = filepath.Join(nd.dir, "nats.log")
		if err := os.WriteFile(nd.conf, []byte(c.config(nd)), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	t.Cleanup(func() {
		for i, nd := range c.Nodes {
			if nd.cmd != nil {
				c.Kill(i)
			}
			if t.Failed() {
				b, _ := os.ReadFile(nd.log)
				lines := strings.Split(strings.TrimSpace(string(b)), "\n")
				t.Logf("%s log (tail):\n%s", nd.Name, strings.Join(lines[max(0, len(lines)-20):], "\n"))
			}
		}
	})
	for i := range c.Nodes {
		c.start(i)
	}
	c.WaitReady()
	return c
}

func (c *Cluster) config(nd *Node) string {
	var b strings.Builder
	fmt.Fprintf(&b, "server_name: %s\nlisten: 127.0.0.1:%d\n", nd.Name, nd.Port)
	fmt.Fprintf(&b, "jetstream {\n  store_dir: %q\n  sync_interval: always\n}\n", filepath.Join(nd.dir, "js"))
	if len(c.Nodes) > 1 {
		var routes []string
		for _, o := range c.Nodes {
			routes = append(routes, fmt.Sprintf("nats-route://127.0.0.1:%d", o.clusterPort))
		}
		fmt.Fprintf(&b, "cluster {\n  name: hookrelay\n  listen: 127.0.0.1:%d\n  routes: [%s]\n}\n",
			nd.clusterPort, strings.Join(routes, ", "))
	}
	return b.String()
}

func (c *Cluster) start(i int) {
	c.t.Helper()
	nd := c.Nodes[i]
	logf, err := os.OpenFile(nd.log, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		c.t.Fatal(err)
	}
	defer logf.Close()
	nd.cmd = exec.Command(c.bin, "-c", nd.conf)
	nd.cmd.Stdout, nd.cmd.Stderr = logf, logf
	if err := nd.cmd.Start(); err != nil {
		c.t.Fatalf("start %s: %v", nd.Name, err)
	}
}

// URLs are the client URLs of every node.
func (c *Cluster) URLs() []string {
	var u []string
	for _, nd := range c.Nodes {
		u = append(u, nd.URL())
	}
	return u
}

// Kill stops node i with SIGKILL and waits for it to exit.
func (c *Cluster) Kill(i int) {
	nd := c.Nodes[i]
	if nd.cmd == nil {
		return
	}
	nd.cmd.Process.Kill()
	nd.cmd.Wait()
	nd.cmd = nil
}

// Restart starts node i again (same ports, same store) and waits until JetStream answers.
func (c *Cluster) Restart(i int) {
	c.t.Helper()
	c.Kill(i)
	c.start(i)
	c.WaitReady()
}

// WaitReady waits up to 30s until every running node accepts connections and its JetStream
// answers (in a cluster: a meta leader is elected).
func (c *Cluster) WaitReady() {
	c.t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for _, nd := range c.Nodes {
		if nd.cmd == nil {
			continue
		}
		for {
			err := jsqueue.ServerReady(nd.URL())
			if err == nil {
				break
			}
			if time.Now().After(deadline) {
				c.t.Fatalf("nats %s not ready: %v", nd.Name, err)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
}

func freePort(t testing.TB) int {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}
