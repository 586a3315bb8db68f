package main

import (
	"cmp"
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"time"
)

// options are the sizes of one run.
type options struct {
	n1k, n64k, large int
	paced            time.Duration
	idle, backlog    int
	transports       []string // relayed: ws, wss, quic
	keep             bool     // keep the work directory (logs, stores)
	cluster          int      // 1 KiB webhooks in the cluster burst (cluster.go); 0 skips
	sustained        int      // rounds of the sustained shape (sustained.go); 0 skips
}

// rss is a pair of peak RSS figures in MiB.
type rss struct{ relay, agent float64 }

type backlogResult struct {
	n            int
	acceptRate   float64 // accepted/s with no agent
	relayPeakMiB float64 // during the accept
	drainPeakMiB float64 // the relay's, during the drain
	drainRate    float64 // delivered/s once the agent connected
	drainCPU     cpuUse  // per webhook, over the drain
}

// cpuUse is CPU time of relay and agent.
type cpuUse struct{ relay, agent time.Duration }

// results are every figure of one run, by column: "discard" (direct to a target that discards
// the body), "direct" (direct to the durable target every relayed column delivers to: the
// baseline of every ratio), then the transports.
type results struct {
	opts      options
	columns   []string
	burst1k   map[string]burstResult
	burst64k  map[string]burstResult
	paced     map[string]burstResult
	large     map[string]float64
	peak64k   map[string]rss
	peakLarge map[string]rss
	agentIdle map[string]float64 // agent VmRSS MiB after connecting, before any load
	agentPeak map[string]float64 // agent VmHWM MiB, highest over every shape
	cpu1k     map[string]cpuUse  // CPU per webhook over the 1 KiB burst
	idle      map[string]idleResult
	backlog   map[string]backlogResult
	agentSize int64
	cluster   *clusterResult // nil: not run
	sustained []sustainedRound
	disk      diskResult
	took      time.Duration
}

func newResults(o options) *results {
	return &results{opts: o, columns: append([]string{"discard", "direct"}, o.transports...),
		burst1k: map[string]burstResult{}, burst64k: map[string]burstResult{}, paced: map[string]burstResult{},
		large: map[string]float64{}, peak64k: map[string]rss{}, peakLarge: map[string]rss{},
		agentIdle: map[string]float64{}, agentPeak: map[string]float64{}, cpu1k: map[string]cpuUse{}, idle: map[string]idleResult{},
		backlog: map[string]backlogResult{}}
}

// run builds the binaries and measures every shape, direct and over each transport, logging
// progress to log.
func run(o options, log io.Writer) (*results, error) {
	start := time.Now()
	root, err := moduleRoot()
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "hookbench-")
	if err != nil {
		return nil, fmt.Errorf("work dir: %w", err)
	}
	if o.keep {
		fmt.Fprintf(log, "work directory (kept): %s\n", dir)
	} else {
		defer os.RemoveAll(dir)
	}
	fmt.Fprintln(log, "building hookrelay and hookagent …")
	b, err := build(context.Background(), root, filepath.Join(dir, "bin"))
	if err != nil {
		return nil, err
	}
	discard, err := newTarget("")
	if err != nil {
		return nil, err
	}
	defer discard.close()
	tg, err := newTarget(filepath.Join(dir, "target.store"))
	if err != nil {
		return nil, err
	}
	defer tg.close()
	r := newResults(o)
	r.agentSize = b.agentSize
	fmt.Fprintln(log, "disk …")
	if r.disk, err = measureDisk(dir); err != nil {
		return nil, err
	}

	fmt.Fprintln(log, "direct …")
	if err := shapes(r, "discard", discard, discard.url, nil); err != nil {
		return nil, err
	}
	if err := shapes(r, "direct", tg, tg.url, nil); err != nil {
		return nil, err
	}
	for _, tr := range o.transports {
		fmt.Fprintf(log, "%s …\n", tr)
		wdir := filepath.Join(dir, tr)
		if err := os.MkdirAll(wdir, 0o700); err != nil {
			return nil, fmt.Errorf("work dir: %w", err)
		}
		if err := relayed(r, b, tr, wdir, tg); err != nil {
			return nil, fmt.Errorf("%s: %w (logs in %s)", tr, err, wdir)
		}
	}
	if err := runCluster(r, b, root, dir, tg, log); err != nil {
		return nil, err
	}
	if n := tg.failed.Load(); n > 0 {
		return nil, fmt.Errorf("the durable target failed to store %d webhooks (disk full?)", n)
	}
	r.took = time.Since(start)
	return r, nil
}

