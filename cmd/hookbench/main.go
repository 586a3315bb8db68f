// Command hookbench measures hookrelay against direct delivery in one run, on loopback: 1 KiB
// and 64 KiB bursts from 16 senders, paced 1 KiB latency, 10 MiB bodies with the peak RSS of
// relay and agent, idle agent sessions and a backlog accepted while the agent is away, over
// ws, wss and quic. It prints the table of issue 14 with ratios to direct and ✓/✗ per goal,
// and writes docs/BENCHMARKS.md and docs/benchmarks.png. Run it from the module:
//
//	go run ./cmd/hookbench            # default sizes, a few minutes on 2 cores
//	go run ./cmd/hookbench -quick     # small sizes, under a minute
//	go run ./cmd/hookbench -idle 10000 -backlog 1000000   # the full idle and backlog goals
package main

import (
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"
)

func main() {
	if err := mainErr(os.Args[1:], os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "hookbench:", err)
		os.Exit(1)
	}
}

func mainErr(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("hookbench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	quick := fs.Bool("quick", false, "small sizes (under a minute): 3000 / 300 bursts, 3s paced, 200 idle agents, 5000 backlog, 2000 cluster")
	o := options{}
	fs.IntVar(&o.n1k, "n1k", 20000, "webhooks in the 1 KiB burst")
	fs.IntVar(&o.n64k, "n64k", 2000, "webhooks in the 64 KiB burst")
	fs.DurationVar(&o.paced, "paced", 10*time.Second, "duration of the paced 100/s shape")
	fs.IntVar(&o.large, "large", 3, "10 MiB webhooks, one after the other")
	fs.IntVar(&o.idle, "idle", 1000, "idle agent sessions, ws and quic (the goal is for 10000); 0 skips")
	fs.IntVar(&o.backlog, "backlog", 50000, "1 KiB webhooks accepted while the agent is away (the goal is for 1000000); 0 skips")
	fs.IntVar(&o.cluster, "cluster", 10000, "1 KiB webhooks in the cluster burst (3 nats-server, 3 relays on JetStream, 1 agent); 0 skips")
	fs.IntVar(&o.sustained, "sustained", 3, "more 1 KiB bursts (of -n1k) on the ws relay and agent after its shapes; 0 skips")
	transports := fs.String("transports", "ws,wss,quic", "relayed transports, comma-separated")
	out := fs.String("out", "docs", "directory for BENCHMARKS.md and benchmarks.png, relative to the module root; empty: write nothing")
	fs.BoolVar(&o.keep, "keep", false, "keep the work directory (configs, logs, stores)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *quick {
		set := map[string]bool{}
		fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
		apply := func(name string, f func()) {
			if !set[name] {
				f()
			}
		}
		apply("n1k", func() { o.n1k = 3000 })
		apply("n64k", func() { o.n64k = 300 })
		apply("paced", func() { o.paced = 3 * time.Second })
		apply("idle", func() { o.idle = 200 })
		apply("backlog", func() { o.backlog = 5000 })
		apply("cluster", func() { o.cluster = 2000 })
		apply("sustained", func() { o.sustained = 1 })
	}
	for _, t := range strings.Split(*transports, ",") {
		switch t = strings.TrimSpace(t); t {
		case "ws", "wss", "quic":
			o.transports = append(o.transports, t)
		case "":
		default:
			return fmt.Errorf("unknown transport %q (ws, wss, quic)", t)
		}
	}
	r, err := run(o, stderr)
	if err != nil {
		return err
	}
	fmt.Fprint(stdout, r.table())
	if *out == "" {
		return nil
	}
	root, err := moduleRoot()
	if err != nil {
		return err
	}
	dir := *out
	if !filepath.IsAbs(dir) {
		dir = filepath.Join(root, dir)
	}
	command := strings.TrimSpace("go run ./cmd/hookbench " + strings.Join(args, " "))
	if err := writeDocs(r, dir, command); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "wrote %s and %s\n", filepath.Join(dir, "BENCHMARKS.md"), filepath.Join(dir, "benchmarks.png"))
	return nil
}
