//go:build linux

package e2e

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net/http"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/time/rate"
)

// Soak sizes: the webhook count is the issue's; the pace spreads it over the chaos schedule
// (about three minutes on a 2-core machine).
const (
	soakWebhooks = 20000
	soakSenders  = 8
	soakPerSec   = 110
	soakCut      = 20 * time.Second
	soakGap      = 8 * time.Second // between the end of one chaos event and the next
	soakSettle   = 60 * time.Second
	soakAgentID  = "soak-agent"
	soakEndpoint = "soak"
)

// soakWorld is a relay in one network namespace and an agent with its target in another,
// joined by a veth pair; the test process sends, reads the admin API and serves the target
// from inside those namespaces.
type soakWorld struct {
	t            *testing.T
	ns           *nsPair
	relay, agent *proc
	target       *soakTarget
	admin        relayAdmin
	base         string // http://relayIP:8080
}

func newSoakWorld(t *testing.T) *soakWorld {
	ns := newNSPair(t)
	dir := t.TempDir()
	w := &soakWorld{t: t, ns: ns, target: newSoakTarget(0), base: fmt.Sprintf("http://%s:8080", ns.relayIP)}

	l := nsListen(t, ns.agentNS, "127.0.0.1:0")
	srv := &http.Server{Handler: w.target}
	go srv.Serve(l)
	t.Cleanup(func() { srv.Close() })

	token, hash := newToken(t)
	adminToken, adminHash := newToken(t)
	w.admin = relayAdmin{client: nsClient(ns.relayNS, 30*time.Second), base: w.base, token: adminToken}
	relayCfg := writeFile(t, filepath.Join(dir, "relay.yaml"), fmt.Sprintf(`addr: %s:8080
data_dir: %s
admin_token: %q
keep_done_max: 100000
endpoints:
  - name: %s
    tokens: [%q]
    quota: 64MiB
`, ns.relayIP, filepath.Join(dir, "relay-data"), adminHash, soakEndpoint, hash))
	agentCfg := writeFile(t, filepath.Join(dir, "agent.yaml"), fmt.Sprintf(`relay: ws://%s:8080
token: %q
agent_id: %s
data_dir: %s
admin_addr: 127.0.0.1:0
routes:
  - endpoint: %s
    target: http://%s/t
    concurrency: 16
    backoff_min: 50ms
    backoff_max: 1s
`, ns.relayIP, token, soakAgentID, filepath.Join(dir, "agent-data"), soakEndpoint, l.Addr()))
	w.relay = nsProc(t, "relay", ns.relayNS, bin.relay, "serve", "--config", relayCfg)
	w.agent = nsProc(t, "agent", ns.agentNS, bin.agent, "run", "--config", agentCfg)
	w.relay.start()
	checkExec(t, w.relay, bin.relay)
	if err := w.waitRelay(20 * time.Second); err != nil {
		t.Fatal(err)
	}
	w.agent.start()
	checkExec(t, w.agent, bin.agent)
	if err := w.waitAgent(0, 30*time.Second); err != nil {
		t.Fatal(err)
	}
	return w
}

// waitRelay waits until the relay answers /readyz.
func (w *soakWorld) waitRelay(total time.Duration) error {
	return poll(total, func() error {
		var s string
		code, err := w.admin.get("/readyz", &s)
		if err == nil && code != 200 {
			err = fmt.Errorf("readyz %d", code)
		}
		return err
	})
}

// waitAgent waits until the agent has logged more sessions up than before and the relay
// lists it: the restarted (or reconnected) agent is back in business.
func (w *soakWorld) waitAgent(before int, total time.Duration) error {
	return poll(total, func() error {
		if n := tunnelUps(w.agent); n <= before {
			return fmt.Errorf("the agent has logged no new session (%d so far)", n)
		}
		return w.admin.agentConnected(soakAgentID)
	})
}