// relayed runs every shape over one transport: the bursts, paced and large bodies with the
// agent connected; then, each on a fresh relay, the idle agents (ws and quic) and the
// backlog accepted with the agent away (ws only).
func relayed(r *results, b bins, tr, dir string, tg *target) error {
	w, err := startRelay(b, tr, dir, tg)
	if err != nil {
		return err
	}
	defer w.close()
	if err := w.startAgent(); err != nil {
		return err
	}
	if err := w.warm(); err != nil {
		return err
	}
	r.agentIdle[tr] = float64(w.agent.status("VmRSS")) / 1024
	if err := shapes(r, tr, tg, w.ingress(), w); err != nil {
		return err
	}
	if tr == "ws" && r.opts.sustained > 0 {
		if err := sustainedBursts(r, w, r.opts.sustained, r.opts.n1k); err != nil {
			return err
		}
	}
	w.close()
	if r.opts.idle > 0 && tr != "wss" {
		err := onFresh(b, tr, filepath.Join(dir, "idle"), tg, func(w *world) (err error) {
			r.idle[tr], err = idleAgents(w, r.opts.idle)
			return err
		})
		if err != nil {
			return err
		}
	}
	if tr != "ws" {
		return nil
	}
	if r.opts.backlog > 0 {
		return onFresh(b, tr, filepath.Join(dir, "backlog"), tg, func(w *world) (err error) {
			r.backlog[tr], err = backlog(w, r.opts.backlog)
			return err
		})
	}
	return nil
}

// onFresh runs f on a relay of its own (no agent started), so that what other shapes left in
// a relay's memory does not count in f's figures.
func onFresh(b bins, tr, dir string, tg *target, f func(*world) error) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("work dir: %w", err)
	}
	w, err := startRelay(b, tr, dir, tg)
	if err != nil {
		return err
	}
	defer w.close()
	return f(w)
}

// shapes runs the bursts, paced and large shapes against url; with a world, it also records
// the peak RSS of relay and agent over each shape.
func shapes(r *results, col string, tg *target, url string, w *world) error {
	var err error
	measure := func(f func() error) (rss, error) {
		if w != nil {
			w.relay.resetPeak()
			w.agent.resetPeak()
		}
		if err := f(); err != nil {
			return rss{}, err
		}
		if w == nil {
			return rss{}, nil
		}
		p := rss{w.relay.peakMiB(), w.agent.peakMiB()}
		r.agentPeak[col] = max(r.agentPeak[col], p.agent)
		return p, nil
	}
	var before cpuUse
	if w != nil {
		before = cpuUse{w.relay.cpu(), w.agent.cpu()}
	}
	if _, err = measure(func() (err error) {
		r.burst1k[col], err = burstOf(w == nil, tg, url, "burst1k", r.opts.n1k, kib1)
		return err
	}); err != nil {
		return err
	}
	if w != nil {
		n := time.Duration(r.opts.n1k)
		r.cpu1k[col] = cpuUse{(w.relay.cpu() - before.relay) / n, (w.agent.cpu() - before.agent) / n}
	}
	if r.peak64k[col], err = measure(func() (err error) {
		r.burst64k[col], err = burstOf(w == nil, tg, url, "burst64k", r.opts.n64k, kib64)
		return err
	}); err != nil {
		return err
	}
	if _, err = measure(func() (err error) {
		r.paced[col], err = paced(tg, url, 100, r.opts.paced)
		return err
	}); err != nil {
		return err
	}
	r.peakLarge[col], err = measure(func() (err error) {
		r.large[col], err = large(tg, url, r.opts.large)
		return err
	})
	return err
}

// backlog stops the agent (if any), has the relay accept n 1 KiB webhooks (its peak RSS over the
// accept is recorded), then starts the agent and times the drain (and the relay's peak over it).
func backlog(w *world, n int) (backlogResult, error) {
	w.agent.stop()
	w.relay.resetPeak()
	tg := w.target
	tg.expect("backlog", n)
	start := time.Now()
	if err := send(tg, w.ingress()+"/backlog", "backlog", n, 16, kib1); err != nil {
		return backlogResult{}, err
	}
	res := backlogResult{n: n, acceptRate: float64(n) / time.Since(start).Seconds(), relayPeakMiB: w.relay.peakMiB()}
	w.relay.resetPeak()
	drain := time.Now()
	relayCPU := w.relay.cpu()
	if err := w.startAgent(); err != nil {
		return backlogResult{}, err
	}
	last, err := tg.wait(30 * time.Minute)
	if err != nil {
		return backlogResult{}, err
	}
	res.drainRate = float64(n) / last.Sub(drain).Seconds()
	res.drainPeakMiB = w.relay.peakMiB()
	res.drainCPU = cpuUse{(w.relay.cpu() - relayCPU) / time.Duration(n), w.agent.cpu() / time.Duration(n)}
	return res, nil
}

// burstOf runs a burst; direct (over in a fraction of a second, so at the mercy of whatever
// else the machine does in that moment) runs it three times and keeps the median by rate.
func burstOf(direct bool, tg *target, url, phase string, n int, body []byte) (burstResult, error) {
	if !direct {
		return burst(tg, url, phase, n, body)
	}
	var runs []burstResult
	for range 3 {
		b, err := burst(tg, url, phase, n, body)
		if err != nil {
			return burstResult{}, err
		}
		runs = append(runs, b)
	}
	slices.SortFunc(runs, func(a, b burstResult) int { return cmp.Compare(a.rate, b.rate) })
	return runs[1], nil
}
