package main

import (
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hookrelay/hookrelay/relay/jsqueue"
)

// The cluster shape: three nats-server processes (a JetStream cluster on loopback, fsyncing
// every write), three relays on it with replicas: 3, and one agent given all three relays.
// 16 senders post the 1 KiB burst across the three relays' ingress; its rate is compared with
// the single Badger relay's 1 KiB burst of the same run (issue 15's goal: 0.3×). All seven
// processes share the machine's cores with the bench.

// goalCluster1k is issue 15's goal for the cluster's 1 KiB burst, × one Badger relay's.
const goalCluster1k = 0.3

// clusterRounds is how many times the cluster's burst and the single relay's alternate: a
// busy moment on a shared machine moved one pair's ratio from 0.4× to 0.26×.
const clusterRounds = 2

// clusterResult is the cluster's 1 KiB burst, each round after the same burst through one
// Badger relay (ws): on a shared machine the load moves between shapes, and each ratio should
// compare like moments.
type clusterResult struct {
	n      int
	rounds []clusterRound
}

type clusterRound struct {
	cluster, single burstResult
	// msgs and states are the messages the webhook stream and the state bucket took per
	// webhook of the cluster's burst.
	msgs, states float64
	// natsCPU, relayCPU and agentCPU are the CPU time per webhook of the cluster's burst,
	// summed over the three servers, the three relays and the agent.
	natsCPU, relayCPU, agentCPU time.Duration
}

func (c clusterRound) ratio() float64 { return ratio(c.cluster.rate, c.single.rate) }

// ratio is the mean of the rounds' ratios.
func (c *clusterResult) ratio() float64 {
	var sum float64
	for _, r := range c.rounds {
		sum += r.ratio()
	}
	return sum / float64(len(c.rounds))
}

// runCluster measures the cluster shape into r.cluster, unless it is off: a single Badger
// relay with its agent and the cluster are both started, and their bursts alternate.
func runCluster(r *results, b bins, root, dir string, tg *target, log io.Writer) error {
	if r.opts.cluster <= 0 {
		return nil
	}
	fmt.Fprintln(log, "cluster (3 nats-server, 3 relays, 1 agent) …")
	dir = filepath.Join(dir, "cluster")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("cluster work dir: %w", err)
	}
	n := r.opts.cluster
	return onFresh(b, "ws", filepath.Join(dir, "single"), tg, func(w *world) error {
		if err := w.startAgent(); err != nil {
			return err
		}
		if err := w.warm(); err != nil {
			return err
		}
		res := clusterResult{n: n}
		single := func() (burstResult, error) { return burst(tg, w.ingress(), "single1k", n, kib1) }
		err := clusterBursts(b, root, dir, tg, n, func(cluster func() (clusterRound, error)) error {
			for range clusterRounds {
				s, err := single()
				if err != nil {
					return fmt.Errorf("single relay: %w", err)
				}
				c, err := cluster()
				if err != nil {
					return err
				}
				c.single = s
				res.rounds = append(res.rounds, c)
			}
			return nil
		})
		if err != nil {
			return fmt.Errorf("cluster: %w (logs in %s)", err, dir)
		}
		r.cluster = &res
		return nil
	})
}

