package main

import (
	"fmt"
	"strings"
	"time"
)

// The sustained shape: the 1 KiB burst again and again on one relay and agent (ws), each
// after 2 s of rest. Both keep what they delivered (keep_done), so later bursts run on
// stores that hold every earlier one: the first burst's rate is not the rate a busy
// endpoint keeps.

type sustainedRound struct {
	burst burstResult
	cpu   cpuUse // per webhook
}

// sustainedBursts runs rounds bursts of n on w into r.sustained.
func sustainedBursts(r *results, w *world, rounds, n int) error {
	for i := range rounds {
		if i > 0 {
			time.Sleep(2 * time.Second)
		}
		r0, a0 := w.relay.cpu(), w.agent.cpu()
		b, err := burst(w.target, w.ingress(), "sustained", n, kib1)
		if err != nil {
			return fmt.Errorf("sustained round %d: %w", i+1, err)
		}
		d := time.Duration(n)
		r.sustained = append(r.sustained, sustainedRound{b, cpuUse{(w.relay.cpu() - r0) / d, (w.agent.cpu() - a0) / d}})
	}
	return nil
}

// sustainedLine is the table's line for the sustained shape, "" when it did not run.
func (r *results) sustainedLine() string {
	if len(r.sustained) == 0 {
		return ""
	}
	var rounds []string
	for _, x := range r.sustained {
		rounds = append(rounds, fmt.Sprintf("%s/s (p50 %s ms; %d / %d µs)", rate(x.burst.rate), ms(x.burst.p50),
			x.cpu.relay.Microseconds(), x.cpu.agent.Microseconds()))
	}
	return fmt.Sprintf("\nSustained (ws): %d more 1 KiB bursts of %d on the relay and agent of the ws column, 2 s apart "+
		"(delivered/s; e2e p50; CPU per webhook, relay / agent): %s.\n", len(r.sustained), r.opts.n1k,
		strings.Join(rounds, ", "))
}
