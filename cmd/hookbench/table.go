package main

import (
	"fmt"
	"strings"
)

// Goals of issue 14, each figure checked against the direct figure of the same run.
const (
	goalBurst1k    = 0.4  // × direct
	goalBurst64k   = 0.85 // × direct
	goalP50x64k    = 3.0  // e2e p50 within this many times direct's
	goalPacedP50   = 1.0  // ms
	goalPacedP99   = 3.0  // ms
	goalLargeX     = 1.5  // p50 × direct
	goalRSS        = 64.0 // MiB, each side, 10 MiB bodies; agent under every shape
	goalAgentIdle  = 24.0 // MiB
	goalBinaryMB   = 24.0 // MB, stripped agent
	goalIdleKiB    = 32.0 // relay RSS per idle agent
	goalIdleSecs   = 30.0 // to connect them all (the goal is for 10,000)
	goalBacklogMiB = 128.0
	goalDrainX     = 0.5 // × direct 1 KiB burst rate
)

func mark(ok bool) string {
	if ok {
		return "✓"
	}
	return "✗"
}

func rate(v float64) string {
	switch {
	case v >= 10000:
		return fmt.Sprintf("%.1fk", v/1000)
	case v >= 1000:
		return fmt.Sprintf("%.2fk", v/1000)
	}
	return fmt.Sprintf("%.0f", v)
}

func ms(v float64) string {
	switch {
	case v < 10:
		return fmt.Sprintf("%.2f", v)
	case v < 100:
		return fmt.Sprintf("%.1f", v)
	}
	return fmt.Sprintf("%.0f", v)
}

func ratio(v, base float64) float64 {
	if base == 0 {
		return 0
	}
	return v / base
}