// clusterBursts starts the cluster and calls rounds with a function that runs its burst once.
func clusterBursts(b bins, root, dir string, tg *target, n int, rounds func(burst func() (clusterRound, error)) error) error {
	var procs []*proc
	defer func() {
		for i := len(procs) - 1; i >= 0; i-- { // agent, relays, then the servers
			procs[i].stop()
		}
	}()
	natsURLs, servers, err := startNATS(root, dir)
	procs = append(procs, servers...)
	if err != nil {
		return err
	}
	out, err := runOut(b.relay, "token")
	if err != nil {
		return err
	}
	tok, hash, ok := strings.Cut(out, "\n")
	if !ok {
		return fmt.Errorf("hookrelay token printed %q", out)
	}
	var ingress, tunnels []string
	for i := range 3 {
		port, err := freePort()
		if err != nil {
			return err
		}
		cfg := fmt.Sprintf(`addr: 127.0.0.1:%d
data_dir: %s
node_id: relay-%d
store:
  nats:
    urls: [%s]
    replicas: 3
endpoints:
  - name: bench
    tokens: [%q]
`, port, filepath.Join(dir, fmt.Sprintf("relay%d-data", i)), i, strings.Join(natsURLs, ", "), hash)
		path := filepath.Join(dir, fmt.Sprintf("relay%d.yaml", i))
		if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
			return fmt.Errorf("write relay config: %w", err)
		}
		p, err := startProc(filepath.Join(dir, fmt.Sprintf("relay%d.log", i)), b.relay, "serve", "--config", path)
		if err != nil {
			return err
		}
		procs = append(procs, p)
		ingress = append(ingress, fmt.Sprintf("http://127.0.0.1:%d/h/bench", port))
		tunnels = append(tunnels, fmt.Sprintf("ws://127.0.0.1:%d", port))
	}
	client := newClient()
	for i, u := range ingress {
		health := strings.TrimSuffix(u, "/h/bench") + "/healthz"
		err := waitFor(60*time.Second, 100*time.Millisecond, func() error {
			resp, err := client.Get(health)
			if err != nil {
				return err
			}
			resp.Body.Close()
			if resp.StatusCode != 200 {
				return fmt.Errorf("healthz answered %d", resp.StatusCode)
			}
			return nil
		})
		if err != nil {
			return fmt.Errorf("relay %d not healthy: %w; its log ends:\n%s", i, err, tail(procs[3+i].log, 10))
		}
	}
	cfg := fmt.Sprintf(`relay: [%s]
token: %q
agent_id: bench-cluster-agent
data_dir: %s
admin_addr: off
routes:
  - endpoint: bench
    target: %s
    concurrency: 16
    backoff_min: 50ms
    backoff_max: 500ms
`, strings.Join(tunnels, ", "), tok, filepath.Join(dir, "agent-data"), tg.url)
	path := filepath.Join(dir, "agent.yaml")
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		return fmt.Errorf("write agent config: %w", err)
	}
	agent, err := startProc(filepath.Join(dir, "agent.log"), b.agent, "run", "--config", path)
	if err != nil {
		return err
	}
	procs = append(procs, agent)
	tg.warmed.Store(0)
	err = waitFor(60*time.Second, 100*time.Millisecond, func() error {
		if tg.warmed.Load() > 0 {
			return nil
		}
		if err := post(client, ingress[0]+"/warm", "warm", -1, kib1); err != nil {
			return err
		}
		return fmt.Errorf("no warm-up webhook delivered yet")
	})
	if err != nil {
		return err
	}

	const phase = "cluster1k"
	url := strings.Trim(natsURLs[0], `"`)
	cpu := func(ps []*proc) time.Duration {
		var d time.Duration
		for _, p := range ps {
			d += p.cpu()
		}
		return d
	}
	servers, relays := procs[:3], procs[3:6]
	return rounds(func() (clusterRound, error) {
		wh0, st0, err := jsqueue.StreamWrites(url, "")
		if err != nil {
			return clusterRound{}, fmt.Errorf("stream state: %w", err)
		}
		n0, r0, a0 := cpu(servers), cpu(relays), agent.cpu()
		tg.expect(phase, n)
		start := time.Now()
		if err := sendAcross(tg, ingress, phase, n, kib1); err != nil {
			return clusterRound{}, err
		}
		last, err := tg.wait(5 * time.Minute)
		if err != nil {
			return clusterRound{}, err
		}
		lat := tg.latencies()
		wh1, st1, err := jsqueue.StreamWrites(url, "")
		if err != nil {
			return clusterRound{}, fmt.Errorf("stream state: %w", err)
		}
		per := func(d time.Duration) time.Duration { return d / time.Duration(n) }
		return clusterRound{msgs: float64(wh1-wh0) / float64(n), states: float64(st1-st0) / float64(n),
			natsCPU: per(cpu(servers) - n0), relayCPU: per(cpu(relays) - r0), agentCPU: per(agent.cpu() - a0),
			cluster: burstResult{rate: float64(n) / last.Sub(start).Seconds(), p50: pct(lat, 50), p99: pct(lat, 99)}}, nil
	})
}

// tail is the last n lines of a log file.
func tail(path string, n int) string {
	b, _ := os.ReadFile(path)
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}

