package main

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// target is the local HTTP server every shape delivers to, directly or through the relay. It
// keeps, for the current phase, when each sequence number was sent and when it arrived; a
// request of another phase (a warm-up, a late duplicate) is answered and not counted.
type target struct {
	url    string
	srv    *http.Server
	warmed atomic.Int64

	mu    sync.Mutex
	phase string
	sent  []time.Time
	got   []time.Time
	count int
	last  time.Time
	done  chan struct{}
}

func newTarget() (*target, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("target listen: %w", err)
	}
	tg := &target{url: "http://" + ln.Addr().String() + "/base", done: make(chan struct{})}
	tg.srv = &http.Server{Handler: tg, ReadHeaderTimeout: 10 * time.Second}
	go tg.srv.Serve(ln) // ends when close shuts the server down
	return tg, nil
}

func (tg *target) close() { tg.srv.Close() }

func (tg *target) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	io.Copy(io.Discard, r.Body)
	now := time.Now()
	phase := r.Header.Get("X-Phase")
	seq, err := strconv.Atoi(r.Header.Get("X-Seq"))
	if phase == "warm" {
		tg.warmed.Add(1)
	}
	tg.mu.Lock()
	if err == nil && phase == tg.phase && seq >= 0 && seq < len(tg.got) && tg.got[seq].IsZero() {
		tg.got[seq] = now
		tg.count++
		tg.last = now
		if tg.count == len(tg.got) {
			close(tg.done)
		}
	}
	tg.mu.Unlock()
	w.WriteHeader(http.StatusOK)
}

// expect starts a phase of n webhooks.
func (tg *target) expect(phase string, n int) {
	tg.mu.Lock()
	defer tg.mu.Unlock()
	tg.phase, tg.sent, tg.got, tg.count = phase, make([]time.Time, n), make([]time.Time, n), 0
	tg.done = make(chan struct{})
	if n == 0 {
		close(tg.done)
	}
}

func (tg *target) sentAt(seq int, t time.Time) {
	tg.mu.Lock()
	tg.sent[seq] = t
	tg.mu.Unlock()
}

// wait waits until every webhook of the phase arrived, and returns when the last one did.
func (tg *target) wait(timeout time.Duration) (time.Time, error) {
	tg.mu.Lock()
	done := tg.done
	tg.mu.Unlock()
	select {
	case <-done:
	case <-time.After(timeout):
		tg.mu.Lock()
		defer tg.mu.Unlock()
		return time.Time{}, fmt.Errorf("phase %s: only %d of %d webhooks reached the target within %v",
			tg.phase, tg.count, len(tg.got), timeout)
	}
	tg.mu.Lock()
	defer tg.mu.Unlock()
	return tg.last, nil
}

// latencies returns the sorted send → arrival times of the phase.
func (tg *target) latencies() []time.Duration {
	tg.mu.Lock()
	defer tg.mu.Unlock()
	var d []time.Duration
	for i := range tg.got {
		if !tg.got[i].IsZero() && !tg.sent[i].IsZero() {
			d = append(d, tg.got[i].Sub(tg.sent[i]))
		}
	}
	slices.Sort(d)
	return d
}

// pct returns the p-th percentile of sorted latencies in milliseconds.
func pct(d []time.Duration, p int) float64 {
	if len(d) == 0 {
		return 0
	}
	return float64(d[min(len(d)-1, len(d)*p/100)].Microseconds()) / 1000
}