// table renders the results as a Markdown table: one row per shape, one column per transport,
// every relayed figure with its ratio to direct and ✓/✗ for the goals it answers.
func (r *results) table() string {
	var sb strings.Builder
	sb.WriteString("| shape | " + strings.Join(r.columnNames(), " | ") + " |\n|---|")
	sb.WriteString(strings.Repeat("---|", len(r.columns)) + "\n")
	row := func(name string, cell func(col string) string) {
		cells := []string{name}
		for _, c := range r.columns {
			v := cell(c)
			if v == "" {
				v = "—"
			}
			cells = append(cells, v)
		}
		sb.WriteString("| " + strings.Join(cells, " | ") + " |\n")
	}
	d1k, d64k := r.burst1k["direct"], r.burst64k["direct"]
	row(fmt.Sprintf("1 KiB burst (%d), 16 senders, delivered/s", r.opts.n1k), func(c string) string {
		v := r.burst1k[c]
		if isDirect(c) {
			return rate(v.rate)
		}
		x := ratio(v.rate, d1k.rate)
		return fmt.Sprintf("%s (%.2f×) %s", rate(v.rate), x, mark(x >= goalBurst1k))
	})
	row("CPU per webhook over the 1 KiB burst, relay / agent µs", func(c string) string {
		if isDirect(c) {
			return ""
		}
		u := r.cpu1k[c]
		return fmt.Sprintf("%d / %d", u.relay.Microseconds(), u.agent.Microseconds())
	})
	row(fmt.Sprintf("64 KiB burst (%d), delivered/s; e2e p50 ms", r.opts.n64k), func(c string) string {
		v := r.burst64k[c]
		if isDirect(c) {
			return fmt.Sprintf("%s; p50 %s", rate(v.rate), ms(v.p50))
		}
		x, px := ratio(v.rate, d64k.rate), ratio(v.p50, d64k.p50)
		return fmt.Sprintf("%s (%.2f×) %s; p50 %s (%.1f×) %s", rate(v.rate), x, mark(x >= goalBurst64k),
			ms(v.p50), px, mark(px <= goalP50x64k))
	})
	row(fmt.Sprintf("paced 100/s 1 KiB (%v), e2e p50 / p99 ms; answered p50 ms", r.opts.paced), func(c string) string {
		v := r.paced[c]
		if isDirect(c) {
			return fmt.Sprintf("%s / %s; %s", ms(v.p50), ms(v.p99), ms(v.answered))
		}
		return fmt.Sprintf("%s / %s %s; %s", ms(v.p50), ms(v.p99), mark(v.p50 <= goalPacedP50 && v.p99 <= goalPacedP99),
			ms(v.answered))
	})
	row(fmt.Sprintf("%d × 10 MiB, p50 ms; peak RSS relay / agent MiB", r.opts.large), func(c string) string {
		v := r.large[c]
		if isDirect(c) {
			return ms(v)
		}
		x, p := ratio(v, r.large["direct"]), r.peakLarge[c]
		return fmt.Sprintf("%s (%.1f×) %s; %.0f / %.0f %s", ms(v), x, mark(x <= goalLargeX), p.relay, p.agent,
			mark(p.relay <= goalRSS && p.agent <= goalRSS))
	})
	row("peak RSS over the 64 KiB burst, relay / agent MiB", func(c string) string {
		if isDirect(c) {
			return ""
		}
		p := r.peak64k[c]
		return fmt.Sprintf("%.0f / %.0f %s", p.relay, p.agent, mark(p.agent <= goalRSS))
	})
	row("agent RSS idle / peak over every shape, MiB", func(c string) string {
		if isDirect(c) {
			return ""
		}
		return fmt.Sprintf("%.1f %s / %.0f %s", r.agentIdle[c], mark(r.agentIdle[c] <= goalAgentIdle),
			r.agentPeak[c], mark(r.agentPeak[c] <= goalRSS))
	})
	row(fmt.Sprintf("%d idle agents: relay RSS KiB each; all connected in s; relay CPU idle", r.opts.idle), func(c string) string {
		v, ok := r.idle[c]
		if !ok {
			return ""
		}
		return fmt.Sprintf("%.1f %s; %.2f %s; %.0f%%", v.perAgentKB, mark(v.perAgentKB <= goalIdleKiB),
			v.connect.Seconds(), mark(v.connect.Seconds() <= goalIdleSecs), v.cpuPct)
	})
	row(fmt.Sprintf("backlog %d × 1 KiB: accepted/s; relay peak MiB, accepting / draining; drained/s; CPU per webhook drained, relay / agent µs", r.opts.backlog), func(c string) string {
		v, ok := r.backlog[c]
		if !ok {
			return ""
		}
		x := ratio(v.drainRate, d1k.rate)
		return fmt.Sprintf("%s; %.0f %s / %.0f %s; %s (%.2f×) %s; %d / %d", rate(v.acceptRate),
			v.relayPeakMiB, mark(v.relayPeakMiB <= goalBacklogMiB), v.drainPeakMiB,
			mark(v.drainPeakMiB <= goalBacklogMiB), rate(v.drainRate), x, mark(x >= goalDrainX),
			v.drainCPU.relay.Microseconds(), v.drainCPU.agent.Microseconds())
	})
	sb.WriteString(r.sustainedLine())
	sb.WriteString(r.clusterLine())
	sb.WriteString(r.disk.line())
	mb := float64(r.agentSize) / 1e6
	fmt.Fprintf(&sb, "\nStripped hookagent binary: %.1f MB %s (goal ≤ %.0f MB). Run took %s.\n", mb,
		mark(mb <= goalBinaryMB), goalBinaryMB, r.took.Round(1e9))
	return sb.String()
}

// isDirect reports whether column c has the senders post straight to a target.
func isDirect(c string) bool { return c == "direct" || c == "discard" }

func (r *results) columnNames() []string {
	var names []string
	for _, c := range r.columns {
		switch c {
		case "discard":
			names = append(names, "direct, discarding target")
		case "direct":
			names = append(names, "direct, durable target")
		default:
			names = append(names, "hookrelay "+c)
		}
	}
	return names
}