// sendAcross posts n webhooks from 16 senders, webhook i to urls[i%len(urls)].
func sendAcross(tg *target, urls []string, phase string, n int, body []byte) error {
	client := newClient()
	var next atomic.Int64
	var wg sync.WaitGroup
	errs := make(chan error, 16)
	for range 16 {
		wg.Go(func() {
			for {
				i := int(next.Add(1)) - 1
				if i >= n {
					return
				}
				tg.sentAt(i, time.Now())
				if err := post(client, urls[i%len(urls)]+"/"+phase, phase, i, body); err != nil {
					errs <- err
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	return <-errs
}

// startNATS starts a three-node JetStream cluster, nats-server built from the module's tool
// dependency (so nothing is downloaded), and returns its client URLs.
func startNATS(root, dir string) ([]string, []*proc, error) {
	cmd := exec.Command("go", "tool", "-n", "nats-server")
	cmd.Dir = root
	out, err := cmd.Output()
	if err != nil {
		return nil, nil, fmt.Errorf("go tool -n nats-server: %w", err)
	}
	bin := strings.TrimSpace(string(out))
	var ports, cports []int
	for range 3 {
		p, err := freePort()
		if err != nil {
			return nil, nil, err
		}
		c, err := freePort()
		if err != nil {
			return nil, nil, err
		}
		ports, cports = append(ports, p), append(cports, c)
	}
	var routes, urls []string
	for i := range 3 {
		routes = append(routes, fmt.Sprintf("nats-route://127.0.0.1:%d", cports[i]))
		urls = append(urls, fmt.Sprintf("%q", fmt.Sprintf("nats://127.0.0.1:%d", ports[i])))
	}
	var procs []*proc
	for i := range 3 {
		nd := filepath.Join(dir, fmt.Sprintf("n%d", i))
		if err := os.MkdirAll(nd, 0o700); err != nil {
			return nil, procs, fmt.Errorf("nats dir: %w", err)
		}
		// sync_interval: always, as docs/OPERATIONS.md recommends: every write fsynced.
		conf := fmt.Sprintf(`server_name: n%d
listen: 127.0.0.1:%d
jetstream {
  store_dir: %q
  sync_interval: always
}
cluster {
  name: hookbench
  listen: 127.0.0.1:%d
  routes: [%s]
}
`, i, ports[i], filepath.Join(nd, "js"), cports[i], strings.Join(routes, ", "))
		path := filepath.Join(nd, "nats.conf")
		if err := os.WriteFile(path, []byte(conf), 0o600); err != nil {
			return nil, procs, fmt.Errorf("write nats config: %w", err)
		}
		p, err := startProc(filepath.Join(nd, "nats.log"), bin, "-c", path)
		if err != nil {
			return nil, procs, err
		}
		procs = append(procs, p)
	}
	// A relay gives up when no server takes its connection, or JetStream stays unavailable
	// for a minute: start them once every server answers for JetStream (a meta leader exists).
	for i, port := range ports {
		err := waitFor(60*time.Second, 100*time.Millisecond, func() error {
			return jsqueue.ServerReady(fmt.Sprintf("nats://127.0.0.1:%d", port))
		})
		if err != nil {
			return nil, procs, fmt.Errorf("nats-server n%d not ready: %w; its log ends:\n%s", i, err,
				tail(filepath.Join(dir, fmt.Sprintf("n%d", i), "nats.log"), 10))
		}
	}
	return urls, procs, nil
}

// clusterLine is the table's line for the cluster shape, "" when it did not run.
func (r *results) clusterLine() string {
	c := r.cluster
	if c == nil || len(c.rounds) == 0 {
		return ""
	}
	var rounds []string
	for _, x := range c.rounds {
		rounds = append(rounds, fmt.Sprintf("%s delivered/s (e2e p50 %s / p99 %s ms) against %s (p50 %s ms), %.2f×",
			rate(x.cluster.rate), ms(x.cluster.p50), ms(x.cluster.p99), rate(x.single.rate), ms(x.single.p50), x.ratio()))
	}
	last := c.rounds[len(c.rounds)-1]
	x := c.ratio()
	return fmt.Sprintf("\nCluster (3 nats-server R3 with fsync always, 3 relays, 1 agent over ws; 16 senders across the "+
		"three relays), 1 KiB burst (%d), each round right after the same burst through one Badger relay (ws): %s; "+
		"mean %.2f× %s (goal ≥ %.1f×). Per webhook the stream took %.2f messages and the state bucket %.2f writes; "+
		"CPU per webhook, the three NATS servers / the three relays / the agent: %d / %d / %d µs.\n",
		c.n, strings.Join(rounds, "; "), x, mark(x >= goalCluster1k), goalCluster1k, last.msgs, last.states,
		last.natsCPU.Microseconds(), last.relayCPU.Microseconds(), last.agentCPU.Microseconds())
}