// poll is testutil.CheckFor for goroutines other than the test's: it returns the last error.
func poll(total time.Duration, fn func() error) error {
	deadline := time.Now().Add(total)
	for {
		err := fn()
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("after %v: %w", total, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// chaos is one event of the schedule, done by run.
type chaos struct {
	kind string // "agent", "relay" (kill -9, then start again), "cut"
	at   time.Time
}

// soakChaos runs the schedule: kill -9 of the agent and of the relay five times each, and two
// network cuts of soakCut, each after the previous one is over and everything reconnected.
// It returns the events (with when each crash happened) and the first error that kept a
// process from coming back.
func (w *soakWorld) soakChaos(ctx context.Context, accepted func() int) ([]chaos, error) {
	kinds := []string{"agent", "relay", "cut", "agent", "relay", "agent", "relay", "cut", "agent", "relay", "agent", "relay"}
	var done []chaos
	start := time.Now()
	for i, kind := range kinds {
		pause(ctx, soakGap)
		if ctx.Err() != nil {
			return done, nil
		}
		ev := chaos{kind: kind, at: time.Now()}
		before := tunnelUps(w.agent)
		w.t.Logf("chaos %d at %v: %s (%d accepted)", i+1, time.Since(start).Round(time.Second), kind, accepted())
		switch kind {
		case "agent":
			w.agent.kill()
			pause(ctx, time.Duration(200+rand.IntN(1800))*time.Millisecond)
			w.agent.start()
		case "relay":
			w.relay.kill()
			pause(ctx, time.Duration(200+rand.IntN(1800))*time.Millisecond)
			w.relay.start()
			if err := w.waitRelay(30 * time.Second); err != nil {
				return append(done, ev), fmt.Errorf("relay not back after kill -9 (event %d): %w", i+1, err)
			}
		case "cut":
			if err := w.ns.cut(); err != nil {
				return done, err
			}
			pause(ctx, soakCut)
			if err := w.ns.heal(); err != nil {
				return done, err
			}
			before = -1 // the session may or may not have noticed the cut: any session will do
		}
		done = append(done, ev)
		if err := w.waitAgent(before, 60*time.Second); err != nil {
			return done, fmt.Errorf("agent not connected again after %s (event %d): %w", kind, i+1, err)
		}
	}
	return done, nil
}

// TestSoak: 20,000 webhooks from 8 senders while the agent and the relay are each killed
// with SIGKILL five times and the network between them is cut twice for 20 s (packets
// dropped, no FIN). Every accepted webhook reaches the target byte-exact, a second time
// only after a crash; within 60 s of the end the relay's admin API shows every one
// delivered and the endpoint's queue (its quota usage) is empty.
func TestSoak(t *testing.T) {
	needSoak(t)
	w := newSoakWorld(t)
	s := newSoakSender(nsClient(w.ns.relayNS, 30*time.Second), w.base+"/h/"+soakEndpoint)
	began := time.Now()

	// The senders get 90 s more once the chaos is over (when they are done sooner, the
	// chaos goes on without them); then whatever was not accepted counts as never accepted.
	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Minute)
	defer cancel()
	sendCtx, stopSending := context.WithCancel(ctx)
	defer stopSending()
	var senders sync.WaitGroup
	var next, never atomic.Int64
	lim := rate.NewLimiter(soakPerSec, soakSenders)
	for range soakSenders {
		senders.Go(func() {
			for seq := int(next.Add(1)); seq <= soakWebhooks; seq = int(next.Add(1)) {
				if lim.Wait(sendCtx) != nil || !s.post(sendCtx, seq) {
					never.Add(1)
				}
			}
		})
	}
	sendersDone := make(chan struct{})
	go func() { senders.Wait(); close(sendersDone) }()
	events, chaosErr := w.soakChaos(ctx, func() int { return len(s.accepted()) })
	select {
	case <-sendersDone:
	case <-time.After(90 * time.Second):
		stopSending()
		<-sendersDone
	}
	end := time.Now()
	acc := s.accepted()
	t.Logf("sent for %v: %d accepted; %s", end.Sub(began).Round(time.Second), len(acc), s.summary())
	if chaosErr != nil {
		t.Errorf("chaos: %v", chaosErr)
	}
	if n := never.Load(); n > 0 {
		t.Errorf("%d of %d webhooks were never accepted (the senders retried until %v)", n, soakWebhooks, end.Sub(began).Round(time.Second))
	}
	if len(events) != 12 {
		t.Errorf("the chaos schedule ran %d of 12 events", len(events))
	}

	w.settle(acc, end)
	w.target.mu.Lock()
	if w.target.badN > 0 {
		t.Errorf("%d deliveries were not byte-exact, first: %s", w.target.badN, strings.Join(w.target.bad, "; "))
	}
	w.target.mu.Unlock()
	unknown := w.target.checkUnknown(t, s)
	dups, late := w.checkDuplicates(events)
	w.target.mu.Lock()
	t.Logf("%d deliveries of %d accepted ids (+%d ids stored from attempts of unknown outcome); %d repeated deliveries, %d of them without a crash between",
		len(w.target.arrivals), len(acc), unknown, dups, late)
	w.target.mu.Unlock()
}

// settle waits up to soakSettle after end for: every accepted id at the target, every one
// delivered on the relay, and the endpoint's pending count and bytes at zero. It fails with
// what is still wrong then.
func (w *soakWorld) settle(acc []accepted, end time.Time) {
	t := w.t
	confirmed := map[string]bool{}
	var last string
	for {
		missing := w.target.missing(acc)
		var ask []string
		for _, a := range acc {
			if !confirmed[a.id] {
				ask = append(ask, a.id)
			}
		}
		byState := map[string][]string{}
		for id, st := range w.admin.states(ask) {
			if st == "delivered" {
				confirmed[id] = true
				continue
			}
			byState[st] = append(byState[st], id)
		}
		pending, perr := w.admin.gauge("hookrelay_queue_pending", soakEndpoint)
		bytes, berr := w.admin.gauge("hookrelay_queue_bytes", soakEndpoint)
		if len(missing) == 0 && len(byState) == 0 && perr == nil && berr == nil && pending == 0 && bytes == 0 {
			t.Logf("settled %v after the end", time.Since(end).Round(100*time.Millisecond))
			return
		}
		last = fmt.Sprintf("%d of %d accepted ids have not reached the target (e.g. %s); relay states of the %d not delivered there: %s; queue gauges: pending %v (%v), bytes %v (%v)",
			len(missing), len(acc), sample(missing), len(acc)-len(confirmed), stateSummary(byState), pending, perr, bytes, berr)
		if time.Since(end) > soakSettle {
			break
		}
		time.Sleep(time.Second)
	}
	t.Errorf("%v after the end: %s", soakSettle, last)
	for _, st := range []string{"accepted", "sent", "acked", "dead"} {
		n, err := w.admin.listCount(soakEndpoint, st)
		t.Logf("relay lists %d webhooks %s (%v)", n, st, err)
	}
}

// checkDuplicates fails for every repeated delivery of an id without an agent or relay
// crash between its first delivery (less 10 s: a request already sent when the agent died
// may be read later) and the repeat. It returns the repeats and those that failed.
func (w *soakWorld) checkDuplicates(events []chaos) (dups, late int) {
	var crashes []time.Time
	for _, e := range events {
		if e.kind != "cut" {
			crashes = append(crashes, e.at)
		}
	}
	return checkRepeats(w.t, w.target, crashes)
}

// checkRepeats fails for every repeated delivery at tg of an id without one of crashes
// between its first delivery (less 10 s) and the repeat. It returns the repeats and those
// that failed.
func checkRepeats(t *testing.T, tg *soakTarget, crashes []time.Time) (dups, late int) {
	tg.mu.Lock()
	defer tg.mu.Unlock()
	var bad []string
	for id, idx := range tg.byID {
		first := tg.arrivals[idx[0]].at
		for _, i := range idx[1:] {
			dups++
			again := tg.arrivals[i].at
			if !slices.ContainsFunc(crashes, func(c time.Time) bool { return !c.Before(first.Add(-10*time.Second)) && c.Before(again) }) {
				late++
				bad = append(bad, fmt.Sprintf("%s at +%v", id, again.Sub(first).Round(time.Millisecond)))
			}
		}
	}
	if late > 0 {
		sort.Strings(bad)
		t.Errorf("%d repeated deliveries with no crash in between (e.g. %s)", late, sample(bad))
	}
	return dups, late
}

func sample(ids []string) string {
	if len(ids) > 5 {
		return strings.Join(ids[:5], ", ") + ", …"
	}
	return strings.Join(ids, ", ")
}

func stateSummary(by map[string][]string) string {
	if len(by) == 0 {
		return "none"
	}
	var parts []string
	for st, ids := range by {
		parts = append(parts, fmt.Sprintf("%s: %d (e.g. %s)", st, len(ids), sample(ids)))
	}
	sort.Strings(parts)
	return strings.Join(parts, "; ")
}
